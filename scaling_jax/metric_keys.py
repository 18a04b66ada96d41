"""The names of the metrics a run logs to metrics.jsonl: defined here once.

The trainer writes records with these keys; every reader (the run reader in
`scaling_jax.scaling.runs`, the progress bar, benchmarks) looks them up here. Each name
carries its unit: losses in nats per token, B_simple in tokens or sequences.
"""

STEP = "step"
TOKENS = "tokens"  # cumulative training tokens
FLOPS = "flops"  # cumulative training FLOPs
TIME_S = "time_s"  # training wall time (s), cumulative
LOSS = "loss"  # train loss, mean over the steps since the last record
LR = "lr"
GRAD_NORM = "grad_norm"
TOKENS_PER_S = "tokens_per_s"
FLOPS_PER_S = "flops_per_s"
MFU = "mfu"
EPOCH = "epoch"  # passes over the training data so far
BAD_STEPS = "bad_steps"  # steps skipped for a non-finite gradient
# A gs:// run only (scaling_jax.storage), counted since this process started the run (a
# resumed run counts from 0 again):
STORAGE_RETRIES = "storage/retries"  # storage requests retried (gcsfs + tensorstore) so far
STORAGE_SLOW_WRITES = "storage/slow_writes"  # checkpoint saves slower than storage.slow_write_s

GNS_G2 = "gns/g2"  # unbiased |G|^2 of one step
GNS_TRACE = "gns/trace_sigma"  # unbiased tr(Sigma) of one step (per sequence)
GNS_G2_EMA = "gns/g2_ema"
GNS_TRACE_EMA = "gns/trace_sigma_ema"
B_SIMPLE_SEQS = "gns/b_simple_seqs"  # ratio of the EMAs, in sequences
B_SIMPLE_TOKENS = "gns/b_simple_tokens"  # the same in tokens (x n_ctx)

EVAL_SET = "validation"  # the eval set the scaling analysis fits


def eval_loss(eval_set: str = EVAL_SET) -> str:
  """The key of the eval loss on `eval_set`, e.g. 'eval/validation/loss'."""
  return f"eval/{eval_set}/loss"


EVAL_LOSS = eval_loss()
