"""`scaling-jax train --config configs/X.py --workdir DIR [--config.FIELD=VALUE ...]`."""

from __future__ import annotations

import argparse
import os
import sys

from scaling_jax.config import ConfigError


def load_config(config_file: str, overrides: list[str]):
  """A config file's get_config() with `--config.a.b=v` overrides applied (typed by ml_collections).

  Raises ConfigError for a missing file, an unknown field or a value of the wrong type.
  """
  from absl import flags
  from ml_collections import config_flags

  path = config_file.split(":")[0]  # ml_collections allows FILE:ARGS
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist; pass one of the configs/*.py files")
  fv = flags.FlagValues()
  argv = [sys.argv[0] if sys.argv else "scaling-jax", f"--config={config_file}", *overrides]
  # sys_argv: the override flags are defined from these, not the process's own sys.argv
  config_flags.DEFINE_config_file("config", default=None, flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  try:
    fv(argv)
    config = fv.config
    config.keys()  # a config file that failed to load raises only when first used
    return config
  except flags.Error as e:
    raise ConfigError(f"{_first_line(e)}  (check the field names in {config_file})") from None
  except (AttributeError, KeyError) as e:  # an override of a field the config lacks (#10)
    name = str(e).strip("'\" ")
    used = [o.split("=")[0] for o in overrides if name in o.split("=")[0].split(".")]
    raise ConfigError(f"unknown config field {name!r} ({', '.join(used) or 'in ' + config_file}); "
                      f"check the field names in {config_file}") from None
  except Exception as e:  # missing file, syntax error, get_config() raising (#10)
    raise ConfigError(f"cannot load config file {config_file!r}: {type(e).__name__}: "
                      f"{_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
  return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(
      prog="scaling-jax train",
      description="Train one model; any config field can be overridden as --config.FIELD=VALUE.")
  parser.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
  parser.add_argument("--workdir", required=True, help="run directory (resumed if it exists)")
  parser.add_argument("--dist", default="auto", choices=["auto", "none"],
                      help="multi-process initialisation (auto: SLURM, TPU pod or env vars)")
  args, overrides = parser.parse_known_args(argv)
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unknown arguments {bad}; config fields are set as --config.FIELD=VALUE")
  from scaling_jax import distributed
  distributed.initialize("auto" if args.dist == "auto" else "none")
  from scaling_jax import checkpoint, train
  try:
    config = load_config(args.config, overrides)
    result = train.train_and_evaluate(config, args.workdir)
  except ConfigError as e:
    print(f"scaling-jax train: error: {e}", file=sys.stderr)
    return 2
  except train.TrainingDiverged as e:
    print(f"scaling-jax train: diverged: {e}", file=sys.stderr)
    return 1
  except (checkpoint.CheckpointError, OSError) as e:  # disk full, unreadable checkpoints (#10)
    print(f"scaling-jax train: failed: {_first_line(e)}", file=sys.stderr)
    return 1
  status = result.get("status")
  print(f"run {status}: {args.workdir} (metrics.jsonl, checkpoints/, config.json)")
  return 75 if status == "preempted" else 0  # 75 = EX_TEMPFAIL: resume by rerunning
