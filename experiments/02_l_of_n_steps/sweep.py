"""Experiment 2 sweep, L(N, S_min): the size ladder's learning curves, logged densely.

The runs are experiment 1's with eval every 20 steps (CPU) so each curve has ~15 points.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402


def get_sweep(scale: str | None = None) -> list[dict]:
  scale = common.resolve_scale(scale)
  dense = ({"train.eval_every": 20, "train.log_every": 20} if scale == "cpu"
           else {"train.eval_every": 2000, "train.log_every": 500})
  return [common.entry(f"n{n_layer}_d{d_model}", scale,
                       {**common.shape(n_layer, d_model, scale), **dense})
          for n_layer, d_model in common.sizes(scale)]
