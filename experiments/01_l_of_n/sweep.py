"""Experiment 1 sweep, L(N): one model per size of the ladder, trained data-unlimited.

CPU: 4 sizes (N = 25k..786k non-embedding) x 300 steps on the stdlib corpus; pod: the
paper's setup (n_ctx 1024, batch 512, Kaplan LR(N)) at 5 sizes (N = 11M..680M). The runs
are the size ladder's (`common.ladder`), shared with experiments 2, 5 and 7: pointing
`--out` at their directory reuses its finished runs (`experiments.run_all` does).
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402


def get_sweep(scale: str | None = None) -> list[dict]:
  return common.ladder(scale)
