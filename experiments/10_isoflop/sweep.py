"""Experiment 10 sweep, IsoFLOP profiles: a ladder of sizes per compute budget, each size
trained to exactly that budget with its LR schedule ending there.

A run at budget C with F training FLOPs per token (under the FLOP convention, see
`scaling_jax.accounting.FLOP_CONVENTIONS`) trains S = round(C / (F x batch tokens)) steps;
the cosine decays to zero at its own last step S, after a warmup of S/10 steps (Porian et
al. 2024: a warmup longer than a short run biases the small models). Each run evaluates
~8 times so that Approach 1 has learning curves.

CPU: 3 budgets (2.5e11, 5e11, 1e12 FLOPs) x 5 one-layer sizes (N = 8k .. 82k under
6N+unembedding) on the stdlib corpus with a 512-token vocabulary, batch 32 x 128 tokens;
pod: 4 budgets (1e17 .. 3e18) x 5 sizes (N = 11M .. 680M) on the paper's setup. The
convention (default "6N+unembedding", the count Porian et al. found to resolve most of the
Kaplan/Chinchilla gap) comes from $SCALING_JAX_FLOPS; pass the same `--flops` to analyze.py.
"""

from __future__ import annotations

import os
import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402
from scaling_jax import accounting  # noqa: E402

FLOPS_ENV = "SCALING_JAX_FLOPS"  # `SCALING_JAX_FLOPS=exact scaling-jax sweep ...`
DEFAULT_CONVENTION = "6N+unembedding"
EVALS_PER_RUN = 8

# At CPU scale the sweep tokenizes with 512 tokens, not cpu_demo's 4096. With 4096 the
# compute-optimal N at a CPU budget (Approach 3 on such runs: 51k at 1e12 FLOPs, counting the
# unembedding) is smaller than the unembedding alone of a 16-wide model (16 x 4096 = 65k), so
# no model of a sensible width lies below the optimum and every grid is off centre (README,
# "Compute-optimal allocation").
CPU_VOCAB = 512

# Per budget (FLOPs), the (n_layer, d_model) ladder it trains, 1.3-1.7x apart in N and
# centred on that budget's optimum: N = 7.9k 11k 19k 29k 40k 52k 82k for d_model = 12 16 24
# 32 40 48 64 under 6N+unembedding. One layer throughout: a second layer mid-ladder puts a
# step in the profile (at 5e11, 2x32 with N = 41k ended 0.13 nats above 1x40 with N = 40k),
# which a parabola in ln N cannot follow.
CPU_BUDGETS = (
    (2.5e11, ((1, 12), (1, 16), (1, 24), (1, 32), (1, 40))),
    (5e11, ((1, 16), (1, 24), (1, 32), (1, 40), (1, 48))),
    (1e12, ((1, 24), (1, 32), (1, 40), (1, 48), (1, 64))),
)
_POD = ((6, 384), (8, 512), (10, 640), (12, 768), (16, 1024), (24, 1024), (24, 1536))
POD_BUDGETS = ((1e17, _POD[0:5]), (3e17, _POD[1:6]), (1e18, _POD[1:6]), (3e18, _POD[2:7]))


def resolve_convention(convention: str | None = None) -> str:
  convention = convention or os.environ.get(FLOPS_ENV) or DEFAULT_CONVENTION
  if convention not in accounting.FLOP_CONVENTIONS:
    raise common.ExperimentError(f"FLOP convention {convention!r} is not one of "
                                 f"{accounting.FLOP_CONVENTIONS}; set {FLOPS_ENV} to one")
  return convention


def budget_entry(budget: float, n_layer: int, d_model: int, scale: str, convention: str
                 ) -> dict:
  """One run trained to `budget` FLOPs: steps from the model's FLOPs per token."""
  shape = {**common.shape(n_layer, d_model, scale),
           **({"model.vocab_size": CPU_VOCAB} if scale == "cpu" else {})}
  probe = common.entry("probe", scale, shape)
  cfg = common.load_config(probe)
  tokens_per_step = cfg.train.batch_size * cfg.model.n_ctx
  steps = round(budget / (accounting.flops_per_token(cfg.model, convention) * tokens_per_step))
  if steps < 10:
    raise common.ExperimentError(f"budget {budget:.3g} gives n{n_layer}_d{d_model} only "
                                 f"{steps} steps; raise the budget or drop the size")
  every = max(1, steps // EVALS_PER_RUN)
  return common.entry(f"c{budget:.3g}_n{n_layer}_d{d_model}".replace("+", ""), scale, {
      **shape, "train.num_steps": steps, "train.eval_every": every,
      "train.log_every": max(1, min(every, 25)), "train.ckpt_every": steps,
      "optim.schedule": "cosine", "optim.warmup_steps": max(1, steps // 10)})


def get_sweep(scale: str | None = None, convention: str | None = None) -> list[dict]:
  scale, convention = common.resolve_scale(scale), resolve_convention(convention)
  budgets = CPU_BUDGETS if scale == "cpu" else POD_BUDGETS
  return [budget_entry(budget, n_layer, d_model, scale, convention)
          for budget, ladder in budgets for n_layer, d_model in ladder]
