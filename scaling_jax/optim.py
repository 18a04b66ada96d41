"""Optimizers and learning-rate schedules (optax).

Kaplan et al. train with Adam (Adafactor at the largest sizes), a 3000-step linear warmup
then cosine decay to zero, and a size-dependent learning rate LR(N) ≈ 0.003239 −
0.0001395·log(N). Clipping is by global norm; the gradient noise scale is measured on
the raw gradient before this chain ever sees it.
"""

from __future__ import annotations

import math

import jax
import optax


def kaplan_lr(n_params: int) -> float:
  """Kaplan's LR(N) rule (paper §2 / App. D.6), for N non-embedding parameters."""
  return 0.003239 - 0.0001395 * math.log(n_params)


def peak_lr(optim_cfg, n_params: int) -> float:
  return kaplan_lr(n_params) if optim_cfg.lr_rule == "kaplan" else float(optim_cfg.lr)


def schedule(optim_cfg, num_steps: int, n_params: int) -> optax.Schedule:
  """Linear warmup then cosine decay to zero (the paper's default), or constant after warmup."""
  lr = peak_lr(optim_cfg, n_params)
  warmup = min(int(optim_cfg.warmup_steps), max(num_steps - 1, 0))
  if optim_cfg.schedule == "constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)], [warmup])
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=lr, warmup_steps=max(warmup, 1),
      decay_steps=max(num_steps, warmup + 1), end_value=0.0)


def _decay_mask(params):
  """Weight decay on matrices only (not biases, norms)."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make(optim_cfg, num_steps: int, n_params: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer chain (clip -> AdamW/Adafactor) and its schedule."""
  lr = schedule(optim_cfg, num_steps, n_params)
  if optim_cfg.name == "adamw":
    opt = optax.adamw(lr, b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                      weight_decay=optim_cfg.weight_decay, mask=_decay_mask)
  else:
    opt = optax.adafactor(lr, weight_decay_rate=optim_cfg.weight_decay or None,
                          weight_decay_mask=_decay_mask)
  if optim_cfg.clip_norm and optim_cfg.clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(optim_cfg.clip_norm), opt)
  return opt, lr
