"""`scaling-jax sweep SWEEP.py --out DIR [--parallel N]`: run a grid of trainings, resumably.

A sweep file defines `get_sweep()` returning a list of runs, each
{"name": str, "config": "configs/X.py", "overrides": {"model.d_model": 128, ...}}
(or a (name, config, overrides) tuple). Run NAME trains into OUT/NAME (config.json,
metrics.jsonl, checkpoints/, status.json, and train.log with its output), each in its own
`python -m scaling_jax.cli train` subprocess, so a crash cannot take the sweep down and
runs can go in parallel.

Rerunning the same command finishes the sweep: finished runs are skipped, interrupted
ones resume from their last checkpoint, failed ones are retried. A failed run gets
status.json {"status": "failed", "error": ...} and the sweep goes on; the exit code is
1 if any run failed, 75 if the sweep was interrupted (rerun to resume), else 0.

OUT/sweep.json lists every run ever swept into OUT: another sweep file run into the same OUT
adds its runs to it (`merge_sweep_file`). A run whose OUT/NAME already holds a run trained
with another config is refused before anything runs (`check_reused_names`).

OUT may be a gs:// URL (rundir): the runs write there directly, and each run's output is
piped through the sweep into OUT/NAME/train.log (rewritten every LOG_SYNC_S seconds and
when the run exits), since a child process cannot append to an object.

launch/sweep_fanout.py shares this module's sweep-file loading (`load_sweep`).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Mapping, Sequence, TextIO

from scaling_jax import accounting, errors, metrics, preflight, rundir
from scaling_jax.config import (ConfigError, config_diff, format_override, load_config,
                                load_user_module, parse_overrides)

# The shipped configs (the repo's configs/, installed as the package scaling_jax.configs).
CONFIGS_DIR = str(importlib.resources.files("scaling_jax.configs"))
# Where the scaling_jax being run lives: put on the children's PYTHONPATH so they run it too.
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")
LOG_FILE = "train.log"
LOG_SYNC_S = 30.0  # a remote train.log is rewritten at most this often while its run trains
SWEEP_FILE = "sweep.json"
EX_TEMPFAIL = 75  # the trainer's exit code when preempted (resume by rerunning)


class SweepError(errors.UserError, ValueError):
  """A sweep definition that cannot run; the message says what to fix."""


# ---------------------------------------------------------------------------- sweep files

RUN_FORM = '{"name": str, "config": "configs/X.py", "overrides": {"field.name": value}}'


def normalize_runs(runs: Any, source: str = "get_sweep()") -> list[dict[str, Any]]:
  """Dicts {name, config, overrides} from dicts or (name, config, overrides) tuples."""
  if isinstance(runs, (str, bytes, Mapping)) or not isinstance(runs, Sequence):
    raise SweepError(f"{source} returned a {type(runs).__name__}; it must return a list of "
                     f"runs, each {RUN_FORM}")
  out, seen = [], set()
  for i, run in enumerate(runs):
    if isinstance(run, (tuple, list)) and len(run) == 3:
      run = {"name": run[0], "config": run[1], "overrides": run[2]}
    if (not isinstance(run, Mapping) or "name" not in run
        or not isinstance(run.get("config"), str)
        or not isinstance(run.get("overrides") or {}, Mapping)):
      raise SweepError(f"{source} item {i} is {run!r}; each run must be {RUN_FORM}")
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
  """Imports the sweep file and normalizes its get_sweep(). Whatever the user's file raises
  (a syntax error, an exception in get_sweep()) is a SweepError naming the file."""
  if not os.path.isfile(path):
    raise SweepError(f"sweep file {path!r} not found")
  try:
    get_sweep = getattr(load_user_module(path, "_sweep_definition"), "get_sweep", None)
    if not callable(get_sweep):
      raise SweepError(f"{path} defines no get_sweep(); it must return a list of runs")
    runs = get_sweep()
  except SweepError:
    raise
  except Exception as e:  # noqa: BLE001 -- the user's code: one line saying where
    raise SweepError(f"sweep file {path} failed: {type(e).__name__}: {errors.one_line(e)}; "
                     "fix the file") from None
  return normalize_runs(runs, f"{path}:get_sweep()")


def resolve_config(config: str, sweep_dir: str | None = None) -> str:
  """An absolute config path: as given, else relative to the sweep file, else a shipped
  config (`configs/X.py` is the package's copy of the repo's configs/X.py)."""
  shipped = os.path.join(CONFIGS_DIR, config.split("configs/", 1)[-1])
  candidates = [config] if os.path.isabs(config) else [
      config, *([os.path.join(sweep_dir, config)] if sweep_dir else []), shipped]
  for c in candidates:
    if os.path.isfile(c):
      return os.path.abspath(c)
  raise SweepError(f"config file {config!r} not found (looked in {candidates})")


def run_dir(out_dir: str, name: str) -> str:
  """OUT/NAME, for a local directory or a URL."""
  return str(rundir.path(out_dir) / name)


def absolute(out_dir: str) -> str:
  """An absolute local path (children may run elsewhere); a URL as it is."""
  return out_dir if rundir.is_remote(out_dir) else os.path.abspath(out_dir)


def train_command(run: Mapping[str, Any], out_dir: str,
                  python: str = sys.executable) -> list[str]:
  """`python -m scaling_jax.cli train --config C --workdir OUT/NAME --config.k=v ...`."""
  overrides = dict(run["overrides"])
  overrides.setdefault("train.progress", False)  # the sweep shows overall progress instead
  return [python, "-m", "scaling_jax.cli", "train", "--config", run["config"],
          "--workdir", run_dir(out_dir, run["name"]),
          *[format_override(k, v) for k, v in overrides.items()]]


def pending(runs: Sequence[Mapping[str, Any]], out_dir: str, rerun_finished: bool = False):
  """(runs still to do, names skipped because their status.json says finished)."""
  todo, done = [], []
  for run in runs:
    finished = rundir.read_status(run_dir(out_dir, run["name"]))["status"] == "finished"
    (done if finished and not rerun_finished else todo).append(run)
  return todo, [r["name"] for r in done]


# ---------------------------------------------------------------------------- progress

def load_run_config(config: str, overrides: Mapping[str, Any]):
  """The ConfigDict a run trains with (config.load_config: typed and validated)."""
  return load_config(config, overrides)


def check_runs(runs: Sequence[Mapping[str, Any]]) -> None:
  """SweepError naming the first run whose config does not load or validate, before any
  run starts (a typo in an override must not cost a sweep's worth of failed runs)."""
  for run in runs:
    try:
      load_run_config(run["config"], run["overrides"])
    except ConfigError as e:
      raise SweepError(f"run {run['name']!r}: {e}; fix its config or overrides") from None


def prepare_runs(runs: Any, sweep_dir: str | None = None) -> list[dict[str, Any]]:
  """The normalized runs with absolute config paths, every config loaded and validated."""
  runs = [dict(r, config=resolve_config(r["config"], sweep_dir)) for r in normalize_runs(runs)]
  check_runs(runs)
  return runs


MAX_CONFLICTS_SHOWN = 3  # runs named in check_reused_names' one line; the rest are counted


def check_reused_names(runs: Sequence[Mapping[str, Any]], out_dir: str) -> None:
  """SweepError naming every run (the first MAX_CONFLICTS_SHOWN, then a count) whose OUT/NAME
  holds a run (config.json: finished, failed, preempted or running) with another config.

  Such a run would be skipped as finished, or refused by the trainer's own workdir check
  (train.prepare_workdir) only once the sweep is under way, and sweep.json would list a
  config the run was never trained with. The resolved config is compared as the trainer
  records it (JSON values: tuples as lists) with config_diff, which ignores the fields a
  resume may change (config.RESUME_FREE: train.progress, which the sweep turns off, ...).
  """
  conflicts = []
  for run in runs:
    where = run_dir(out_dir, run["name"])
    existing = rundir.read_config(where)  # DamagedRunFile names a damaged config.json
    if existing is None:
      continue
    now = rundir.strict_json(load_run_config(run["config"], run["overrides"]).to_dict())
    diff = config_diff(existing.get("config", {}), now)
    if diff:
      conflicts.append((run["name"], where, diff))
  if not conflicts:
    return
  parts = [f"run {name!r}: {where} holds a run with a different config "
           f"({'; '.join(diff[:3])}{f'; {len(diff) - 3} more' if len(diff) > 3 else ''})"
           for name, where, diff in conflicts[:MAX_CONFLICTS_SHOWN]]
  if len(conflicts) > MAX_CONFLICTS_SHOWN:
    parts.append(f"and {len(conflicts) - MAX_CONFLICTS_SHOWN} more run(s)")
  fix = (f"give the run another name, or delete {conflicts[0][1]} to start over"
         if len(conflicts) == 1 else
         "give those runs other names, or delete their run directories to start over")
  raise SweepError(f"{', '.join(parts)}; {fix}")


def merge_sweep_file(out_dir: str, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """OUT/sweep.json's content with `runs` merged in: the entries already there keep their
  order (a run of the same name gets its new entry), new runs are appended, and other keys
  of the file are kept, so that sweeping another file into OUT loses no run's entry.

  A damaged sweep.json (rundir.DamagedRunFile) stops the sweep rather than be rewritten.
  """
  path = rundir.path(out_dir) / SWEEP_FILE
  old = rundir.read_json(path) or {}
  entries = old.get("runs", [])
  if not isinstance(entries, list) or not all(
      isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries):
    raise rundir.DamagedRunFile(f"{path} is damaged: its \"runs\" is not a list of runs with "
                                "a name; restore it from a copy, or move it away")
  new = {r["name"]: dict(r) for r in runs}
  merged = [new.pop(e["name"], e) for e in entries]
  return {**old, "runs": merged + list(new.values())}


def check_out_dir(runs: Sequence[Mapping[str, Any]], out_dir: str, rerun_finished: bool = False
                  ) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
  """(runs to train, names finished, sweep.json's merged content): every input in OUT is
  checked before anything is written there -- run statuses, configs and sweep.json read
  (DamagedRunFile), names reused with another config (`check_reused_names`). A dry run and
  a real sweep refuse the same inputs."""
  todo, done = pending(runs, out_dir, rerun_finished)
  check_reused_names(runs, out_dir)
  return todo, done, merge_sweep_file(out_dir, runs)


def run_cost(run: Mapping[str, Any]) -> tuple[float, int]:
  """(relative cost = training FLOPs, num_steps) of a run, for the ETA; (nan, 0) if its
  config does not load (run_sweep refuses such a run before it starts)."""
  try:
    c = load_run_config(run["config"], run["overrides"])
  except ConfigError:
    return float("nan"), 0
  steps = int(c.train.num_steps)
  flops = accounting.counts(c.model).flops_per_token_exact
  return float(flops) * steps * c.train.batch_size * c.model.n_ctx, steps


def _fmt_s(s: float) -> str:
  if s != s or s == float("inf"):
    return "?"
  s = int(round(s))
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _Progress:
  """Overall progress of the sweep: compute done (runs weighted by FLOPs) and an ETA."""

  def __init__(self, runs, out_dir: str, stream: TextIO | None, every_s: float):
    self.out_dir, self.stream, self.every_s = out_dir, stream, every_s
    costs = {r["name"]: run_cost(r) for r in runs}
    known = [c for c, _ in costs.values() if c == c]
    mean = sum(known) / len(known) if known else 1.0
    self.cost = {k: (c if c == c else mean) for k, (c, _) in costs.items()}
    self.steps = {k: s for k, (_, s) in costs.items()}
    self.start_step = {k: metrics.last_step(run_dir(out_dir, k)) for k in costs}
    self.total = sum(self.cost.values())
    self.done: set[str] = set()
    self.t0 = time.monotonic()
    self.last_print = -1e9
    self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

  def fraction(self, running: Sequence[str]) -> float:
    f = sum(self.cost[k] for k in self.done)
    for k in running:
      s, s0 = self.steps[k], self.start_step[k]
      if s > s0:
        f += self.cost[k] * min(1.0, max(0, metrics.last_step(run_dir(self.out_dir, k)) - s0)
                                / (s - s0))
    return f / self.total if self.total else 1.0

  def line(self, running: Sequence[str], n_failed: int) -> str:
    f = self.fraction(running)
    elapsed = time.monotonic() - self.t0
    eta = elapsed * (1 - f) / f if f > 0.005 else float("nan")
    parts = [f"[sweep] {len(self.done)}/{len(self.cost)} runs done", f"{100 * f:.0f}% of compute",
             f"elapsed {_fmt_s(elapsed)}", f"ETA {_fmt_s(eta)}"]
    if n_failed:
      parts.insert(1, f"{n_failed} failed")
    if running:
      parts.append("running " + ", ".join(
          f"{k} ({metrics.last_step(run_dir(self.out_dir, k))}/{self.steps[k] or '?'})"
          for k in running))
    return ", ".join(parts)

  def show(self, running: Sequence[str], n_failed: int, force: bool = False,
           message: str | None = None) -> None:
    if self.stream is None:
      return
    now = time.monotonic()
    if message:
      self.stream.write(("\r\033[K" if self.tty else "") + message + "\n")
    if force or message or now - self.last_print >= self.every_s:
      self.last_print = now
      text = self.line(running, n_failed)
      self.stream.write(("\r\033[K" + text) if self.tty else text + "\n")
      self.stream.flush()

  def close(self) -> None:
    if self.stream is not None and self.tty:
      self.stream.write("\n")
      self.stream.flush()


# ---------------------------------------------------------------------------- the runner

@dataclasses.dataclass
class RunResult:
  name: str
  status: str  # finished | failed | preempted | skipped
  returncode: int | None = None
  wall_s: float = 0.0
  error: str | None = None
  cpu_s: float | None = None  # user + system CPU seconds of the training process


class TrainLog:
  """OUT/NAME/train.log, appended to by a run's process.

  Locally the child writes into the file itself. In a remote directory (an object cannot be
  appended to) the child's output comes through a pipe; a thread keeps the log's text and
  rewrites the object every LOG_SYNC_S seconds and at `close`.
  """

  def __init__(self, path: str):
    self.path, self.remote = path, rundir.is_remote(path)
    self._thread: threading.Thread | None = None
    if self.remote:
      try:
        self._text = rundir.read_bytes(path).decode("utf-8", errors="replace")
      except FileNotFoundError:
        self._text = ""
      self.stdout = subprocess.PIPE
    else:
      self._file = open(path, "a")
      self.stdout = self._file

  def write(self, text: str) -> None:
    if self.remote:
      self._text += text
      rundir.write_text(self.path, self._text)
    else:
      self._file.write(text)
      self._file.flush()

  def follow(self, proc: subprocess.Popen) -> None:
    """Copies a remote run's piped output into the log until the process closes it."""
    if not self.remote:
      return

    def pump():
      synced = time.monotonic()
      for line in iter(proc.stdout.readline, b""):
        self._text += line.decode("utf-8", errors="replace")
        if time.monotonic() - synced >= LOG_SYNC_S:
          rundir.write_text(self.path, self._text)
          synced = time.monotonic()

    self._thread = threading.Thread(target=pump, daemon=True)
    self._thread.start()

  def close(self) -> None:
    if self.remote:
      if self._thread is not None:
        self._thread.join()
      rundir.write_text(self.path, self._text)
    else:
      self._file.close()


def _log_tail(path: str, n: int = 8) -> str:
  try:
    text = rundir.read_bytes(path).decode("utf-8", errors="replace")
  except OSError:
    return ""
  lines = [l.rstrip() for l in text.splitlines()[-200:] if l.strip()]
  errors = [l for l in lines if "error" in l.lower() or "diverged" in l.lower()]
  return "\n".join((errors or lines)[-n:])


def _poll(proc: subprocess.Popen) -> tuple[int | None, float | None]:
  """(exit code or None while running, CPU seconds it used) of a child process."""
  if proc.returncode is not None:
    return proc.returncode, None
  try:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
  except ChildProcessError:
    return proc.poll(), None
  if pid == 0:
    return None, None
  proc.returncode = os.waitstatus_to_exitcode(status)
  return proc.returncode, usage.ru_utime + usage.ru_stime


def _finish(run_path: str, name: str, rc: int, wall_s: float, log: str) -> RunResult:
  """Reads back the run's status after its process exited; marks it failed if it must be."""
  status = rundir.read_status(run_path)
  if rc == 0 and status["status"] == "finished":
    return RunResult(name, "finished", rc, wall_s)
  if rc == EX_TEMPFAIL or (rc < 0 and status["status"] == "preempted"):
    return RunResult(name, "preempted", rc, wall_s)
  error = status.get("error") if status["status"] == "failed" else None
  if rc < 0:  # the process was killed (OOM killer, kill -9, a scheduler)
    error = f"killed by signal {-rc} ({signal.Signals(-rc).name})" + (f"; {error}" if error else "")
  error = error or _log_tail(log) or f"exited with code {rc}"
  if rc == 0:
    error = f"exited 0 but status.json says {status['status']!r}; {error}"
  extra = {k: v for k, v in status.items() if k not in ("status", "error")}
  rundir.write_status(run_path, "failed", **{**extra, "error": error, "returncode": rc,
                                            "log": LOG_FILE})
  return RunResult(name, "failed", rc, wall_s, error)


def run_sweep(runs: Sequence[Mapping[str, Any]], out_dir: str, *, parallel: int = 1,
              rerun_finished: bool = False, env: Mapping[str, str] | None = None,
              stream: TextIO | None = sys.stderr, progress_every_s: float = 30.0,
              sweep_dir: str | None = None,
              command: Callable[..., list[str]] = train_command) -> dict[str, RunResult]:
  """Runs every unfinished run of `runs` into OUT/NAME, `parallel` processes at a time.

  Returns {name: RunResult} (skipped runs have status 'skipped'). SIGINT/SIGTERM stop
  launching runs, are forwarded to the running trainings (which checkpoint and exit as
  preempted) and end the sweep after they do.
  """
  if parallel < 1:
    raise SweepError(f"--parallel {parallel} must be >= 1")
  runs = prepare_runs(runs, sweep_dir)
  out_dir = absolute(out_dir)
  preflight.check_output_dir(out_dir, "--out")
  for run in runs:
    where = run_dir(out_dir, run["name"])
    if rundir.exists(where) and not rundir.is_dir(where):
      raise SweepError(f"{where} exists and is not a run directory; move it away or rename "
                       f"run {run['name']!r}")
  todo, done, sweep_file = check_out_dir(runs, out_dir, rerun_finished)
  with errors.writing(out_dir, "--out"):
    rundir.makedirs(out_dir)
    rundir.write_json_atomic(rundir.path(out_dir) / SWEEP_FILE, sweep_file)
  results = {n: RunResult(n, "skipped") for n in done}
  if done and stream is not None:
    stream.write(f"[sweep] skipping {len(done)} finished run(s): {', '.join(done)}\n")
  if not todo:
    return results
  progress = _Progress(todo, out_dir, stream, progress_every_s)
  child_env = dict(os.environ if env is None else env)
  child_env.setdefault("PYTHONUNBUFFERED", "1")
  child_env["PYTHONPATH"] = os.pathsep.join(
      p for p in (CODE_ROOT, child_env.get("PYTHONPATH", "")) if p)
  queue = list(todo)
  active: dict[str, tuple[subprocess.Popen, float, TrainLog]] = {}
  stop = {"signal": None}

  def on_signal(signum, frame):
    stop["signal"] = signum
    for proc, *_ in active.values():
      if proc.poll() is None:
        proc.send_signal(signum)

  old = {}
  for sig in (signal.SIGINT, signal.SIGTERM):
    try:
      old[sig] = signal.signal(sig, on_signal)
    except ValueError:  # not the main thread
      pass
  n_failed = 0
  try:
    while queue or active:
      while queue and len(active) < parallel and stop["signal"] is None:
        run = queue.pop(0)
        rundir.makedirs(run_dir(out_dir, run["name"]))
        log = TrainLog(str(rundir.path(run_dir(out_dir, run["name"])) / LOG_FILE))
        cmd = command(run, out_dir)
        log.write(f"\n### {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stdout=log.stdout, stderr=subprocess.STDOUT, env=child_env)
        log.follow(proc)
        active[run["name"]] = (proc, time.monotonic(), log)
        progress.show(list(active), n_failed, message=f"[sweep] started {run['name']}")
      if not queue and not active:
        break
      if stop["signal"] is not None and not active:
        break
      time.sleep(0.2)
      for name, (proc, t0, log) in list(active.items()):
        rc, cpu_s = _poll(proc)
        if rc is None:
          continue
        log.close()
        del active[name]
        res = _finish(run_dir(out_dir, name), name, rc, time.monotonic() - t0, log.path)
        res.cpu_s = cpu_s
        results[name] = res
        if res.status == "failed":
          n_failed += 1
          first = (res.error or "").strip().splitlines()[-1:] or [""]
          msg = f"[sweep] FAILED {name} (code {rc}, {_fmt_s(res.wall_s)}): {first[0]}"
        else:
          progress.done.add(name)
          msg = (f"[sweep] {res.status} {name} in {_fmt_s(res.wall_s)}"
                 + (f" ({res.cpu_s:.0f} CPU-s)" if res.cpu_s is not None else ""))
        progress.show(list(active), n_failed, message=msg)
      progress.show(list(active), n_failed)
  finally:
    for sig, handler in old.items():
      signal.signal(sig, handler)
    progress.close()
  for run in queue:  # interrupted before they started
    results[run["name"]] = RunResult(run["name"], "preempted", error="not started")
  return results


# ---------------------------------------------------------------------------- CLI

def summarize(results: Mapping[str, RunResult]) -> tuple[str, int]:
  """A one-line summary and the exit code (1 if any failed, 75 if interrupted, else 0)."""
  by: dict[str, list[str]] = {}
  for r in results.values():
    by.setdefault(r.status, []).append(r.name)
  text = "; ".join(f"{k} {len(v)}" + (f" ({', '.join(v)})" if k in ("failed", "preempted")
                                       else "") for k, v in sorted(by.items()))
  code = 1 if by.get("failed") else EX_TEMPFAIL if by.get("preempted") else 0
  return text, code


@errors.boundary("sweep")
def main(argv: list[str]) -> int:
  parser = errors.ArgumentParser(
      prog="scaling-jax sweep",
      description="Run every training of a sweep file (get_sweep()) into OUT/NAME; rerun "
                  "to skip finished runs, resume interrupted ones and retry failed ones.")
  parser.add_argument("sweep", help="python file whose get_sweep() lists the runs")
  parser.add_argument("--out", required=True, help="sweep directory; run NAME goes in OUT/NAME")
  parser.add_argument("--parallel", type=errors.positive_int, default=1,
                      help="trainings at once (processes)")
  parser.add_argument("--rerun-finished", action="store_true",
                      help="run finished runs again too (they resume at their last step)")
  parser.add_argument("--dry-run", action="store_true", help="print the commands only")
  args, overrides = parser.parse_known_args(argv)
  extra = parse_overrides(overrides)  # extra config fields for every run
  runs = load_sweep(args.sweep)
  runs = [dict(r, overrides={**r["overrides"], **extra}) for r in runs]
  sweep_dir = os.path.dirname(os.path.abspath(args.sweep))
  if args.dry_run:
    runs = prepare_runs(runs, sweep_dir)
    todo, done, _ = check_out_dir(runs, absolute(args.out), args.rerun_finished)
    for r in todo:
      print(" ".join(train_command(r, absolute(args.out))))
    print(f"# {len(todo)} to run, {len(done)} finished")
    return 0
  t0 = time.monotonic()
  results = run_sweep(runs, args.out, parallel=args.parallel,
                      rerun_finished=args.rerun_finished, sweep_dir=sweep_dir)
  text, code = summarize(results)
  print(f"[sweep] {args.out}: {text} in {_fmt_s(time.monotonic() - t0)}")
  if code == 1:
    print("[sweep] see OUT/NAME/status.json and OUT/NAME/train.log of the failed runs; "
          "rerun the same command to retry them", file=sys.stderr)
  elif code == EX_TEMPFAIL:
    print("[sweep] interrupted: rerun the same command to resume", file=sys.stderr)
  return code


if __name__ == "__main__":
  sys.exit(main())
