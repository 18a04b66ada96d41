"""Experiment 3 sweep, L(N, D): sizes x dataset sizes D (data.max_tokens), early-stopped.

Every run trains for the same number of steps and repeats its first D tokens (epochs);
the analysis takes the lowest eval loss (early stopping). CPU: 3 sizes x 4 D
(5e4 .. 9.2e6 tokens, the whole stdlib corpus; 300 steps see 1.2e6 tokens);
pod: 4 sizes x 5 D (2e7 .. 2e10 tokens and the whole dataset).
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402

CPU_D = (50_000, 200_000, 800_000, -1)  # -1: the whole corpus (~9.2e6 tokens)
POD_D = (20_000_000, 200_000_000, 2_000_000_000, 20_000_000_000, -1)


def get_sweep(scale: str | None = None) -> list[dict]:
  scale = common.resolve_scale(scale)
  sizes = common.sizes(scale)[:3] if scale == "cpu" else common.sizes(scale)[:4]
  ds = CPU_D if scale == "cpu" else POD_D
  every = {"train.eval_every": 25} if scale == "cpu" else {"train.eval_every": 2000}
  return [common.entry(f"n{n}_d{d}_D{'all' if D < 0 else D}", scale,
                       {**common.shape(n, d, scale), "data.max_tokens": D, **every})
          for n, d in sizes for D in ds]
