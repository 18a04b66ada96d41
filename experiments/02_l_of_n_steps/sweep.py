"""Experiment 2 sweep, L(N, S_min): the size ladder's learning curves, logged densely.

The ladder's runs (`common.ladder`, shared with experiments 1, 5 and 7) eval every 20
steps (CPU), so each curve has ~15 points.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402


def get_sweep(scale: str | None = None) -> list[dict]:
  return common.ladder(scale)
