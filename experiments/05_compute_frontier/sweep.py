"""Experiment 5 sweep, the compute-efficient frontier: experiment 2's size ladder.

The entries are experiment 2's (same names and overrides), so pointing `--out` at the
same directory reuses its finished runs.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402


def get_sweep(scale: str | None = None) -> list[dict]:
  exp2 = common.load_module(pathlib.Path(__file__).resolve().parents[1] / "02_l_of_n_steps" /
                            "sweep.py")
  return exp2.get_sweep(scale)
