"""`scaling-jax train | sweep | fit | report | demo | data | compile`: one thin entry point.

Each sub-command lives in its own module and exposes `main(argv) -> int`; this file only
dispatches, so `scaling-jax fit` never imports the trainer. Every command runs inside the
one error boundary (`errors.run_command`): bad input is one line on stderr and exit code 2,
a bug keeps its traceback. Adding a command is one line in COMMANDS.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import sys

from scaling_jax import errors

COMMANDS = {
    "train": ("scaling_jax.train_cli", "train one model: --config FILE --workdir DIR [--config.F=V]"),
    "sweep": ("scaling_jax.sweep", "run a grid of training configs, skipping finished runs"),
    "fit": ("scaling_jax.scaling.cli", "fit a scaling law to run directories or a table"),
    "report": ("scaling_jax.report", "write an HTML/PNG report of a study directory"),
    "demo": ("scaling_jax.demo", "the miniature end-to-end scaling study"),
    "data": ("scaling_jax.data.cli", "build a dataset and its tokenizer ahead of training"),
    "compile": ("scaling_jax.compile_cli", "compile the train step for a TPU slice: memory, FLOPs"),
    "critical-batch": ("scaling_jax.critical_batch", "one model's critical batch three ways: GNS, batch sweep, branches"),
}


def usage() -> str:
  lines = ["usage: scaling-jax COMMAND [ARGS...]", "", "commands:"]
  lines += [f"  {name:<8} {doc}" for name, (_, doc) in COMMANDS.items()]
  lines += ["", "`scaling-jax COMMAND --help` for a command's options."]
  return "\n".join(lines)


def skip_absent_tpu() -> None:
  """With libtpu installed (the `tpu` extra, for `scaling-jax compile`) jax probes for a TPU
  when it starts and, on a machine without one, prints libtpu's errors about
  TPU_ACCELERATOR_TYPE and worker hostnames. Where no accelerator is attached, run on the CPU
  without the probe (compiling for a TPU topology does not need it). JAX_PLATFORMS, when
  set, wins."""
  if "JAX_PLATFORMS" in os.environ or importlib.util.find_spec("libtpu") is None:
    return
  if any(glob.glob(p) for p in ("/dev/accel*", "/dev/vfio/[0-9]*", "/dev/nvidia[0-9]*")):
    return
  os.environ["JAX_PLATFORMS"] = "cpu"


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  skip_absent_tpu()
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  name, rest = argv[0], argv[1:]
  if name not in COMMANDS:
    print(f"scaling-jax: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
    return 2
  module = importlib.import_module(COMMANDS[name][0])
  return errors.run_command(name, module.main, rest)


if __name__ == "__main__":
  sys.exit(main())
