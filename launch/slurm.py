"""Submit one training run to SLURM: one task per GPU, every node in one JAX job.

    python launch/slurm.py --config configs/gpt_125m.py --workdir runs/125m \
        --nodes 2 --gpus-per-node 8 --time 12:00:00 --partition gpu \
        --setup "source .venv/bin/activate" [--dry-run] [-- --config.train.num_steps=1000]

Renders launch/slurm.sbatch, writes it under --log-dir and runs `sbatch` on it;
--dry-run prints the script and the sbatch command instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make `launch` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch import common  # noqa: E402
from scaling_jax import errors  # noqa: E402

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slurm.sbatch")


def render_script(command: str, *, job_name: str, nodes: int = 1, gpus_per_node: int = 8,
                  time: str = "04:00:00", partition: str | None = None,
                  account: str | None = None, cpus_per_task: int = 8,
                  log_dir: str = "slurm_logs", repo_dir: str = common.REPO_ROOT,
                  setup: str = "", array: str | None = None, command_setup: str = "",
                  sbatch_extra: Sequence[str] = ()) -> str:
  """The sbatch script text. `command` is what srun starts on every task (shell text)."""
  if nodes < 1 or gpus_per_node < 1:
    raise ValueError(f"nodes={nodes} and gpus_per_node={gpus_per_node} must be >= 1")
  extra = [f"#SBATCH --partition={partition}"] if partition else []
  extra += [f"#SBATCH --account={account}"] if account else []
  extra += [f"#SBATCH --array={array}"] if array else []
  extra += [line if line.startswith("#SBATCH") else f"#SBATCH {line}" for line in sbatch_extra]
  with open(TEMPLATE) as f:
    template = f.read()
  return common.render(template, {
      "job_name": job_name, "nodes": nodes, "gpus_per_node": gpus_per_node,
      "cpus_per_task": cpus_per_task, "time": time, "log_dir": log_dir,
      "output_pattern": "%x-%A_%a.out" if array else "%x-%j.out",
      "sbatch_extra": "\n".join(extra), "repo_dir": common.shlex.quote(repo_dir),
      "setup": setup, "command_setup": command_setup, "command": command,
  })


def submit(script: str, path: str, dry_run: bool, out=None) -> int:
  """Writes `script` to `path` and runs `sbatch path` (or prints both)."""
  out = sys.stdout if out is None else out
  argv = ["sbatch", path]
  if dry_run:
    out.write(f"# --- {path} ---\n{script}# --- end {path} ---\n{common.shell_line(argv)}\n")
    return 0
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(script)
  return subprocess.call(argv)


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--nodes", type=errors.positive_int, default=1)
  parser.add_argument("--gpus-per-node", type=errors.positive_int, default=8)
  parser.add_argument("--cpus-per-task", type=errors.positive_int, default=8)
  parser.add_argument("--time", default="04:00:00", help="SLURM time limit, HH:MM:SS")
  parser.add_argument("--partition", default=None)
  parser.add_argument("--account", default=None)
  parser.add_argument("--log-dir", default=None,
                      help="where sbatch scripts + logs go (default slurm_logs, or OUT/slurm/logs)")
  parser.add_argument("--repo-dir", default=common.REPO_ROOT,
                      help="the checkout on the cluster (default: this one)")
  parser.add_argument("--setup", default="",
                      help="shell run before srun, e.g. 'source .venv/bin/activate'")
  parser.add_argument("--sbatch", action="append", default=[],
                      help="extra #SBATCH option, repeatable, e.g. --sbatch=--exclusive")
  parser.add_argument("--dry-run", action="store_true", help="print instead of submitting")


def cluster_kwargs(args: argparse.Namespace) -> dict:
  return dict(nodes=args.nodes, gpus_per_node=args.gpus_per_node, time=args.time,
              partition=args.partition, account=args.account,
              cpus_per_task=args.cpus_per_task, log_dir=args.log_dir, repo_dir=args.repo_dir,
              setup=args.setup, sbatch_extra=args.sbatch)


@errors.boundary("launch/slurm.py")
def main(argv: list[str]) -> int:
  split = argv.index("--") if "--" in argv else len(argv)
  parser = errors.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True, help="configs/X.py")
  parser.add_argument("--workdir", required=True, help="the run directory")
  parser.add_argument("--job-name", default=None, help="default: the workdir's basename")
  add_cluster_flags(parser)
  args = parser.parse_args(argv[:split])
  extra = argv[split + 1:]
  job_name = args.job_name or os.path.basename(os.path.normpath(args.workdir))
  args.log_dir = args.log_dir or "slurm_logs"
  command = common.shell_line(common.train_command(args.config, args.workdir, extra=extra))
  script = render_script(command, job_name=job_name, **cluster_kwargs(args))
  return submit(script, os.path.join(args.log_dir or "slurm_logs", f"{job_name}.sbatch"),
                args.dry_run)


if __name__ == "__main__":
  sys.exit(main())
