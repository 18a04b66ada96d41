"""The critical-batch study at pod scale (`scaling-jax critical-batch --scale pod`): the 85M
(non-embedding) GPT of configs/gpt_125m.py, n_ctx 1024, on C4, FSDP over all devices.

Same design as configs/critical_batch.py (see there), sized for a TPU pod slice: the base run
trains 20k steps of 256 x 1024 tokens; branches at 2k, 5k and 10k steps over 64..2048
sequences (65k..2.1M tokens, around the B_crit ~ 1e5-1e6 tokens Kaplan's law gives at these
losses).
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(__file__))
from _paper import paper_config  # noqa: E402


def get_config():
  c = paper_config(n_layer=12, d_model=768, n_heads=12, remat="none")
  c.train.update(log_every=50, async_checkpointing=False, progress=False)
  c.optim.update(lr_rule="fixed", lr=6e-4, warmup_steps=1000, schedule="constant")
  return c


def get_study():
  s = ml_collections.ConfigDict()
  s.base_batch = 256
  s.base_steps = 20_000
  s.branch_steps = (2_000, 5_000, 10_000)
  s.batch_sizes = (64, 128, 256, 512, 1024, 2048)
  s.target_drop = 0.02
  s.branch_max_tokens = 4_000_000_000
  s.sweep_max_tokens = 40_000_000_000
  s.eval_sequences = 2048
  s.eval_every_sequences = 51_200  # every 200 steps of the base run
  s.lr_rule = "gns"  # as the CPU study: the branches at the optimal step for their batch
  return s
