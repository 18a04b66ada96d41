"""Experiment 1 sweep, L(N): one model per size of the ladder, trained data-unlimited.

CPU: 4 sizes (N = 25k..786k non-embedding) x 600 steps on the stdlib corpus; pod: the
paper's setup (n_ctx 1024, batch 512, Kaplan LR(N)) at 5 sizes (N = 11M..680M).
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402


def get_sweep(scale: str | None = None) -> list[dict]:
  return [common.entry(f"n{n_layer}_d{d_model}", scale, common.shape(n_layer, d_model, scale))
          for n_layer, d_model in common.sizes(scale)]
