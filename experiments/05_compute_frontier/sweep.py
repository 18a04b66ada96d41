"""Experiment 5 sweep, the compute-efficient frontier: the size ladder's learning curves.

The runs are the size ladder's (`common.ladder`, shared with experiments 1, 2 and 7), so
pointing `--out` at their directory reuses its finished runs (`experiments.run_all` does).
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402


def get_sweep(scale: str | None = None) -> list[dict]:
  return common.ladder(scale)
