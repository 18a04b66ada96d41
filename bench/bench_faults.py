"""Fault injection anyone can rerun: SIGTERM and kill -9 at random moments of real training runs
(issue #27), checked against one uninterrupted reference run.

  python bench/bench_faults.py --suite sigterm|kill9|dead-host|all
                               [--workdir-kind local|gs|both]
                               [--trials N] [--seed S] [--quick] [--write] [--keep]

Every trial starts a fresh `python -m scaling_jax.cli train` subprocess of configs/tiny.py on
a small token array (tests/helpers.write_token_array; 8 simulated CPU devices, as the tests),
RUN_OVERRIDES: 40 steps, a record every 2 steps, an eval every 10, a checkpoint every 5 (so
checkpoints land on logged and on unlogged steps, and a preemption can cut a logging window).
It injects one fault at a moment drawn from a seeded RNG, reruns the same command until the
run finishes (as a user or a scheduler would) and compares the result with the reference:

- `sigterm` (local workdir unless --workdir-kind says otherwise): half the trials at a random
  step (after logged step t, t drawn uniformly, plus 0-100 ms), half within 0-250 ms after a
  checkpoint save began. Expected (docs/RELIABILITY.md): exit code 75, status.json
  `preempted` with the signal, a checkpoint at the stop step; the resumed run then finishes
  with every logged value equal to the reference's (`==`, tolerance 0) except the timing keys
  (TIMING_KEYS). A trial counts as an exact resume when all of that holds.
- `kill9` (--workdir-kind local, gs or both; gs:// through the local GCS emulator of
  tests/gcs_emulator.py): SIGKILL, half at random steps, half within 0-250 ms after a save
  began. Expected: the resumed run finishes (status `finished`), metrics has every logged
  step exactly once, contiguous, every line whole, and the curve equals the reference's.

How "a save began" is seen from outside: the bench polls the run's checkpoint directory for
the chosen step S. Locally Orbax creates `checkpoints/S.orbax-checkpoint-tmp-*` as the
first thing a save writes and renames it to `S` when the save is complete; the directory is
listed every POLL_S (5 ms), so the bench sees the save start at most ~5 ms late, plus the
time from the trainer's save call to that directory: measured 2.5-7 ms (2 busy cores) from
step S's metrics record, written just before the call, when S is a logged step. On gs://
Orbax writes straight into `checkpoints/S/` and marks it complete with a `commit_success.txt`
object; the bench lists the emulator's bucket every GS_POLL_S (20 ms) through its JSON API
(uncached; a listing is a local HTTP round trip of a few ms), so the first object under `S/`
is seen up to ~25 ms late. The reference run measures the save windows the same way
(printed: how long a save lasts, hence how many 0-250 ms delays land inside one). For each
trial the table says whether the signal landed inside a save: a step half written (a tmp
directory, or `S/` without its commit file) seen just before the signal was sent (on gs://
just after it: listing a bucket takes too long), or left by a kill -9.

- `dead-host` (local): two processes x 4 devices through launch/local.py; one SIGKILLs
  itself at a step, at the start of an evaluation, of a save, of a restore, and the
  coordinator at a step (DEAD_HOST_FAULTS). Expected: the job ends by itself, status.json
  `failed` with `peer_lost` and the checkpoint step to resume from (written by the survivor,
  or by the launcher where JAX aborted it), never the disk advice; a rerun finishes with the
  uninterrupted two-process run's curve.

The suites are functions in SUITES (name -> function(bench, store) -> rows). A new fault is
a new function: run_suite with its own signal and expectations, or its own loop over
run_trial (start, trigger, signal, resume) and check_against_reference (the verdicts); the
table and the results file take any rows with the keys run_trial and finish_row set.

`--write` merges the tables' data into bench/faults_results.json (one entry per suite and
workdir kind). Trials share a persistent JAX compilation cache, so each run costs start-up
(~10 s on 2 cores), not compiling.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable
from unittest import mock

# The training subprocesses see 8 simulated CPU devices (as tests/conftest.py sets up); set
# before anything imports jax, so that the environment line describes them too.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import REPO, environment  # noqa: E402

from launch import local  # noqa: E402
from scaling_jax import checkpoint, metrics, rundir  # noqa: E402
from scaling_jax import metric_keys as keys  # noqa: E402
from tests import gcs_emulator  # noqa: E402  (sets gcsfs's env before gcsfs is imported)
from tests.helpers import write_token_array  # noqa: E402

RESULTS = REPO / "bench" / "faults_results.json"
NUM_STEPS, LOG_EVERY, EVAL_EVERY, CKPT_EVERY = 40, 2, 10, 5
RUN_OVERRIDES = {"data.name": "array", "model.vocab_size": 128, "train.progress": False,
                 "train.num_steps": NUM_STEPS, "train.log_every": LOG_EVERY,
                 "train.eval_every": EVAL_EVERY, "train.ckpt_every": CKPT_EVERY}
# Keys of the machine and the moment, not of the run: timings, and a gs:// run's storage
# retries (counted per process, so they restart at a resume; a local run has none).
TIMING_KEYS = frozenset({keys.TIME_S, keys.TOKENS_PER_S, keys.FLOPS_PER_S, keys.MFU,
                         keys.STORAGE_RETRIES, keys.STORAGE_SLOW_WRITES})
EXIT_PREEMPTED = 75
POLL_S, GS_POLL_S = 0.005, 0.02  # how often the checkpoint directory is listed
SAVE_WINDOW_S = 0.25  # "within 250 ms after a checkpoint save begins" (issue #27)
STEP_JITTER_S = 0.1  # a random-step fault lands 0-100 ms after its logged step is seen
RUN_TIMEOUT_S = 600.0  # one training subprocess, start to exit
MAX_RESUMES = 3  # reruns of the same command until the run finishes
COMMIT_FILE = "commit_success.txt"  # Orbax's mark of a complete step on gs://


# --- where runs live: a local directory or a bucket of the GCS emulator -----------------

class LocalStore:
  """Run directories under a local folder; listed and read directly (no caches)."""

  kind = "local"

  def __init__(self, root: pathlib.Path):
    self.root = root
    root.mkdir(parents=True, exist_ok=True)

  def workdir(self, name: str) -> str:
    return str(self.root / name)

  def names(self, directory: str) -> list[str]:
    """Entries of `directory` ([] if it does not exist)."""
    try:
      return os.listdir(directory)
    except FileNotFoundError:
      return []

  def read(self, path: str) -> bytes | None:
    try:
      return pathlib.Path(path).read_bytes()
    except FileNotFoundError:
      return None

  def step_state(self, workdir: str, step: int) -> str:
    """'partial' (Orbax's tmp dir of `step` exists), 'complete' (renamed) or 'none'."""
    names = self.names(os.path.join(workdir, rundir.CHECKPOINT_DIR))
    if any(n.startswith(f"{step}{checkpoint.TMP_SUFFIX}") for n in names):
      return "partial"
    return "complete" if str(step) in names else "none"

  def checkpoint_steps(self, workdir: str) -> tuple[list[int], list[int]]:
    """(complete steps, steps with a half-written save) in the run's checkpoints/."""
    names = self.names(os.path.join(workdir, rundir.CHECKPOINT_DIR))
    done = sorted(int(n) for n in names if n.isdigit())
    partial = sorted(int(n.split(checkpoint.TMP_SUFFIX)[0]) for n in names
                     if checkpoint.TMP_SUFFIX in n and n.split(checkpoint.TMP_SUFFIX)[0].isdigit())
    return done, partial

  def refresh(self) -> None:
    """Nothing is cached locally."""


class GcsStore:
  """Run directories in a bucket of the local GCS emulator. Polling goes through the
  emulator's JSON API (a fresh listing each time: gcsfs caches listings); the verdicts read
  through scaling_jax (rundir, metrics) after `refresh` drops gcsfs's listing cache."""

  kind = "gs"

  def __init__(self, url: str, bucket: str, prefix: str):
    self.url, self.bucket, self.prefix = url, bucket, prefix

  def workdir(self, name: str) -> str:
    return f"gs://{self.bucket}/{self.prefix}/{name}"

  def _key(self, path: str) -> str:
    return path.split(f"gs://{self.bucket}/", 1)[1].rstrip("/")

  def names(self, directory: str) -> list[str]:
    """Objects and "sub-directories" directly under `directory`."""
    prefix = self._key(directory) + "/"
    query = urllib.parse.urlencode({"prefix": prefix, "delimiter": "/"})
    with urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.bucket}/o?{query}") as r:
      listing = json.load(r)
    names = [p[len(prefix):].rstrip("/") for p in listing.get("prefixes", [])]
    return names + [o["name"][len(prefix):] for o in listing.get("items", [])]

  def read(self, path: str) -> bytes | None:
    quoted = urllib.parse.quote(self._key(path), safe="/")
    try:
      with urllib.request.urlopen(f"{self.url}/{self.bucket}/{quoted}") as r:
        return r.read()
    except urllib.error.HTTPError as e:
      if e.code == 404:
        return None
      raise

  def step_state(self, workdir: str, step: int) -> str:
    """'partial' (objects under checkpoints/S/ but no commit file), 'complete' or 'none'."""
    step_dir = f"{workdir}/{rundir.CHECKPOINT_DIR}/{step}"
    names = self.names(step_dir)
    if not names:
      return "none"
    return "complete" if COMMIT_FILE in names else "partial"

  def checkpoint_steps(self, workdir: str) -> tuple[list[int], list[int]]:
    steps = [int(n) for n in self.names(f"{workdir}/{rundir.CHECKPOINT_DIR}") if n.isdigit()]
    done, partial = [], []
    for step in sorted(steps):
      (done if self.step_state(workdir, step) == "complete" else partial).append(step)
    return done, partial

  def refresh(self) -> None:
    import fsspec
    fsspec.filesystem("gcs", finalize_on_close=True).invalidate_cache()  # epath's instance


Store = LocalStore | GcsStore


def metric_lines(store: Store, workdir: str) -> list[bytes]:
  """metrics.jsonl's lines as written, then a gs:// run's segments in order (no dedup)."""
  files = [metrics.METRICS_FILE]
  if isinstance(store, GcsStore):
    files += sorted(n for n in store.names(workdir)
                    if re.fullmatch(re.escape(metrics.METRICS_FILE) + r"\.\d{10}", n))
  lines: list[bytes] = []
  for name in files:
    data = store.read(f"{workdir}/{name}")
    lines += [line for line in (data or b"").split(b"\n") if line.strip()]
  return lines


def last_logged_step(store: Store, workdir: str) -> int:
  """The step of the newest whole metrics line (0 if none)."""
  for line in reversed(metric_lines(store, workdir)):
    try:
      return int(json.loads(line)[keys.STEP])
    except (ValueError, KeyError, TypeError):
      continue
  return 0


# --- training subprocesses --------------------------------------------------------------

@dataclasses.dataclass
class Bench:
  """What the trials share: a scratch root, the corpus, the variables added to the
  environment (compilation cache), the seed, the trial count, the stores and the reference."""

  root: pathlib.Path
  corpus: pathlib.Path
  env: dict[str, str]
  seed: int
  trials: int
  stores: dict[str, Store]
  reference: dict[str, Any] | None = None

  def rng(self, suite: str, kind: str) -> random.Random:
    """The RNG of one suite on one workdir kind: its faults do not depend on what else runs."""
    return random.Random(f"{self.seed}/{suite}/{kind}")

  def command(self, workdir: str) -> list[str]:
    overrides = {**RUN_OVERRIDES, "data.array_path": str(self.corpus)}
    return [sys.executable, "-m", "scaling_jax.cli", "train", "--config",
            str(REPO / "configs" / "tiny.py"), "--workdir", workdir,
            *(f"--config.{k}={v}" for k, v in overrides.items())]

  def start(self, workdir: str, log_name: str) -> subprocess.Popen:
    """A training subprocess of `workdir` in this process's environment (the emulator's
    variables, when a gs:// store is open) plus `env`; its output goes to ROOT/logs/LOG_NAME."""
    log_path = self.root / "logs" / log_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **self.env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
      return subprocess.Popen(self.command(workdir), cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT)

  def log_tail(self, log_name: str, lines: int = 8) -> str:
    text = (self.root / "logs" / log_name).read_text(errors="replace")
    text = text.replace(str(self.root), "<scratch>")  # no machine paths in the results
    return " | ".join(text.strip().splitlines()[-lines:])


def make_bench(root: pathlib.Path, seed: int, trials: int) -> Bench:
  env = {"JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1", "PYTHONUNBUFFERED": "1"}
  (root / "tokens").mkdir(parents=True, exist_ok=True)
  corpus = write_token_array(root / "tokens")
  return Bench(root=root, corpus=corpus, env=env, seed=seed, trials=trials, stores={})


def wait_until(proc: subprocess.Popen, probe: Callable[[], Any], poll_s: float,
               timeout_s: float = RUN_TIMEOUT_S) -> Any:
  """Polls `probe` until it returns something truthy (returned); None if `proc` exits first."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    got = probe()
    if got:
      return got
    if proc.poll() is not None:
      return None
    time.sleep(poll_s)
  raise TimeoutError(f"no trigger within {timeout_s:.0f} s")


def watch_saves(proc: subprocess.Popen, store: Store, workdir: str) -> dict[int, list]:
  """Until `proc` exits: for each checkpoint step, [first seen in progress, first seen
  complete] (monotonic seconds; None when that state was never seen)."""
  seen: dict[int, list] = {}
  poll = POLL_S if isinstance(store, LocalStore) else GS_POLL_S
  while proc.poll() is None:
    now = time.monotonic()
    for step in range(CKPT_EVERY, NUM_STEPS + 1, CKPT_EVERY):
      if step in seen and seen[step][1] is not None:
        continue
      state = store.step_state(workdir, step)
      if state == "partial":
        seen.setdefault(step, [now, None])
      elif state == "complete":
        seen.setdefault(step, [None, None])[1] = now
      if state != "complete":
        break  # later steps have not started
    time.sleep(poll)
  return seen


def run_reference(bench: Bench, store: Store) -> dict[str, Any]:
  """One uninterrupted run (also fills the compilation cache); its records, raw steps and
  the save windows seen from outside."""
  workdir = store.workdir("reference")
  t0 = time.monotonic()
  proc = bench.start(workdir, f"reference-{store.kind}.log")
  saves = watch_saves(proc, store, workdir)
  if proc.wait() != 0:
    raise RuntimeError(f"the reference run failed: {bench.log_tail(f'reference-{store.kind}.log')}")
  store.refresh()
  records = metrics.read_metrics(workdir)
  durations = [(end - begin) * 1e3 for begin, end in saves.values()
               if begin is not None and end is not None]
  return {"workdir": workdir, "records": records, "raw_steps": [r[keys.STEP] for r in records],
          "wall_s": time.monotonic() - t0, "save_ms": durations,
          "saves_seen": len(saves), "saves_caught_in_progress": len(durations)}


# --- one trial: start, wait for a trigger, signal, resume, compare ---------------------

@dataclasses.dataclass
class Fault:
  """A signal sent `delay_s` after a trigger: logged step `target` seen (mode 'step') or
  the save of checkpoint step `target` seen to begin (mode 'save')."""

  sig: int
  mode: str
  target: int
  delay_s: float

  def describe(self) -> str:
    what = f"step {self.target}" if self.mode == "step" else f"save {self.target} began"
    return f"{what} +{self.delay_s * 1e3:.0f} ms"


def draw_faults(bench: Bench, rng: random.Random, sig: int) -> list[Fault]:
  """bench.trials faults, alternating a random step and a random moment 0-250 ms into a
  save (checkpoint steps before the last: a fault in the final save ends a finished run)."""
  log_steps = list(range(LOG_EVERY, NUM_STEPS - 3 * LOG_EVERY + 1, LOG_EVERY))
  ckpt_steps = list(range(CKPT_EVERY, NUM_STEPS, CKPT_EVERY))
  faults = []
  for i in range(bench.trials):
    if i % 2 == 0:
      faults.append(Fault(sig, "step", rng.choice(log_steps),
                          rng.uniform(0.0, STEP_JITTER_S)))
    else:
      faults.append(Fault(sig, "save", rng.choice(ckpt_steps),
                          rng.uniform(0.0, SAVE_WINDOW_S)))
  return faults


def run_trial(bench: Bench, store: Store, name: str, fault: Fault) -> dict[str, Any]:
  """Starts a fresh run, injects `fault`, then reruns the same command until it finishes
  (at most MAX_RESUMES times). The row: what happened, before the comparison."""
  workdir = store.workdir(name)
  log_name = f"{name}.log"
  poll = POLL_S if isinstance(store, LocalStore) else GS_POLL_S

  def probe() -> Any:  # truthy once the trigger is seen; a save's state as it was seen
    if fault.mode == "step":
      return last_logged_step(store, workdir) >= fault.target
    state = store.step_state(workdir, fault.target)
    return state if state != "none" else None

  row: dict[str, Any] = {"trial": name, "workdir": store.kind, "signal": fault.sig,
                         "fault": fault.describe()}
  proc = bench.start(workdir, log_name)
  try:
    seen = wait_until(proc, probe, poll)
    if seen is None:
      row["problems"] = [f"the run ended (exit {proc.returncode}) before the trigger: "
                         f"{bench.log_tail(log_name)}"]
      return row
    seen_at = time.monotonic()
    if fault.mode == "save":
      row["save_seen_as"] = seen  # 'complete': the save was over when the bench saw it
    time.sleep(max(0.0, fault.delay_s - (time.monotonic() - seen_at)))
    # What the run looked like at the signal: locally just before it (microseconds); on
    # gs:// just after it, as those listings take tens of ms (more while a save loads the
    # emulator) and would push the signal past its moment.
    local = isinstance(store, LocalStore)
    if local:
      row.update(observe(store, workdir))
    row["signal_after_ms"] = round((time.monotonic() - seen_at) * 1e3, 1)
    if proc.poll() is None:
      proc.send_signal(fault.sig)
    else:
      row["problems"] = [f"the run ended (exit {proc.returncode}) before the signal"]
    if not local:
      row.update(observe(store, workdir))
    row["exit"] = proc.wait(timeout=RUN_TIMEOUT_S)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  status = read_status(store, workdir)
  row["status_after_signal"] = status.get("status")
  row["stopped_at"] = status.get("step")
  done, partial = store.checkpoint_steps(workdir)
  row["checkpoints_after_signal"], row["partial_saves_left"] = done, partial
  row["resume_exits"] = resume(bench, store, workdir, log_name)
  return row


def observe(store: Store, workdir: str) -> dict[str, Any]:
  """Whether a checkpoint save is in progress (a half-written step), and the last logged step."""
  return {"in_save_at_signal": bool(store.checkpoint_steps(workdir)[1]),
          "logged_at_signal": last_logged_step(store, workdir)}


def resume(bench: Bench, store: Store, workdir: str, log_name: str) -> list[int]:
  """Reruns the same command until it exits 0 (at most MAX_RESUMES times); the exit codes."""
  exits = []
  for _ in range(MAX_RESUMES):
    proc = bench.start(workdir, log_name)
    try:
      exits.append(proc.wait(timeout=RUN_TIMEOUT_S))
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    if exits[-1] == 0:
      break
  return exits


def read_status(store: Store, workdir: str) -> dict[str, Any]:
  """status.json through scaling_jax.rundir (an unreadable one is a finding, not a crash)."""
  store.refresh()
  try:
    return rundir.read_status(workdir)
  except Exception as e:  # noqa: BLE001
    return {"status": f"unreadable status.json ({rundir.describe_error(e, limit=200)})"}


def check_against_reference(bench: Bench, store: Store, workdir: str) -> dict[str, Any]:
  """The verdicts on a finished trial: status, each logged step exactly once (every line
  whole, contiguous), and every logged value equal to the reference's except TIMING_KEYS."""
  ref = bench.reference
  assert ref is not None
  out: dict[str, Any] = {"final_status": read_status(store, workdir).get("status")}
  raw = []
  for line in metric_lines(store, workdir):
    try:
      raw.append(json.loads(line)[keys.STEP])
    except (ValueError, KeyError, TypeError):
      raw.append(f"torn line {line[:40]!r}")
  out["steps_once"] = raw == ref["raw_steps"]
  if not out["steps_once"]:
    out["steps_detail"] = f"logged steps {raw}, reference {ref['raw_steps']}"
  store.refresh()
  out["mismatch"] = compare_records(metrics.read_metrics(workdir), ref["records"])
  out["exact"] = out["mismatch"] is None
  return out


def compare_records(got: list[dict], want: list[dict]) -> str | None:
  """None if the records have the same steps and keys and equal values (==, timing keys
  aside), else the first difference."""
  got_steps, want_steps = [r[keys.STEP] for r in got], [r[keys.STEP] for r in want]
  if got_steps != want_steps:
    return f"steps {got_steps} != reference {want_steps}"
  for g, w in zip(got, want):
    if set(g) - TIMING_KEYS != set(w) - TIMING_KEYS:
      return f"step {g[keys.STEP]}: keys differ ({sorted((set(g) ^ set(w)) - TIMING_KEYS)})"
    for key in sorted(set(w) - TIMING_KEYS):
      same = g[key] == w[key] or (g[key] != g[key] and w[key] != w[key])  # NaN == NaN here
      if not same:
        return f"step {g[keys.STEP]} {key}: {g[key]!r} != reference {w[key]!r}"
  return None


# --- suites -------------------------------------------------------------------------------

def run_suite(bench: Bench, store: Store, suite: str, sig: int,
              expect: Callable[[dict[str, Any]], list[str]]) -> list[dict[str, Any]]:
  """bench.trials trials of `sig` at moments from draw_faults, each checked by `expect` (the
  problems specific to this fault, from the row of run_trial) and against the reference."""
  rows = []
  for i, fault in enumerate(draw_faults(bench, bench.rng(suite, store.kind), sig)):
    row = run_trial(bench, store, f"{suite}-{store.kind}-{i + 1:02d}", fault)
    if "exit" in row:
      row.setdefault("problems", []).extend(expect(row))
      row.update(check_against_reference(bench, store, store.workdir(row["trial"])))
    row["ok"] = finish_row(row)
    rows.append(row)
    print(one_line(row), flush=True)
  return rows


def expect_preempted(row: dict[str, Any]) -> list[str]:
  """A SIGTERM'd run exits 75 with status `preempted` and a checkpoint at its stop step."""
  problems = []
  if row["exit"] != EXIT_PREEMPTED:
    problems.append(f"exit {row['exit']}, expected {EXIT_PREEMPTED}")
  if row["status_after_signal"] != "preempted":
    problems.append(f"status {row['status_after_signal']!r} after the signal")
  elif row["stopped_at"] not in row["checkpoints_after_signal"]:
    problems.append(f"no checkpoint at the stop step {row['stopped_at']}")
  return problems


def sigterm_suite(bench: Bench, store: Store) -> list[dict[str, Any]]:
  """SIGTERM (preemption) at random steps and just after saves begin: each run must stop
  with exit 75, status preempted and a checkpoint at its stop step, and resume exactly."""
  return run_suite(bench, store, "sigterm", signal.SIGTERM, expect_preempted)


def kill9_suite(bench: Bench, store: Store) -> list[dict[str, Any]]:
  """SIGKILL at random steps and just after saves begin: the resumed run must finish with
  each logged step exactly once and the reference's curve."""
  return run_suite(bench, store, "kill9", signal.SIGKILL, lambda row: (
      [] if row["exit"] == -signal.SIGKILL else [f"exit {row['exit']}, expected -9"]))


def finish_row(row: dict[str, Any]) -> bool:
  """Adds the common verdict problems (resume exits, final status, steps once, values equal)
  and `complete`; True if the trial has no problem at all."""
  problems = row.setdefault("problems", [])
  if "final_status" not in row:
    return False
  if row["resume_exits"] != [0]:  # "rerun the same command": once must be enough
    problems.append(f"resume exits {row['resume_exits']}")
  if row["final_status"] != "finished":
    problems.append(f"final status {row['final_status']!r}")
  if not row["steps_once"]:
    problems.append(row["steps_detail"])
  if row["mismatch"]:
    problems.append(row["mismatch"])
  row["complete"] = row["final_status"] == "finished" and row["steps_once"]
  return not problems


# --- dead-host: one of two processes dies ----------------------------------------------------

PROCESSES, DEVICES_PER_PROCESS = 2, 4
# `scaling-jax train ARGS` as one process of a job; process FAULT_VICTIM SIGKILLs itself at
# FAULT_MOMENT's FAULT_AT-th occurrence (writing the time to FAULT_MARK first): `step` the
# batch drawn, `eval` an evaluation begun, `save` a checkpoint save begun, `restore` the
# restore of its checkpoints begun. The peer is then inside the same phase's collectives.
DEAD_HOST_DRIVER = """
import os, signal, sys, time
from scaling_jax import checkpoint, train, train_cli
from scaling_jax import data as data_lib
moment, at = os.environ.get("FAULT_MOMENT", ""), int(os.environ.get("FAULT_AT", "0"))
count = [0]

def hit():
  count[0] += 1
  if count[0] == at:
    with open(os.environ["FAULT_MARK"], "w") as f:
      f.write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL)

def before(owner, name):
  real = getattr(owner, name)
  def wrapped(*args, **kwargs):
    hit()
    return real(*args, **kwargs)
  setattr(owner, name, wrapped)

if moment and os.environ["SCALING_JAX_PROCESS_ID"] == os.environ["FAULT_VICTIM"]:
  if moment == "step":
    real_iterator = data_lib.make_train_iterator
    class Batches:
      def __init__(self, inner):
        self.inner = inner
      def __next__(self):
        hit()
        return next(self.inner)
      def __getattr__(self, name):
        return getattr(self.inner, name)
    data_lib.make_train_iterator = lambda *a, **k: Batches(real_iterator(*a, **k))
  else:
    owner, name = {"eval": (train, "mean_eval_loss"),
                   "save": (checkpoint.Checkpointer, "save"),
                   "restore": (checkpoint.Checkpointer, "restore_latest")}[moment]
    before(owner, name)
sys.exit(train_cli.main(sys.argv[1:]))
"""
# (moment, FAULT_AT, victim process): a dead worker in four phases, and a dead coordinator.
DEAD_HOST_FAULTS = (("step", 13, 1), ("eval", 1, 1), ("save", 2, 1), ("restore", 1, 1),
                    ("step", 13, 0))


def launch_job(bench: Bench, workdir: str, log_name: str,
               fault: tuple[str, int, int] | None = None) -> tuple[int, float, float | None]:
  """One two-process job through launch/local.py (as a user would run it); (exit code, wall
  seconds, seconds from the victim's death to the job's end, None without a fault)."""
  (bench.root / "logs").mkdir(parents=True, exist_ok=True)
  mark = bench.root / "logs" / f"{log_name}.death"
  mark.unlink(missing_ok=True)
  env = {**bench.env, "FAULT_MARK": str(mark), "PYTHONPATH": os.pathsep.join(
      filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
  if fault:
    env.update(FAULT_MOMENT=fault[0], FAULT_AT=str(fault[1]), FAULT_VICTIM=str(fault[2]))
  command = [sys.executable, "-c", DEAD_HOST_DRIVER, *bench.command(workdir)[4:]]  # no "train"
  t0 = time.time()
  with mock.patch.dict(os.environ, env), open(bench.root / "logs" / log_name, "a") as out:
    rc = local.run(command, PROCESSES, cpu_devices=DEVICES_PER_PROCESS,
                   timeout_s=RUN_TIMEOUT_S, out=out)  # the processes get os.environ
  end = time.time()
  died = float(mark.read_text()) if mark.exists() else None
  return rc, end - t0, (None if died is None else end - died)


def dead_host_suite(bench: Bench, store: Store) -> list[dict[str, Any]]:
  """kill -9 of one of two processes at five moments (a step, an evaluation, a save, a
  restore; the coordinator at a step). Expected: the job ends by itself (the survivor is not
  left hanging), status.json says `failed` with `peer_lost` and the checkpoint step a rerun
  resumes from, never the disk advice; rerunning the same command finishes the run with the
  uninterrupted two-process run's curve (==, timing keys aside)."""
  if not isinstance(store, LocalStore):
    raise SystemExit("dead-host runs on a local workdir (launch/local.py, one machine)")
  ref_dir = store.workdir("dead-host-reference")
  rc, wall, _ = launch_job(bench, ref_dir, "dead-host-reference.log")
  if rc != 0:
    raise RuntimeError(f"the two-process reference failed: "
                       f"{bench.log_tail('dead-host-reference.log')}")
  reference = metrics.read_metrics(ref_dir)
  print(f"two-process reference: {wall:.0f} s", flush=True)
  rows = []
  for i, (moment, at, victim) in enumerate(DEAD_HOST_FAULTS[:bench.trials or None]):
    name = f"dead-host-{store.kind}-{i + 1:02d}"
    workdir, log_name = store.workdir(name), f"{name}.log"
    who = "coordinator (process 0)" if victim == 0 else f"process {victim}"
    row: dict[str, Any] = {"trial": name, "fault": f"{who} killed at {moment} {at}",
                           "problems": []}
    if moment == "restore":  # a checkpoint to restore first: a job cut at step 13
      launch_job(bench, workdir, log_name, ("step", 13, 1))
    rc, _, after_death = launch_job(bench, workdir, log_name, (moment, at, victim))
    status = rundir.read_status(workdir)
    ckpts = checkpoint.finished_steps(workdir)
    row.update({"exit": rc, "job_end_after_death_s": None if after_death is None
                else round(after_death, 1), "status_after_signal": status.get("status"),
                "stopped_at": status.get("step"), "checkpoints_after_signal": ckpts,
                "error": status.get("error", "").replace(str(bench.root), "<scratch>"),
                "recorded_by": ("launcher" if "the launcher" in status.get("error", "") or
                                "was killed by signal" in status.get("error", "")
                                else "survivor")})
    if after_death is None:
      row["problems"].append(f"the victim never died (exit {rc})")
    if status.get("status") != "failed" or not status.get("peer_lost"):
      row["problems"].append(f"status {status}")
    elif status.get("step") != (ckpts[-1] if ckpts else None):
      row["problems"].append(f"status step {status.get('step')}, checkpoints {ckpts}")
    if "disk" in row["error"].lower():
      row["problems"].append("the disk is blamed")
    resume_rc, _, _ = launch_job(bench, workdir, log_name)
    row["resume_exits"] = [resume_rc]
    row["final_status"] = rundir.read_status(workdir).get("status")
    got = metrics.read_metrics(workdir)
    raw = [json.loads(line)[keys.STEP] for line in metric_lines(store, workdir)]
    row["steps_once"] = raw == [r[keys.STEP] for r in reference]
    row["steps_detail"] = f"logged steps {raw}"
    row["mismatch"] = compare_records(got, reference)
    row["exact"] = row["mismatch"] is None
    row["ok"] = finish_row(row)
    rows.append(row)
    print(f"{name}: {row['fault']}: exit {rc}, job ended {row['job_end_after_death_s']} s "
          f"after the death, status {status.get('status')}@{status.get('step')} by "
          f"{row['recorded_by']}: {'ok' if row['ok'] else 'FAIL: ' + '; '.join(row['problems'])}",
          flush=True)
  return rows


def dead_host_table(rows: list[dict[str, Any]], wall_s: float) -> list[str]:
  n, ok = len(rows), sum(r["ok"] for r in rows)
  lines = [f"### dead-host, local workdir: {ok}/{n} as expected", "",
           f"{n} trials in {wall_s:.0f} s (two processes x {DEVICES_PER_PROCESS} CPU devices "
           "through launch/local.py; JAX's heartbeat timeout at its default unless "
           "SCALING_JAX_HEARTBEAT_TIMEOUT_S is set).", "",
           "| trial | fault | job ended after the death | exit | status (step) | recorded by "
           "| checkpoints | resume exit | exact | |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    lines.append(f"| {r['trial'].rsplit('-', 1)[1]} | {r['fault']} | "
                 f"{r.get('job_end_after_death_s')} s | {r.get('exit')} | "
                 f"{r.get('status_after_signal')} ({r.get('stopped_at')}) | "
                 f"{r.get('recorded_by')} | {r.get('checkpoints_after_signal')} | "
                 f"{r.get('resume_exits')} | {'yes' if r.get('exact') else 'NO'} | "
                 f"{'ok' if r['ok'] else 'FAIL'} |")
  lines += failure_lines(rows)
  lines += ["", "Status messages:"] + [f"- {r['trial'].rsplit('-', 1)[1]}: {r['error']}"
                                       for r in rows]
  return lines


SUITES: dict[str, Callable[[Bench, Store], list[dict[str, Any]]]] = {
    "sigterm": sigterm_suite,
    "kill9": kill9_suite,
    "dead-host": dead_host_suite,
}
DEFAULT_KINDS = {"sigterm": ("local",), "kill9": ("local", "gs"), "dead-host": ("local",)}


# --- output -------------------------------------------------------------------------------

def one_line(row: dict[str, Any]) -> str:
  verdict = "ok" if row["ok"] else "FAIL: " + "; ".join(row["problems"])
  return (f"{row['trial']}: {row['fault']} (sent +{row.get('signal_after_ms', '?')} ms, "
          f"in save: {row.get('in_save_at_signal')}, partial left: "
          f"{row.get('partial_saves_left')}) exit {row.get('exit')} "
          f"{row.get('status_after_signal')}@{row.get('stopped_at')}, resumes "
          f"{row.get('resume_exits')}: {verdict}")


def table(suite: str, kind: str, rows: list[dict[str, Any]], wall_s: float) -> list[str]:
  """A markdown section: the counts, then one line per trial, then the failures in full."""
  n = len(rows)
  exact = sum(bool(r.get("exact")) for r in rows)
  complete = sum(bool(r.get("complete")) for r in rows)
  ok = sum(r["ok"] for r in rows)
  in_save = sum(bool(r.get("in_save_at_signal")) or bool(r.get("partial_saves_left"))
                for r in rows)
  lines = [f"### {suite}, {kind} workdir: {ok}/{n} as expected", "",
           f"{n} trials in {wall_s:.0f} s; exact curve {exact}/{n}, complete (finished, each "
           f"step once) {complete}/{n}; the signal landed inside a checkpoint save in "
           f"{in_save}/{n}.", "",
           "| trial | fault | sent after | in save | last logged | exit | status (step) | "
           "checkpoints left (partial) | resume exits | steps once | exact | |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    partial = r.get("partial_saves_left") or []
    inside = bool(r.get("in_save_at_signal")) or bool(partial)
    stopped = "" if r.get("stopped_at") is None else f" ({r['stopped_at']})"
    lines.append(
        f"| {r['trial'].rsplit('-', 1)[1]} | {r['fault']} | {r.get('signal_after_ms', '-')} ms "
        f"| {'yes' if inside else 'no'} | {r.get('logged_at_signal', '-')} | "
        f"{r.get('exit', '-')} | {r.get('status_after_signal')}{stopped} | "
        f"{r.get('checkpoints_after_signal')} ({partial or '-'}) | {r.get('resume_exits')} | "
        f"{'yes' if r.get('steps_once') else 'NO'} | {'yes' if r.get('exact') else 'NO'} | "
        f"{'ok' if r['ok'] else 'FAIL'} |")
  lines += failure_lines(rows)
  return lines


def failure_lines(rows: list[dict[str, Any]]) -> list[str]:
  """The end of a suite's section: its failed trials with their problems, or "none"."""
  failures = [r for r in rows if not r["ok"]]
  return (["", "Failures: " + ("none." if not failures else "")]
          + [f"- {r['trial']}: {'; '.join(r['problems'])}" for r in failures])


def reference_line(ref: dict[str, Any], kind: str) -> str:
  ms = ref["save_ms"]
  window = (f"median {statistics.median(ms):.0f} ms, {min(ms):.0f}-{max(ms):.0f} ms"
            if ms else "too short to see")
  return (f"Reference ({kind} workdir): {ref['wall_s']:.0f} s uninterrupted; a checkpoint save "
          f"seen in progress for {window} ({ref['saves_caught_in_progress']} of "
          f"{ref['saves_seen']} saves caught in progress).")


def write_results(entries: dict[str, Any], command: str) -> None:
  """Merges this invocation's suites into RESULTS (one entry per suite and workdir kind)."""
  old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
  suites = {**old.get("suites", {}), **entries}
  RESULTS.write_text(json.dumps({"environment": environment(), "run": {
      "config": "configs/tiny.py", "overrides": RUN_OVERRIDES, "devices": "8 simulated CPU"},
      "suites": suites, "last_command": command}, indent=1) + "\n")
  print(f"wrote {RESULTS.relative_to(REPO)}")


# --- main -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--suite", default="all", choices=[*SUITES, "all"])
  parser.add_argument("--workdir-kind", choices=["local", "gs", "both"], default=None,
                      help="where the runs live (default: sigterm local, kill9 both)")
  parser.add_argument("--trials", type=int, default=None,
                      help="trials per suite and workdir kind (default: sigterm 20, kill9 10)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--quick", action="store_true", help="3 trials each: a smoke test")
  parser.add_argument("--write", action="store_true", help=f"merge into {RESULTS.name}")
  parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
  args = parser.parse_args(argv)
  command = "python bench/bench_faults.py " + " ".join(argv if argv is not None else sys.argv[1:])
  suites = list(SUITES) if args.suite == "all" else [args.suite]
  plan = []
  for suite in suites:
    kinds = (DEFAULT_KINDS.get(suite, ("local",)) if args.workdir_kind is None else
             ("local", "gs") if args.workdir_kind == "both" else (args.workdir_kind,))
    trials = (3 if args.quick else args.trials
              or {"sigterm": 20, "dead-host": len(DEAD_HOST_FAULTS)}.get(suite, 10))
    plan += [(suite, kind, trials) for kind in kinds]

  root = pathlib.Path(tempfile.mkdtemp(prefix="bench_faults_"))
  print(f"scratch: {root}\n{environment()}", flush=True)
  bench = make_bench(root, args.seed, 0)
  entries, lines = {}, [f"Command: `{command}`", "", environment(), ""]
  lines += [f"Run: configs/tiny.py, {NUM_STEPS} steps, a record every {LOG_EVERY}, an eval every "
            f"{EVAL_EVERY}, a checkpoint every {CKPT_EVERY} (keep 2, synchronous saves), 8 "
            "simulated CPU devices; seed " + str(args.seed) + ".", ""]
  try:
    with contextlib.ExitStack() as stack:
      for kind in sorted({kind for _, kind, _ in plan}):
        bench.stores[kind] = make_store(stack, root, kind)
      bench.reference = run_reference(bench, LocalStore(root / "local"))
      lines += [reference_line(bench.reference, "local")]
      if "gs" in bench.stores:  # an uninterrupted gs:// run: its saves, and the same curve
        gs_ref = run_reference(bench, bench.stores["gs"])
        same = compare_records(gs_ref["records"], bench.reference["records"])
        lines += [reference_line(gs_ref, "gs") + " Its curve "
                  + ("equals the local one." if same is None else f"DIFFERS: {same}.")]
      lines += ["", code_version(), ""]
      print("\n".join(lines), flush=True)
      for suite, kind, trials in plan:
        bench.trials = trials
        t0 = time.monotonic()
        rows = SUITES[suite](bench, bench.stores[kind])
        wall_s = time.monotonic() - t0
        section = (dead_host_table(rows, wall_s) if suite == "dead-host"
                   else table(suite, kind, rows, wall_s))
        print("\n".join(section) + "\n", flush=True)
        lines += section + [""]
        entries[f"{suite}/{kind}"] = {
            "command": command, "code": code_version(), "seed": args.seed, "trials": len(rows),
            "wall_s": round(wall_s),
            "ok": sum(r["ok"] for r in rows), "exact": sum(bool(r.get("exact")) for r in rows),
            "complete": sum(bool(r.get("complete")) for r in rows),
            "rows": [{k: v for k, v in r.items() if k != "workdir"} for r in rows]}
  finally:
    if not args.keep:
      shutil.rmtree(root, ignore_errors=True)
  print("\n".join(lines))
  if args.write:
    write_results(entries, command)
  return 0 if all(e["ok"] == e["trials"] for e in entries.values()) else 1


def code_version() -> str:
  """The commit under test, and whether the trainer's code differs from it (others may be
  editing the tree a benchmark runs from)."""
  def git(*cmd: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True,
                          check=True).stdout.strip()
  try:
    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "scaling_jax", "configs", "tests")
  except (OSError, subprocess.CalledProcessError):
    return "Code: not a git checkout."
  return (f"Code: commit {commit}" + (", with uncommitted changes to scaling_jax/, configs/ "
                                      "or tests/." if dirty else ", clean."))


def make_store(stack: contextlib.ExitStack, root: pathlib.Path, kind: str) -> Store:
  """A local folder, or a fresh prefix in an emulator bucket (started here, stopped at exit;
  this process and the runs it starts talk to it)."""
  if kind == "local":
    return LocalStore(root / "local")
  url = stack.enter_context(gcs_emulator.running(root / "emulator"))
  stack.enter_context(gcs_emulator.environment(url))
  return GcsStore(url, gcs_emulator.BUCKET, f"bench-faults-{uuid.uuid4().hex[:8]}")


if __name__ == "__main__":
  sys.exit(main())
