"""Experiment 9 sweep: learning-rate schedules and the LR(N) rule.

Per size: the rule itself (optim.lr_rule="kaplan", LR(N) = 0.003239 - 0.0001395 log N)
with the cosine and the constant schedule, and fixed peak LRs at 1/2, 2 and 4x the
rule's (cosine). 3 sizes x 5 runs at either scale.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402

from scaling_jax import accounting, optim  # noqa: E402

MULTIPLIERS = (0.5, 2.0, 4.0)  # x Kaplan's LR(N); 1x is the rule's own runs


def get_sweep(scale: str | None = None) -> list[dict]:
  scale = common.resolve_scale(scale)
  out = []
  for n, d in common.sizes(scale)[:3]:
    model = common.shape(n, d, scale)
    cfg = common.load_config(common.entry("probe", scale, model))
    lr_n = optim.kaplan_lr(accounting.counts(cfg.model).n_params)
    for m in MULTIPLIERS:
      out.append(common.entry(f"n{n}_d{d}_lr{m:g}x", scale, {
          **model, "optim.lr_rule": "fixed", "optim.lr": float(m * lr_n),
          "optim.schedule": "cosine"}))
    for sched in ("cosine", "constant"):
      out.append(common.entry(f"n{n}_d{d}_kaplan_{sched}", scale, {
          **model, "optim.lr_rule": "kaplan", "optim.schedule": sched}))
  return out
