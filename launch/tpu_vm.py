"""Run one command on every worker of a Cloud TPU VM slice (optionally creating it).

    python launch/tpu_vm.py --tpu my-v4 --zone us-central2-b --project P \
        [--create --accelerator-type v4-32 --version tpu-ubuntu2204-base [--spot]] \
        [--dry-run] -- scaling-jax train --config configs/gpt_125m.py --workdir runs/125m

Steps (each a gcloud command; --dry-run prints them, one per line): create the TPU VM,
pack this checkout and copy it to all workers, install it with jax[tpu], run the
command on all workers (`--worker=all`) with SCALING_JAX_DIST=tpu so that
scaling_jax.distributed.initialize() joins them into one JAX job, and stream the output
to the terminal and to LOG_DIR/<tpu>-<time>.log. --delete removes the VM at the end.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make `launch` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch import common  # noqa: E402
from scaling_jax import errors  # noqa: E402

REMOTE_DIR = "~/scaling-jax"
REMOTE_ARCHIVE = "~/scaling-jax.tar.gz"
EXCLUDES = (".git", ".venv", "__pycache__", "*.egg-info", "runs", "logs", "slurm_logs",
            ".pytest_cache")


def plan(tpu: str, zone: str, project: str, command: Sequence[str], *, create: bool = False,
         accelerator_type: str = "v4-32", version: str = "tpu-ubuntu2204-base",
         spot: bool = False, copy: bool = True, install: bool = True, delete: bool = False,
         env: Sequence[str] = (), archive: str = "logs/scaling-jax.tar.gz") -> list[list[str]]:
  """The commands to run, in order (argv lists)."""
  where = [f"--zone={zone}", f"--project={project}"]
  ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, "--worker=all", *where]
  cmds = []
  if create:
    cmds.append(["gcloud", "compute", "tpus", "tpu-vm", "create", tpu, *where,
                 f"--accelerator-type={accelerator_type}", f"--version={version}"]
                + (["--spot"] if spot else []))
  remote = []
  if copy:
    cmds.append(["tar", "czf", archive, *[f"--exclude={e}" for e in EXCLUDES],
                 "-C", common.REPO_ROOT, "."])
    cmds.append(["gcloud", "compute", "tpus", "tpu-vm", "scp", archive,
                 f"{tpu}:{REMOTE_ARCHIVE}", "--worker=all", *where])
    remote.append(f"mkdir -p {REMOTE_DIR} && tar xzf {REMOTE_ARCHIVE} -C {REMOTE_DIR}")
  if install:
    remote.append(f"cd {REMOTE_DIR} && python3 -m pip install -q -U 'jax[tpu]' "
                  "&& python3 -m pip install -q -e .")
  if remote:
    cmds.append(ssh + ["--command=" + " && ".join(remote)])
  exports = ["PATH=$HOME/.local/bin:$PATH", "SCALING_JAX_DIST=tpu"]
  for kv in env:
    key, sep, value = kv.partition("=")
    if not sep or not key.isidentifier():
      raise ValueError(f"--env {kv!r} must look like NAME=VALUE")
    exports.append(f"{key}={shlex.quote(value)}")
  cmds.append(ssh + [f"--command=cd {REMOTE_DIR} && export {' '.join(exports)} && "
                     + common.shell_line(command)])
  if delete:
    cmds.append(["gcloud", "compute", "tpus", "tpu-vm", "delete", tpu, *where, "--quiet"])
  return cmds


def run_logged(cmds: list[list[str]], log_path: str, out=None) -> int:
  """Runs the commands in order, streaming output to `out` and `log_path`; stops at a failure."""
  out = sys.stdout if out is None else out
  os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
  with open(log_path, "a") as log:
    for cmd in cmds:
      header = f"$ {common.shell_line(cmd)}\n"
      out.write(header)
      log.write(header)
      p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           bufsize=1)
      for line in p.stdout:
        out.write(line)
        out.flush()
        log.write(line)
        log.flush()
      rc = p.wait()
      if rc:
        msg = f"[tpu_vm] command failed with exit status {rc}; log: {log_path}\n"
        out.write(msg)
        log.write(msg)
        return rc
  return 0


@errors.boundary("launch/tpu_vm.py")
def main(argv: list[str]) -> int:
  if "--" not in argv:
    raise errors.UsageError("usage: launch/tpu_vm.py --tpu NAME --zone Z --project P [...] -- "
                            "COMMAND...")
  split = argv.index("--")
  parser = errors.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tpu", required=True, help="TPU VM name")
  parser.add_argument("--zone", required=True)
  parser.add_argument("--project", required=True)
  parser.add_argument("--create", action="store_true", help="create the TPU VM first")
  parser.add_argument("--accelerator-type", default="v4-32")
  parser.add_argument("--version", default="tpu-ubuntu2204-base", help="TPU VM runtime")
  parser.add_argument("--spot", action="store_true")
  parser.add_argument("--no-copy", action="store_true", help="code already on the workers")
  parser.add_argument("--no-install", action="store_true", help="skip pip install")
  parser.add_argument("--delete", action="store_true", help="delete the TPU VM afterwards")
  parser.add_argument("--env", action="append", default=[], help="NAME=VALUE on every worker")
  parser.add_argument("--log-dir", default="logs")
  parser.add_argument("--dry-run", action="store_true", help="print the commands only")
  args = parser.parse_args(argv[:split])
  command = argv[split + 1:]
  if not command:
    parser.error("no command after --")
  try:
    cmds = plan(args.tpu, args.zone, args.project, command, create=args.create,
                accelerator_type=args.accelerator_type, version=args.version, spot=args.spot,
                copy=not args.no_copy, install=not args.no_install, delete=args.delete,
                env=args.env, archive=os.path.join(args.log_dir, "scaling-jax.tar.gz"))
  except ValueError as e:
    parser.error(str(e))
  if args.dry_run:
    print("\n".join(common.shell_line(c) for c in cmds))
    return 0
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return run_logged(cmds, os.path.join(args.log_dir, f"{args.tpu}-{stamp}.log"))


if __name__ == "__main__":
  sys.exit(main())
