"""`scaling-jax train --config configs/X.py --workdir DIR [--config.FIELD=VALUE ...]`."""

from __future__ import annotations

import sys

from scaling_jax import errors
from scaling_jax.config import ConfigError, load_config

__all__ = ["load_config", "main"]


@errors.boundary("train")
def main(argv: list[str]) -> int:
  parser = errors.ArgumentParser(
      prog="scaling-jax train",
      description="Train one model; any config field can be overridden as --config.FIELD=VALUE.")
  parser.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
  parser.add_argument("--workdir", required=True, help="run directory (resumed if it exists)")
  parser.add_argument("--dist", default="auto", choices=["auto", "none"],
                      help="multi-process initialisation (auto: SLURM, TPU pod or env vars)")
  args, overrides = parser.parse_known_args(argv)
  if not args.workdir.strip():
    raise ConfigError("--workdir is empty; pass the run directory")
  config = load_config(args.config, overrides)  # validated: nothing is built before this
  from scaling_jax import distributed
  distributed.initialize("auto" if args.dist == "auto" else "none")
  from scaling_jax import checkpoint, train
  try:
    result = train.train_and_evaluate(config, args.workdir)
  except distributed.PeerLost as e:  # status.json already says so; JAX cannot shut down
    distributed.exit_peer_lost(str(e))  # cleanly without the peer: one line, exit 1
  except train.TrainingDiverged as e:
    print(f"scaling-jax train: diverged: {e}", file=sys.stderr)
    return 1
  except (checkpoint.CheckpointError, OSError) as e:  # disk full, unreadable checkpoints (#10)
    print(f"scaling-jax train: failed: {errors.one_line(e)}", file=sys.stderr)
    return 1
  status = result.get("status")
  print(f"run {status}: {args.workdir} (metrics.jsonl, checkpoints/, config.json)")
  return 75 if status == "preempted" else 0  # 75 = EX_TEMPFAIL: resume by rerunning
