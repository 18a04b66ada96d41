"""Architectures Kaplan et al. (2020, §3.2.1, Fig. 7 and App. D.5) compare with the Transformer.

- `lstm`: a stacked LSTM language model (token embedding -> n_layer LSTM layers of width
  d_model -> LayerNorm -> unembedding). The time loop is `nn.RNN` over an
  `nn.OptimizedLSTMCell`, i.e. `jax.lax.scan` through `nn.scan`.
- `universal`: a recurrent ("Universal") Transformer: one pre-LN block of `model.py`
  applied n_layer times with the same parameters (an `nn.scan` over depth that broadcasts
  the parameters), so N counts the shared block once while the FLOPs count every application.

Both take tokens [B, T] and return float32 logits [B, T, V], the mean loss given
`targets_BT`, or the final hidden states with `return_hidden`, like `model.Transformer`,
and every parameter carries logical axis names, so the trainer's sharded init, the
optimizer and the checkpoints work unchanged.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from scaling_jax import accounting
from scaling_jax.model import (DTYPES, Embed, ModelConfig, _init, _layer_norm, block_class,
                               head)

ARCHS = ("universal", "lstm")


class _SharedStep(nn.Module):
  """One application of the shared block, in the (carry, x) -> (carry, y) form nn.scan needs."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BTD, _):
    return block_class(self.cfg)(self.cfg, name="block")(x_BTD), None


class UniversalTransformer(nn.Module):
  """The Transformer of `model.py` with one block shared across its n_layer applications."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens_BT, targets_BT=None, return_hidden: bool = False):
    cfg = self.cfg
    x_BTD, wte = Embed(cfg, name="embed")(tokens_BT)
    x_BTD = nn.with_logical_constraint(x_BTD, ("act_batch", "act_length", "act_embed"))
    shared = nn.scan(_SharedStep, variable_broadcast="params", split_rngs={"params": False},
                     length=cfg.n_layer)
    x_BTD, _ = shared(cfg, name="shared")(x_BTD, None)
    x_BTD = _layer_norm(cfg, "ln_f")(x_BTD)
    if return_hidden:
      return x_BTD
    return head(self, cfg, x_BTD, wte, targets_BT)


class LSTMLM(nn.Module):
  """Stacked LSTM language model; no position embedding (the recurrence carries position).

  The gate axis of the LSTM kernels is named `lstm`, which `sharding.RULES` leaves
  unmapped (replicated): the recurrence needs the whole hidden state every step.
  """
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens_BT, targets_BT=None, return_hidden: bool = False):
    cfg = self.cfg
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    wte = self.param("wte", _init(("vocab_in", "embed")), (cfg.vocab_size, cfg.d_model), pdtype)
    x_BTD = jnp.take(wte, tokens_BT, axis=0).astype(dtype)
    x_BTD = nn.with_logical_constraint(x_BTD, ("act_batch", "act_length", "act_embed"))
    for i in range(cfg.n_layer):
      cell = nn.OptimizedLSTMCell(
          cfg.d_model, dtype=dtype, param_dtype=pdtype,
          kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                   ("embed", "lstm")),
          recurrent_kernel_init=nn.with_logical_partitioning(nn.initializers.orthogonal(),
                                                             ("embed", "lstm")),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("lstm",)),
          name=f"lstm_{i}")
      x_BTD = nn.RNN(cell)(x_BTD)  # nn.scan over time (jax.lax.scan)
      x_BTD = nn.with_logical_constraint(x_BTD, ("act_batch", "act_length", "act_embed"))
    x_BTD = _layer_norm(cfg, "ln_f")(x_BTD)
    if return_hidden:
      return x_BTD
    return head(self, cfg, x_BTD, wte, targets_BT)


def build(cfg: ModelConfig) -> nn.Module:
  """The variant `cfg.arch` names ("universal" or "lstm")."""
  if cfg.arch == "universal":
    return UniversalTransformer(cfg)
  if cfg.arch == "lstm":
    return LSTMLM(cfg)
  raise ValueError(f"model.arch={cfg.arch!r} is not one of transformer, {', '.join(ARCHS)}; "
                   "pick one of those")


def universal_counts(m) -> accounting.Counts:
  """N = one block's matrices (shared); FLOPs = n_layer applications of it per token."""
  d, n, f, v, t = m.d_model, m.n_layer, m.d_ff, m.vocab_size, m.n_ctx
  n_params = 2 * d * (2 * d + f)  # the shared block, counted once
  biases_norms = (3 * d + d + f + d + 4 * d) + 2 * d  # one block's biases and 2 LNs; ln_f
  embedding = v * d + t * d + (0 if m.tie_embeddings else d * v)
  applied = n * n_params  # matrix parameters each token passes through
  attn_fwd = 2 * n * t * d
  return accounting.Counts(
      n_params=n_params,
      n_params_total=n_params + biases_norms + embedding,
      n_params_embedding=embedding,
      flops_per_token_fwd=float(2 * applied + attn_fwd),
      flops_per_token=float(6 * applied),
      flops_per_token_exact=float(3 * (2 * applied + attn_fwd + 2 * d * v)),
  )


def lstm_counts(m) -> accounting.Counts:
  """N = the LSTM weight matrices, 8 d_model^2 per layer (4 gates x input and recurrent)."""
  d, n, v = m.d_model, m.n_layer, m.vocab_size
  n_params = 8 * d * d * n
  biases_norms = 4 * d * n + 2 * d  # one bias per gate; ln_f
  embedding = v * d + (0 if m.tie_embeddings else d * v)
  return accounting.Counts(
      n_params=n_params,
      n_params_total=n_params + biases_norms + embedding,
      n_params_embedding=embedding,
      flops_per_token_fwd=float(2 * n_params),
      flops_per_token=float(6 * n_params),
      flops_per_token_exact=float(3 * (2 * n_params + 2 * d * v)),
  )


def counts(model_cfg) -> accounting.Counts:
  """Counts for `model_cfg.arch` in {universal, lstm} (model_cfg: ModelConfig or config.model)."""
  arch = getattr(model_cfg, "arch", "transformer")
  if arch == "universal":
    return universal_counts(model_cfg)
  if arch == "lstm":
    return lstm_counts(model_cfg)
  raise ValueError(f"model.arch={arch!r} has no variant accounting; use accounting.counts")
