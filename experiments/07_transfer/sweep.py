"""Experiment 7 sweep, transfer: the size ladder evaluated on out-of-distribution sets too.

Eval sets: the stdlib corpus' validation split, `ood_prose` (English prose) and
`ood_numpy` (numpy's sources). At pod scale, set data.eval_sets to your own tagged sets.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402

EVAL_SETS = ("validation", "ood_prose", "ood_numpy")


def get_sweep(scale: str | None = None) -> list[dict]:
  return [common.entry(f"n{n_layer}_d{d_model}", scale,
                       {**common.shape(n_layer, d_model, scale), "data.eval_sets": EVAL_SETS})
          for n_layer, d_model in common.sizes(scale)]
