"""Every experiment, end to end: `python -m experiments.run_all --out runs/` (`make experiments`).

Trains each experiment's sweep (`experiments/NN_name/sweep.py`, through `scaling-jax
sweep`'s runner), then runs its analysis (`analyze.py SWEEP_DIR`). Resumable: rerunning
the command skips finished runs, resumes interrupted ones and retries failed ones.
Experiments whose sweeps are identical (02 and 05; 01, 02, 05 and 07 share the size
ladder) train their runs once, in the first one's directory `OUT/NN_name`.

A line `[experiments] ...` gives the progress and an ETA over every run still to train
(runs weighted by their estimated seconds on a 2-core CPU). `OUT/run_all.json` records the
measured wall time of each run and analysis ({"runs": {"SWEEP/NAME": s}, "analyses":
{experiment: s}}); the closing table sums them per experiment.

Usage: python -m experiments.run_all --out runs/ [--only 01,04] [--scale cpu|pod]
       [--bootstrap 200] [--skip-analysis] [--dry-run]
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import time
import traceback
from typing import Any, Sequence, TextIO

from experiments import common
from scaling_jax import errors, metrics, preflight, rundir
from scaling_jax import sweep as sweep_lib

EXPERIMENTS_DIR = common.REPO / "experiments"
RECORD = "run_all.json"
# Seconds of one run ~ OVERHEAD_S + steps x (STEP_S + FLOPs/step x S_PER_FLOP), fitted to the
# transformer rows of BENCHMARKS.md "Experiments (CPU scale)"; only the runs' relative
# weights in the ETA depend on it (the ETA itself scales with the measured elapsed time).
OVERHEAD_S, STEP_S, S_PER_FLOP = 8.0, 0.035, 1.07e-11
# Extra analysis flags per experiment (as in experiments/README.md's commands).
ANALYSIS_ARGS = {"10_isoflop": ["--bootstrap", "100"]}


@dataclasses.dataclass
class Group:
  """One sweep directory and the experiments that analyse its runs."""
  sweep_dir: str
  experiments: list[str]
  runs: list[dict[str, Any]]


def experiment_names() -> list[str]:
  return sorted(p.name for p in EXPERIMENTS_DIR.iterdir()
                if p.is_dir() and p.name[:2].isdigit() and (p / "sweep.py").is_file())


def select(only: str | None) -> list[str]:
  """The experiments named by `--only 01,04` (numbers or folder names); all when None.
  ExperimentError for a name that matches none, or an --only that names nothing (`--only ,`
  must not pass as a run of no experiment)."""
  names = experiment_names()
  if only is None:
    return names
  tokens = [t.strip() for t in only.split(",") if t.strip()]
  if not tokens:
    raise common.ExperimentError(f"--only {only!r} names no experiment; pass numbers or folder "
                                 f"names among {', '.join(names)}")
  picked = []
  for token in tokens:
    match = [n for n in names if n == token or n.split("_")[0] == token.zfill(2)]
    if not match:
      raise common.ExperimentError(f"--only {token!r} names no experiment; use numbers or "
                                   f"folder names among {', '.join(names)}")
    picked += [m for m in match if m not in picked]
  return picked


def sweep_entries(name: str, scale: str) -> list[dict[str, Any]]:
  module = common.load_module(EXPERIMENTS_DIR / name / "sweep.py")
  return sweep_lib.normalize_runs(module.get_sweep(scale), f"{name}/sweep.py:get_sweep()")


def plan(names: Sequence[str], out: str, scale: str) -> list[Group]:
  """Sweep directories, cheapest first (results come early); an experiment whose sweep
  equals an earlier one's reuses that directory."""
  groups: list[Group] = []
  for name in names:
    runs = sweep_entries(name, scale)
    same = next((g for g in groups if g.runs == runs), None)
    if same is not None:
      same.experiments.append(name)
    else:
      groups.append(Group(os.path.join(out, name), [name], runs))
  return sorted(groups, key=lambda g: sum(estimated_seconds(r) for r in g.runs))


def estimated_seconds(run: dict[str, Any]) -> float:
  """A run's cost on an idle 2-core CPU, from its FLOPs (see OVERHEAD_S)."""
  flops, steps = sweep_lib.run_cost(run)
  if not steps or flops != flops:
    return OVERHEAD_S
  return OVERHEAD_S + steps * STEP_S + flops * S_PER_FLOP


class Progress:
  """Progress and ETA over every run of every group still to train."""

  def __init__(self, groups: Sequence[Group]):
    self.items = []  # (run dir, weight, start step, num_steps)
    for g in groups:
      todo, _ = sweep_lib.pending(g.runs, g.sweep_dir)
      for run in todo:
        d = sweep_lib.run_dir(g.sweep_dir, run["name"])
        steps = sweep_lib.run_cost(run)[1]
        self.items.append((d, estimated_seconds(run), metrics.last_step(d), steps))
    self.total = sum(w for _, w, _, _ in self.items)
    self.t0 = time.monotonic()

  def fraction(self) -> float:
    done = 0.0
    for d, w, s0, steps in self.items:
      if rundir.read_status(d)["status"] == "finished":
        done += w
      elif steps > s0:
        done += w * min(1.0, max(0, metrics.last_step(d) - s0) / (steps - s0))
    return done / self.total if self.total else 1.0

  def line(self) -> str:
    f = self.fraction()
    elapsed = time.monotonic() - self.t0
    eta = elapsed * (1 - f) / f if f > 0.005 else float("nan")
    n_done = sum(rundir.read_status(d)["status"] == "finished" for d, *_ in self.items)
    return (f"[experiments] {n_done}/{len(self.items)} runs trained, {100 * f:.0f}% of the "
            f"estimated CPU time, elapsed {sweep_lib._fmt_s(elapsed)}, "
            f"ETA {sweep_lib._fmt_s(eta)}")


class _SweepStream(io.TextIOBase):
  """The sweep runner's output, each of its `[sweep]` lines followed by the overall line."""

  def __init__(self, progress: Progress, stream: TextIO):
    self.progress, self.stream, self.pending = progress, stream, ""

  def write(self, text: str) -> int:
    self.pending += text
    *lines, self.pending = self.pending.split("\n")
    for line in lines:
      self.stream.write(line + "\n")
      if line.startswith("[sweep]"):
        self.stream.write(self.progress.line() + "\n")
    self.stream.flush()
    return len(text)

  def isatty(self) -> bool:
    return False


def read_record(out: str) -> dict[str, Any]:
  """OUT/run_all.json: {"runs": {run dir: wall s}, "cpu": {run dir: CPU s of its training
  process}, "analyses": {experiment: wall s}, "load": {sweep dir: [1-min load average before
  the last invocation that trained it, after]}}. How busy the machine was: a run's CPU s / wall s
  is the cores it got (2 alone on 2 idle cores, less if others took them); the load average
  counts the sweep's own runs too (about 2 per run training at once)."""
  record = rundir.read_json(os.path.join(out, RECORD),
                            {"runs": dict, "cpu": dict, "analyses": dict, "load": dict})
  return {"runs": {}, "cpu": {}, "analyses": {}, "load": {}, **(record or {})}


def add_to_record(out: str, section: str, times: dict[str, float]) -> dict[str, Any]:
  """Merges `times` into OUT/run_all.json (re-read first: another invocation on other
  experiments may have written it meanwhile); returns the record."""
  record = read_record(out)
  record[section].update(times)
  rundir.write_json_atomic(os.path.join(out, RECORD), record)
  return record


def run_key(group: Group, name: str) -> str:
  """A run's key in OUT/run_all.json: SWEEP/NAME, relative to OUT."""
  return f"{os.path.basename(group.sweep_dir)}/{name}"


def experiment_time_parts(record: dict[str, Any],
                          groups: Sequence[Group]) -> dict[str, tuple[float, float]]:
  """(training s, analysis s) per experiment: its sweep's recorded run times (shared runs count
  for each experiment that uses them) and its analysis; nan while a part has no recorded time."""
  out = {}
  for g in groups:
    walls = [record["runs"].get(run_key(g, r["name"])) for r in g.runs]
    train_s = sum(walls) if all(w is not None for w in walls) else float("nan")
    for name in g.experiments:
      out[name] = (train_s, record["analyses"].get(name, float("nan")))
  return out


def experiment_times(record: dict[str, Any], groups: Sequence[Group]) -> dict[str, float]:
  """Seconds per experiment, training plus analysis (`experiment_time_parts`)."""
  return {name: sum(parts) for name, parts in experiment_time_parts(record, groups).items()}


def run_analysis(name: str, sweep_dir: str, bootstrap: int | None) -> int:
  """`analyze.py SWEEP_DIR` in this process; its exit code (1 for an unexpected exception,
  printed with its traceback so the bug can be found)."""
  module = common.load_module(EXPERIMENTS_DIR / name / "analyze.py")
  argv = [sweep_dir, *ANALYSIS_ARGS.get(name, [])]
  if bootstrap is not None:
    argv += ["--bootstrap", str(bootstrap)]
  try:
    return int(module.main(argv))
  except Exception:  # noqa: BLE001 -- one broken analysis must not stop the others
    traceback.print_exc()
    return 1


@errors.boundary("experiments.run_all")
def main(argv: Sequence[str]) -> int:
  parser = errors.ArgumentParser(
      prog="python -m experiments.run_all",
      description="Train every experiment's sweep into OUT/NN_name, then run its analysis; "
                  "rerun to resume (finished runs are skipped).")
  parser.add_argument("--out", required=True, help="directory for the sweep directories")
  parser.add_argument("--only", default=None,
                      help="comma-separated experiments to run, e.g. 01,04 (default: all)")
  parser.add_argument("--scale", default=None, choices=common.SCALES,
                      help=f"sweep scale (default: ${common.SCALE_ENV} or cpu)")
  parser.add_argument("--bootstrap", type=errors.non_negative_int, default=None,
                      help="bootstrap resamples for the analyses' intervals")
  parser.add_argument("--parallel", type=errors.positive_int, default=1,
                      help="trainings at once")
  parser.add_argument("--skip-analysis", action="store_true", help="train only")
  parser.add_argument("--dry-run", action="store_true",
                      help="print the plan (sweep directories, runs to train) only")
  args = parser.parse_args(argv)
  # Every input is checked before the plan is printed: the experiments, --out (not under a
  # file, writable), and the status.json of each run already in it (DamagedRunFile).
  names, scale = select(args.only), common.resolve_scale(args.scale)
  preflight.check_output_dir(args.out, "--out")
  groups = plan(names, args.out, scale)
  pending = [(g, *sweep_lib.pending(g.runs, g.sweep_dir)) for g in groups]
  for g, todo, done in pending:
    est = sum(estimated_seconds(r) for r in todo)
    print(f"[experiments] {g.sweep_dir}: {', '.join(g.experiments)}; {len(todo)} to train "
          f"(~{sweep_lib._fmt_s(est)} on an idle 2-core CPU), {len(done)} finished")
  if args.dry_run:
    return 0
  with errors.writing(args.out, "--out"):
    os.makedirs(args.out, exist_ok=True)
  progress = Progress(groups)
  failed: list[str] = []
  for g in groups:
    load_before = os.getloadavg()[0]
    results = sweep_lib.run_sweep(g.runs, g.sweep_dir, parallel=args.parallel,
                                  stream=_SweepStream(progress, sys.stderr),
                                  sweep_dir=str(EXPERIMENTS_DIR / g.experiments[0]))
    finished = [r for r in results.values() if r.status == "finished"]
    add_to_record(args.out, "runs", {run_key(g, r.name): r.wall_s for r in finished})
    add_to_record(args.out, "cpu", {run_key(g, r.name): r.cpu_s for r in finished
                                    if r.cpu_s is not None})
    if any(r.wall_s for r in results.values()):  # something trained: under what load
      add_to_record(args.out, "load", {os.path.basename(g.sweep_dir):
                                       [round(load_before, 2), round(os.getloadavg()[0], 2)]})
    text, code = sweep_lib.summarize(results)
    print(f"[experiments] {g.sweep_dir}: {text}")
    # Interrupted (SIGINT/SIGTERM): stop here, even if a run killed before it could
    # checkpoint counts as failed.
    if any(r.status == "preempted" for r in results.values()):
      print("[experiments] interrupted: rerun the same command to resume", file=sys.stderr)
      return sweep_lib.EX_TEMPFAIL
    if code:
      failed += [f"{g.sweep_dir} (training)"]
      continue
    if args.skip_analysis:
      continue
    for name in g.experiments:
      print(f"[experiments] analysis {name} of {g.sweep_dir}", flush=True)
      t0 = time.monotonic()
      rc = run_analysis(name, g.sweep_dir, args.bootstrap)
      add_to_record(args.out, "analyses", {name: time.monotonic() - t0})
      if rc:
        failed.append(f"{name} (analysis, exit code {rc})")
  times = experiment_times(read_record(args.out), groups)
  print("[experiments] measured wall time per experiment (runs sharing a sweep counted "
        "for each):")
  for name, s in times.items():
    print(f"  {name:<24} {sweep_lib._fmt_s(s)}")
  if failed:
    print(f"[experiments] failed: {'; '.join(failed)}; see OUT/NN_name/NAME/train.log and "
          "rerun the same command to retry", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
