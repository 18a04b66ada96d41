"""Experiment 4 sweep, B_crit(L): one model at several batch sizes, GNS measured in every run.

Constant learning rate after warmup (a cosine decay would end each run at a different
point of its curve) and dense eval, so each loss level's steps S(B) are read precisely.
CPU: the (2, 64) model at 8..64 sequences x 128 tokens; pod: the 85M model at 64..2048.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402

CPU_BATCHES = (8, 16, 32, 64)
POD_BATCHES = (64, 128, 256, 512, 1024, 2048)


def get_sweep(scale: str | None = None) -> list[dict]:
  scale = common.resolve_scale(scale)
  if scale == "cpu":
    model, batches = common.shape(2, 64, scale), CPU_BATCHES
    train = {"train.num_steps": 300, "train.eval_every": 10, "train.log_every": 10}
  else:
    model, batches = common.shape(12, 768, scale), POD_BATCHES
    train = {"train.num_steps": 50_000, "train.eval_every": 500, "train.log_every": 100}
  return [common.entry(f"B{b}", scale, {**model, **train, "train.batch_size": b,
                                        "optim.schedule": "constant"})
          for b in batches]
