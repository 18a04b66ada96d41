"""Experiment 7 sweep, transfer: the size ladder evaluated on out-of-distribution sets too.

The ladder's runs (`common.ladder`, shared with experiments 1, 2 and 5) evaluate on the
training distribution's validation split, `ood_prose` (English prose) and `ood_numpy`
(numpy's sources), at either scale; add your own tagged sets with --config.data.eval_sets.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402


def get_sweep(scale: str | None = None) -> list[dict]:
  return common.ladder(scale)
