"""Fan a sweep out to a cluster (one job per run) and collect the finished runs.

    python launch/sweep_fanout.py submit experiments/x/sweep.py --out runs/x --backend slurm \
        --nodes 1 --gpus-per-node 8 --time 04:00:00 --partition gpu [--max-parallel 4] [--dry-run]
    python launch/sweep_fanout.py submit experiments/x/sweep.py --out runs/x --backend tpu \
        --project P --zone us-central2-b --accelerator-type v4-32 --bucket gs://B/x [--dry-run]
    python launch/sweep_fanout.py submit experiments/x/sweep.py --out runs/x --backend local
    python launch/sweep_fanout.py collect runs/x [more dirs] --dest study/x [--mode copy|link|list]

A sweep file defines `get_sweep()` returning a list of runs, each
{"name": str, "config": "configs/X.py", "overrides": {"model.d_model": 128, ...}}
(or a (name, config, overrides) tuple); run NAME trains into OUT/NAME. Runs whose
status.json already says finished are skipped, so resubmitting a sweep finishes it.

Backends: slurm = one sbatch job array (--array=0-K) reading its command from a table;
tpu = one `gcloud compute tpus queued-resources create` per run, whose startup script
fetches the code from --bucket, trains and syncs the run dir back to --bucket/runs/NAME
(then `gcloud storage cp -r` them here and `collect`); local = the runs one after another.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: make `launch` and `scaling_jax` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch import common, slurm  # noqa: E402
from scaling_jax import rundir  # noqa: E402

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")
ARCHIVE_EXCLUDES = (".git", ".venv", "__pycache__", "*.egg-info", "runs", "slurm_logs",
                    "logs", ".pytest_cache")


class SweepError(ValueError):
  """A sweep definition that cannot be submitted; the message says what to fix."""


# ---------------------------------------------------------------------------- sweep files

def normalize_runs(runs: Any, source: str = "get_sweep()") -> list[dict[str, Any]]:
  """Dicts {name, config, overrides} from dicts or (name, config, overrides) tuples."""
  out, seen = [], set()
  for i, run in enumerate(runs):
    if isinstance(run, (tuple, list)) and len(run) == 3:
      run = {"name": run[0], "config": run[1], "overrides": run[2]}
    if not isinstance(run, dict) or "name" not in run or "config" not in run:
      raise SweepError(f"{source} item {i} is {run!r}; each run must be "
                       '{"name": str, "config": "configs/X.py", "overrides": {...}}')
    name = str(run["name"])
    if not NAME_RE.fullmatch(name):
      raise SweepError(f"{source} run name {name!r} must be letters, digits, _ . = - "
                       "(it becomes a directory name)")
    if name in seen:
      raise SweepError(f"{source} has two runs named {name!r}; names must be unique")
    seen.add(name)
    out.append({"name": name, "config": str(run["config"]),
                "overrides": dict(run.get("overrides") or {})})
  if not out:
    raise SweepError(f"{source} returned no runs")
  return out


def load_sweep(path: str) -> list[dict[str, Any]]:
  """Imports the sweep file and normalizes its get_sweep()."""
  if not os.path.isfile(path):
    raise SweepError(f"sweep file {path!r} not found")
  spec = importlib.util.spec_from_file_location("_sweep_definition", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise SweepError(f"{path} defines no get_sweep(); add one returning the list of runs")
  return normalize_runs(module.get_sweep(), f"{path}:get_sweep()")


def pending(runs: list[dict[str, Any]], out_dir: str, skip_finished: bool = True):
  """(runs still to do, names skipped because their status.json says finished)."""
  todo, done = [], []
  for run in runs:
    finished = rundir.read_status(os.path.join(out_dir, run["name"]))["status"] == "finished"
    (done if skip_finished and finished else todo).append(run)
  return todo, [r["name"] for r in done]


def run_command(run: dict[str, Any], out_dir: str, entry=common.TRAIN) -> list[str]:
  return common.train_command(run["config"], os.path.join(out_dir, run["name"]),
                              run["overrides"], entry=entry)


# ---------------------------------------------------------------------------- backends

def slurm_array(runs, out_dir: str, *, max_parallel: int | None = None,
                job_name: str = "sweep", **cluster) -> tuple[dict[str, str], list[list[str]]]:
  """Files to write {path: text} and the commands (mkdir logs, sbatch) for one array job."""
  work = os.path.join(out_dir, "slurm")
  table = os.path.join(work, "commands.txt")
  lines = [common.shell_line(run_command(r, out_dir)) for r in runs]
  array = f"0-{len(runs) - 1}" + (f"%{max_parallel}" if max_parallel else "")
  command_setup = (f'CMD=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(table)})\n'
                   'echo "array task ${SLURM_ARRAY_TASK_ID}: ${CMD}"')
  if not cluster.get("log_dir"):
    cluster["log_dir"] = os.path.join(work, "logs")
  script = slurm.render_script('bash -c "$CMD"', job_name=job_name, array=array,
                               command_setup=command_setup, **cluster)
  path = os.path.join(work, "sweep.sbatch")
  return ({table: "\n".join(lines) + "\n", path: script},
          [["mkdir", "-p", cluster["log_dir"]], ["sbatch", path]])


def qr_name(prefix: str, name: str) -> str:
  """A valid TPU resource id: lowercase letters, digits, hyphens, <= 63 chars."""
  s = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{name}".lower()).strip("-")
  s = s if s[:1].isalpha() else f"r-{s}"
  return s[:63].rstrip("-")


def tpu_startup_script(command: list[str], workdir: str, code_uri: str,
                       results_uri: str | None) -> str:
  """Runs on every worker at boot: fetch code, install, train, worker 0 syncs results.

  results_uri None: the workdir is already on GCS (nothing to sync).
  """
  q = shlex.quote
  if results_uri is None:
    sync = ["sync_results() { true; }"]
  else:
    sync = [f"sync_results() {{ [ \"$WORKER\" != 0 ] || gcloud storage rsync -r {q(workdir)} "
            f"{q(results_uri)}; }}", "( while sleep 600; do sync_results || true; done ) &"]
  return "\n".join([
      "#!/bin/bash",
      "# scaling-jax queued-resource run (generated by launch/sweep_fanout.py)",
      "set -uo pipefail",
      "WORKER=$(curl -s -H Metadata-Flavor:Google http://metadata.google.internal/"
      "computeMetadata/v1/instance/attributes/agent-worker-number || echo 0)",
      "mkdir -p /opt/scaling-jax && cd /opt/scaling-jax",
      f"gcloud storage cp {q(code_uri)} code.tar.gz && tar xzf code.tar.gz",
      "python3 -m pip install -U 'jax[tpu]' && python3 -m pip install -e .",
      "export PATH=$HOME/.local/bin:/usr/local/bin:$PATH SCALING_JAX_DIST=tpu",
      *sync,
      f"{common.shell_line(command)} 2>&1 | tee -a /opt/train.log",
      "RC=${PIPESTATUS[0]}",
      "sync_results",
      "exit $RC",
      ""])


def tpu_queued(runs, *, project: str, zone: str, accelerator_type: str, runtime_version: str,
               bucket: str, prefix: str = "sj", spot: bool = False, work_dir: str = "tpu",
               gcs_workdir: bool = False) -> tuple[dict[str, str], list[list[str]]]:
  """Files to write and the commands: upload the code once, then one queued resource a run.

  By default each run trains into /opt/runs/NAME on the workers and worker 0 syncs it to
  BUCKET/runs/NAME every 10 min and at the end (enough for the fitter; checkpoints of a
  multi-host slice need shared storage, so resuming after preemption needs gcs_workdir).
  gcs_workdir=True trains straight into BUCKET/runs/NAME (the trainer must accept gs://).
  """
  bucket = bucket.rstrip("/")
  code_uri = f"{bucket}/code/scaling-jax.tar.gz"
  archive = os.path.join(work_dir, "scaling-jax.tar.gz")
  excludes = [f"--exclude={e}" for e in ARCHIVE_EXCLUDES]
  cmds = [["tar", "czf", archive, *excludes, "-C", common.REPO_ROOT, "."],
          ["gcloud", "storage", "cp", archive, code_uri]]
  files = {}
  for run in runs:
    results = f"{bucket}/runs/{run['name']}"
    remote_workdir = results if gcs_workdir else f"/opt/runs/{run['name']}"
    command = common.train_command(run["config"], remote_workdir, run["overrides"])
    script = os.path.join(work_dir, f"{run['name']}.startup.sh")
    files[script] = tpu_startup_script(command, remote_workdir, code_uri,
                                       None if gcs_workdir else results)
    name = qr_name(prefix, run["name"])
    cmd = ["gcloud", "compute", "tpus", "queued-resources", "create", name,
           f"--node-id={name}", f"--project={project}", f"--zone={zone}",
           f"--accelerator-type={accelerator_type}", f"--runtime-version={runtime_version}",
           f"--metadata-from-file=startup-script={script}"]
    cmds.append(cmd + (["--spot"] if spot else []))
  return files, cmds


def execute(files: dict[str, str], cmds: list[list[str]], dry_run: bool, out=None,
            stop_on_error: bool = True) -> int:
  """Writes the files and runs the commands in order, or prints them all (--dry-run)."""
  out = sys.stdout if out is None else out
  if dry_run:
    for path, text in files.items():
      out.write(f"# --- {path} ---\n{text}{'' if text.endswith(chr(10)) else chr(10)}"
                f"# --- end {path} ---\n")
    for cmd in cmds:
      out.write(common.shell_line(cmd) + "\n")
    return 0
  for path, text in files.items():
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
      f.write(text)
  rc = 0
  for cmd in cmds:
    out.write(f"$ {common.shell_line(cmd)}\n")
    out.flush()
    code = subprocess.call(cmd)
    if code:
      rc = rc or code
      if stop_on_error:
        return rc
  return rc


# ---------------------------------------------------------------------------- collect

def collect(sources: list[str], dest: str | None, mode: str = "list",
            with_checkpoints: bool = False, out=None) -> list[str]:
  """Finished run dirs under `sources`; copied/linked into `dest` unless mode is list."""
  out = sys.stdout if out is None else out
  finished, others = [], []
  for src in sources:
    for run in rundir.find_runs(src):
      status = rundir.read_status(run)["status"]
      (finished if status == "finished" else others).append((run, status))
  if mode != "list":
    if not dest:
      raise SweepError(f"collect --mode {mode} needs --dest DIR")
    os.makedirs(dest, exist_ok=True)
  results = []
  for run, _ in finished:
    if mode == "list":
      results.append(run)
      continue
    name = os.path.basename(os.path.normpath(run))
    target = os.path.join(dest, name)
    if os.path.lexists(target):  # two sweeps with a run of the same name
      parent = os.path.basename(os.path.dirname(os.path.normpath(run)))
      target = os.path.join(dest, f"{parent}__{name}")
    if os.path.lexists(target):
      raise SweepError(f"{target} exists; collect into an empty --dest")
    if mode == "link":
      os.symlink(os.path.abspath(run), target)
    else:  # the fitter reads config/metrics/status; checkpoints are big
      ignore = None if with_checkpoints else shutil.ignore_patterns(rundir.CHECKPOINT_DIR)
      shutil.copytree(run, target, ignore=ignore)
    results.append(target)
  for path in results:
    out.write(path + "\n")
  for run, status in others:
    out.write(f"# skipped {run}: {status}\n")
  return results


# ---------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="cmd", required=True)
  s = sub.add_parser("submit", help="one job per run of a sweep file")
  s.add_argument("sweep", help="python file with get_sweep()")
  s.add_argument("--out", required=True, help="sweep dir; run NAME trains into OUT/NAME")
  s.add_argument("--backend", choices=("slurm", "tpu", "local"), required=True)
  s.add_argument("--rerun-finished", action="store_true", help="also runs already finished")
  s.add_argument("--max-parallel", type=int, default=None, help="slurm: array tasks at once")
  s.add_argument("--job-name", default="sweep")
  slurm.add_cluster_flags(s)  # --nodes --gpus-per-node --time --partition ... --dry-run
  s.add_argument("--project", default=None)
  s.add_argument("--zone", default=None)
  s.add_argument("--accelerator-type", default="v4-32")
  s.add_argument("--runtime-version", default="tpu-ubuntu2204-base")
  s.add_argument("--bucket", default=None, help="tpu: gs:// prefix for code and results")
  s.add_argument("--prefix", default="sj", help="tpu: queued-resource name prefix")
  s.add_argument("--spot", action="store_true")
  s.add_argument("--gcs-workdir", action="store_true",
                 help="tpu: train straight into BUCKET/runs/NAME (trainer must accept gs://)")
  c = sub.add_parser("collect", help="gather finished run dirs for the fitter")
  c.add_argument("sources", nargs="+")
  c.add_argument("--dest", default=None)
  c.add_argument("--mode", choices=("list", "copy", "link"), default="copy")
  c.add_argument("--with-checkpoints", action="store_true")
  args = parser.parse_args(argv)

  try:
    if args.cmd == "collect":
      runs = collect(args.sources, args.dest, args.mode, args.with_checkpoints)
      print(f"# {len(runs)} finished runs", file=sys.stderr)
      return 0
    runs = load_sweep(args.sweep)
    out_dir = os.path.abspath(args.out)
    todo, done = pending(runs, out_dir, not args.rerun_finished)
    if done:
      print(f"# skipping {len(done)} finished runs: {', '.join(done)}")
    if not todo:
      print("# nothing to submit: every run is finished")
      return 0
    if args.backend == "slurm":
      files, cmds = slurm_array(todo, out_dir, max_parallel=args.max_parallel,
                                job_name=args.job_name, **slurm.cluster_kwargs(args))
      return execute(files, cmds, args.dry_run)
    if args.backend == "tpu":
      missing = [f"--{k}" for k in ("project", "zone", "bucket") if not getattr(args, k)]
      if missing:
        parser.error(f"--backend tpu needs {' '.join(missing)}")
      files, cmds = tpu_queued(todo, project=args.project, zone=args.zone,
                               accelerator_type=args.accelerator_type,
                               runtime_version=args.runtime_version, bucket=args.bucket,
                               prefix=args.prefix, spot=args.spot,
                               work_dir=os.path.join(out_dir, "tpu"),
                               gcs_workdir=args.gcs_workdir)
      return execute(files, cmds, args.dry_run)
    cmds = [run_command(r, out_dir) for r in todo]
    return execute({}, cmds, args.dry_run, stop_on_error=False)
  except SweepError as e:
    print(f"sweep_fanout: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
