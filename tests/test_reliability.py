"""Fault injection (issue #10): preemption, kill -9, corrupt checkpoints, full disks, NaN,
hostile input. The guarantees tested here are written down in docs/RELIABILITY.md.

Real training subprocesses (`python -m scaling_jax.cli train`) share one uninterrupted
reference run and a persistent compilation cache, so each costs start-up, not compiling.
"""

import errno
import glob
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from scaling_jax import checkpoint, config as config_lib, metrics, preflight, rundir, train
from tests.helpers import tiny_config, write_token_array

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_STEPS, LOG_EVERY, CKPT_EVERY = 60, 5, 20
COMPARED = ("loss", "eval/validation/loss", "grad_norm", "lr", "epoch", "gns/g2",
            "gns/b_simple_tokens")


# --- real training subprocesses -------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  return write_token_array(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
  env = dict(os.environ)  # conftest's 8 simulated CPU devices
  env.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONUNBUFFERED="1")
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  return env


def overrides(corpus) -> list[str]:
  """configs/tiny.py on the array corpus, long enough to be interrupted mid-run."""
  return ["--config.data.name=array", f"--config.data.array_path={corpus}",
          "--config.model.vocab_size=128", "--config.train.progress=False",
          f"--config.train.num_steps={NUM_STEPS}", f"--config.train.log_every={LOG_EVERY}",
          "--config.train.eval_every=20", f"--config.train.ckpt_every={CKPT_EVERY}"]


def start(workdir, corpus, env, *extra) -> subprocess.Popen:
  cmd = [sys.executable, "-m", "scaling_jax.cli", "train", "--config",
         str(REPO / "configs/tiny.py"), "--workdir", str(workdir), *overrides(corpus), *extra]
  with open(f"{workdir}.log", "ab") as log:  # the child keeps its own copy of the descriptor
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


# A subprocess that applies `patch` (a fault) and then runs the real CLI.
DRIVER = """
import sys
{patch}
from scaling_jax import cli
sys.exit(cli.main(sys.argv[1:]))
"""

ENOSPC_AT_40 = """
import errno, os, pathlib
import orbax.checkpoint as ocp
_real_save = ocp.CheckpointManager.save
def _save(self, step, *args, **kwargs):  # writes part of step 40, then the disk is full
  if step == 40:
    tmp = pathlib.Path(self.directory) / "40.orbax-checkpoint-tmp-1700000000" / "state"
    tmp.mkdir(parents=True)
    (tmp / "partial").write_bytes(bytes(1000))
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  return _real_save(self, step, *args, **kwargs)
ocp.CheckpointManager.save = _save
"""

POISON_DRAWS_2_AND_4 = """
from scaling_jax import data as data_lib
_real_iter = data_lib.make_train_iterator
class _Poison:  # out-of-vocabulary ids at draws 2 and 4: the embedding lookup gives NaN
  def __init__(self, inner):
    self.inner, self.n = inner, 0
  def __next__(self):
    batch = next(self.inner)
    self.n += 1
    if self.n in (2, 4):
      batch = batch.copy()
      batch[0, 0] = 10**6
    return batch
  def __getattr__(self, name):
    return getattr(self.inner, name)
data_lib.make_train_iterator = lambda *a, **k: _Poison(_real_iter(*a, **k))
"""


def run_patched(patch: str, workdir, corpus, env, *extra) -> subprocess.CompletedProcess:
  cmd = [sys.executable, "-c", DRIVER.format(patch=patch), "train", "--config",
         str(REPO / "configs/tiny.py"), "--workdir", str(workdir), *overrides(corpus), *extra]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def finish(proc: subprocess.Popen, workdir, timeout=300) -> int:
  """The exit code; the run's output is in WORKDIR.log."""
  return proc.wait(timeout=timeout)


def log_of(workdir) -> str:
  return pathlib.Path(f"{workdir}.log").read_text(errors="replace")


def wait_for_step(proc, workdir, min_step: int, timeout=240) -> int:
  """Polls metrics.jsonl until it shows a step >= min_step; returns that step."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    records = metrics.read_metrics(workdir) if os.path.isdir(workdir) else []
    if records and records[-1]["step"] >= min_step:
      return records[-1]["step"]
    assert proc.poll() is None, f"run ended (rc={proc.returncode}) early:\n{log_of(workdir)}"
    time.sleep(0.02)
  raise TimeoutError(f"no step >= {min_step} in {workdir}")


def raw_steps(workdir) -> list[int]:
  """Steps of metrics.jsonl's lines as written (no dedup): every line must parse."""
  lines = pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()
  return [json.loads(line)["step"] for line in lines]


def assert_same_curve(workdir, reference):
  got, want = metrics.read_metrics(workdir), metrics.read_metrics(reference)
  assert [r["step"] for r in got] == [r["step"] for r in want]
  for key in COMPARED:
    steps, values = metrics.series(got, key)
    ref_steps, ref_values = metrics.series(want, key)
    assert steps == ref_steps and steps, key
    # Tolerance 0: same device count, versions and data order give bitwise-equal numbers.
    assert values == ref_values, (key, values, ref_values)


@pytest.fixture(scope="module")
def reference(corpus, cli_env, tmp_path_factory):
  """One uninterrupted run, shared by every comparison."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  proc = start(workdir, corpus, cli_env)
  assert finish(proc, workdir) == 0, log_of(workdir)
  assert rundir.read_status(str(workdir))["status"] == "finished"
  return str(workdir)


@pytest.mark.slow
@pytest.mark.parametrize("sig, resume", [(signal.SIGTERM, True), (signal.SIGINT, False)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_at_a_random_step_saves_and_resumes_exactly(reference, corpus, cli_env, tmp_path,
                                                           sig, resume):
  """TPU preemption / SLURM timeout (SIGTERM) or Ctrl-C (SIGINT, same handler: the resume is
  only exercised once)."""
  workdir = tmp_path / "run"
  proc = start(workdir, corpus, cli_env)
  wait_for_step(proc, str(workdir), LOG_EVERY)
  time.sleep(random.uniform(0.0, 0.3))  # lands at a random step boundary
  proc.send_signal(sig)
  assert finish(proc, workdir) == 75, log_of(workdir)  # EX_TEMPFAIL: rerun to resume
  status = rundir.read_status(str(workdir))
  stopped = status["step"]
  assert status["status"] == "preempted" and status["signal"] == sig
  assert LOG_EVERY <= stopped < NUM_STEPS
  assert str(stopped) in os.listdir(workdir / "checkpoints"), "no checkpoint at the stop step"
  assert "Traceback" not in log_of(workdir)
  if not resume:
    return
  assert finish(start(workdir, corpus, cli_env), workdir) == 0, log_of(workdir)
  assert rundir.read_status(str(workdir))["status"] == "finished"
  assert raw_steps(workdir) == list(range(LOG_EVERY, NUM_STEPS + 1, LOG_EVERY)), stopped
  assert_same_curve(workdir, reference)


@pytest.mark.slow
def test_kill9_mid_run_resumes_with_each_step_once(reference, corpus, cli_env, tmp_path):
  workdir = tmp_path / "run"
  proc = start(workdir, corpus, cli_env)
  seen = wait_for_step(proc, str(workdir), CKPT_EVERY + LOG_EVERY)  # past the first checkpoint
  proc.kill()
  assert finish(proc, workdir) == -signal.SIGKILL
  assert rundir.read_status(str(workdir))["status"] == "running"  # killed: no chance to say so
  with open(workdir / "metrics.jsonl", "a") as f:  # and a torn line, as if killed mid-write
    f.write('{"step": %d, "loss": 4.1' % (seen + LOG_EVERY))
  assert finish(start(workdir, corpus, cli_env), workdir) == 0, log_of(workdir)
  # Each logged step exactly once, contiguous, every line whole.
  assert raw_steps(workdir) == list(range(LOG_EVERY, NUM_STEPS + 1, LOG_EVERY))
  assert_same_curve(workdir, reference)


@pytest.mark.slow
def test_corrupt_newest_checkpoint_is_skipped_and_the_run_continues(reference, corpus, cli_env,
                                                                    tmp_path):
  """Garbled/truncated files in the newest step plus a half-written save: the older step is
  restored, training redone from there, and the final state matches the reference."""
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  ckpts = workdir / "checkpoints"
  assert sorted(int(s) for s in os.listdir(ckpts)) == [40, 60]  # keep_checkpoints=2
  data_files = sorted(p for p in glob.glob(f"{ckpts}/60/state/**/d/*", recursive=True))
  assert data_files
  for i, path in enumerate(data_files):
    if i % 2:
      os.truncate(path, os.path.getsize(path) // 2)
    else:
      pathlib.Path(path).write_bytes(os.urandom(os.path.getsize(path)))
  partial = ckpts / f"80{checkpoint.TMP_SUFFIX}-1700000000"  # killed mid-save (orbax tmp dir)
  shutil.copytree(ckpts / "40", partial)
  (partial / "state" / "_METADATA").write_text('{"tree_metadata": {')
  assert finish(start(workdir, corpus, cli_env), workdir) == 0, log_of(workdir)
  log = log_of(workdir)
  # (Orbax may print an 'Event loop is closed' traceback from a thread after a failed
  # restore: noise, the run goes on, so it is not asserted on.)
  assert "checkpoint step 60" in log and "unreadable" in log
  assert sorted(os.listdir(ckpts)) == ["40", "60"]  # tmp dir cleaned, step 60 written again
  assert os.listdir(workdir / checkpoint.UNREADABLE_DIR) == ["60"]  # kept for autopsy
  assert raw_steps(workdir) == list(range(LOG_EVERY, NUM_STEPS + 1, LOG_EVERY))
  assert_same_curve(str(workdir), reference)  # steps 45..60 retrained identically


def test_cli_wrong_type_override_is_one_line_exit_2(corpus, cli_env, tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "scaling_jax.cli", "train", "--config", str(REPO / "configs/tiny.py"),
       "--workdir", str(tmp_path / "run"), *overrides(corpus), "--config.model.d_model=abc"],
      cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "d_model=abc" in lines[0], proc.stderr
  assert not (tmp_path / "run").exists()


# --- checkpoints: corruption, half-written saves, full disks (no training) -----------------

def _state(value: float):
  import jax.numpy as jnp
  return {"w_DD": jnp.full((16, 16), value, jnp.float32), "step": jnp.asarray(int(value))}


def _abstract():
  import jax
  import jax.numpy as jnp
  return {"w_DD": jax.ShapeDtypeStruct((16, 16), jnp.float32),
          "step": jax.ShapeDtypeStruct((), jnp.int32)}


def _checkpointer(directory, keep=3):
  train_cfg = config_lib.default_config().train
  train_cfg.keep_checkpoints = keep
  return checkpoint.Checkpointer(str(directory), train_cfg)


def _files(step_dir):
  return sorted(p for p in glob.glob(f"{step_dir}/**", recursive=True) if os.path.isfile(p))


def _garble(path):
  data = pathlib.Path(path).read_bytes()
  pathlib.Path(path).write_bytes(bytes(b ^ 0x5A for b in data))


CORRUPTIONS = {
    "truncate_data": lambda d: [os.truncate(p, os.path.getsize(p) // 2)
                                for p in _files(d) if "/d/" in p],
    "garble_data": lambda d: [_garble(p) for p in _files(d) if "/d/" in p],
    "garble_tree_metadata": lambda d: _garble(f"{d}/state/_METADATA"),
    "garble_data_iterator": lambda d: _garble(f"{d}/extra/metadata"),
    "zero_length_files": lambda d: [open(p, "w").close() for p in _files(d)],
    "empty_step_dir": lambda d: (shutil.rmtree(d), os.makedirs(d)),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_unreadable_newest_step_is_skipped_with_a_warning(tmp_path, corruption, capfd):
  ckpt = _checkpointer(tmp_path / "checkpoints")
  for step in (1, 2):
    ckpt.save(step, _state(step), {"data": {"position": step}})
  ckpt.close()
  CORRUPTIONS[corruption](str(tmp_path / "checkpoints" / "2"))

  ckpt = _checkpointer(tmp_path / "checkpoints")
  state, extra = ckpt.restore_latest(_abstract())
  assert float(state["w_DD"][0, 0]) == 1.0 and extra == {"data": {"position": 1}}
  assert "checkpoint step 2" in capfd.readouterr().err
  assert ckpt.steps() == [1]
  assert os.listdir(tmp_path / checkpoint.UNREADABLE_DIR) == ["2"]
  ckpt.save(2, _state(7.0), {"data": {"position": 7}})  # the resumed run can save step 2 again
  ckpt.close()
  state, extra = _checkpointer(tmp_path / "checkpoints").restore_latest(_abstract())
  assert float(state["w_DD"][0, 0]) == 7.0 and extra["data"]["position"] == 7


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's loop
def test_no_readable_step_is_an_error_not_a_silent_restart(tmp_path):
  ckpt = _checkpointer(tmp_path / "checkpoints")
  ckpt.save(5, _state(5), {"data": {}})
  ckpt.close()
  CORRUPTIONS["garble_data"](str(tmp_path / "checkpoints" / "5"))
  with pytest.raises(checkpoint.CheckpointError, match=r"none of the checkpoints \[5\]"):
    _checkpointer(tmp_path / "checkpoints").restore_latest(_abstract())
  assert os.path.isdir(tmp_path / "checkpoints" / "5")  # nothing deleted


def test_half_written_save_is_ignored_and_cleaned_up(tmp_path):
  ckpt = _checkpointer(tmp_path / "checkpoints")
  ckpt.save(1, _state(1), {"data": {}})
  ckpt.close()
  tmp = tmp_path / "checkpoints" / f"2{checkpoint.TMP_SUFFIX}-1700000000"
  shutil.copytree(tmp_path / "checkpoints" / "1", tmp)
  (tmp / "state" / "_METADATA").write_text("{")
  ckpt = _checkpointer(tmp_path / "checkpoints")
  state, _ = ckpt.restore_latest(_abstract())
  assert float(state["w_DD"][0, 0]) == 1.0 and ckpt.steps() == [1]
  ckpt.wait()
  assert not tmp.exists()


def _fail_save_at(monkeypatch, fail_step: int, error: Exception | None = None):
  """orbax's save writes part of a step into its tmp dir, then hits ENOSPC (or `error`) at
  `fail_step`."""
  import orbax.checkpoint as ocp
  real = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == fail_step:
      tmp = pathlib.Path(self.directory) / f"{step}{checkpoint.TMP_SUFFIX}-1700000000" / "state"
      tmp.mkdir(parents=True)
      (tmp / "partial").write_bytes(b"\0" * 1000)
      raise error or OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)


def test_failed_save_keeps_earlier_steps_and_removes_its_partial_files(tmp_path, monkeypatch):
  _fail_save_at(monkeypatch, 2)
  ckpt = _checkpointer(tmp_path / "checkpoints")
  ckpt.save(1, _state(1), {"data": {}})
  with pytest.raises(checkpoint.CheckpointError, match=r"No space left.*earlier checkpoints \[1\]"):
    ckpt.save(2, _state(2), {"data": {}})
  assert os.listdir(tmp_path / "checkpoints") == ["1"]
  ckpt.close()
  state, _ = _checkpointer(tmp_path / "checkpoints").restore_latest(_abstract())
  assert float(state["w_DD"][0, 0]) == 1.0


def test_a_save_failing_for_another_reason_does_not_blame_the_disk(tmp_path, monkeypatch):
  """Only a storage error gets the disk advice (a NameError inside a save got "Free disk
  space" during the fault suite; issue #27)."""
  _fail_save_at(monkeypatch, 2, NameError("name 'storage' is not defined"))
  ckpt = _checkpointer(tmp_path / "checkpoints")
  ckpt.save(1, _state(1), {"data": {}})
  with pytest.raises(checkpoint.CheckpointError) as got:
    ckpt.save(2, _state(2), {"data": {}})
  assert "NameError" in str(got.value) and "earlier checkpoints [1] are intact" in str(got.value)
  assert "disk" not in str(got.value).lower() and "resume from step 1" in str(got.value)
  assert os.listdir(tmp_path / "checkpoints") == ["1"]
  ckpt.close()


# --- metrics files: torn lines, full disks --------------------------------------------------

def _strict_loads(text: str):
  """json.loads that refuses NaN/Infinity tokens, as strict JSON parsers do."""
  def refuse(token):
    raise ValueError(f"non-standard JSON token {token}")
  return json.loads(text, parse_constant=refuse)


def test_status_after_a_divergence_is_strict_json(tmp_path):
  """The trainer records a diverged step's metrics (NaN loss, inf grad norm, numpy scalars)
  with rundir.write_status: the file parses strictly, non-finite numbers as null."""
  rundir.write_status(tmp_path, "failed", step=7, error="non-finite loss at step 7",
                      metrics={"loss": float("nan"), "grad_norm": np.float32("inf"),
                               "lr": np.float64(1e-3), "bad": [float("-inf"), 1]})
  status = _strict_loads((tmp_path / "status.json").read_text())
  assert status["metrics"] == {"loss": None, "grad_norm": None, "lr": 1e-3, "bad": [None, 1]}
  assert rundir.read_status(tmp_path)["step"] == 7


def test_metrics_lines_are_strict_json(tmp_path):
  """metrics.jsonl keeps non-finite values as strings; read_metrics gives back the floats."""
  w = metrics.MetricsWriter(tmp_path, tensorboard=False)
  w.write({"step": 5, "loss": float("nan"), "mfu": np.float32("inf"), "time_s": 1.5})
  w.close()
  line = (tmp_path / "metrics.jsonl").read_text().strip()
  assert _strict_loads(line) == {"step": 5, "loss": "nan", "mfu": "inf", "time_s": 1.5}
  (rec,) = metrics.read_metrics(str(tmp_path))
  assert np.isnan(rec["loss"]) and rec["mfu"] == float("inf") and rec["time_s"] == 1.5


@pytest.mark.parametrize("content, damage", [
    (b"[1, 2]", "a JSON list"), (b'{"config": {"mod', "not valid JSON"),
    (b'{"config": "caf\xe9"}', "not UTF-8"), (b'{"config": 5}', '"config" is a JSON int'),
    (b'{"config": {}, "versions": [1]}', '"versions" is a JSON list'),
])
def test_a_damaged_config_json_is_named_and_left_as_it_is(tmp_path, content, damage):
  (tmp_path / "config.json").write_bytes(content)
  with pytest.raises(rundir.DamagedRunFile, match=damage) as e:
    preflight.check_versions(str(tmp_path))
  assert str(tmp_path / "config.json") in str(e.value)
  assert (tmp_path / "config.json").read_bytes() == content
  (tmp_path / "status.json").write_bytes(b'{"status": "done"}')
  with pytest.raises(rundir.DamagedRunFile, match="not one of"):
    rundir.read_status(tmp_path)


def test_metrics_readers_tolerate_torn_and_garbled_lines(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_bytes(b'{"step": 5, "loss": 4.0}\n'
                   b'\xff\xfe garbage \x00\n'
                   b'{"step": "x", "loss": 1}\n'
                   b'[1, 2]\n'
                   b'{"step": 10, "loss": NaN, "mfu": "inf"}\n'
                   b'{"step": 5, "eval/validation/loss": 3.9}\n'
                   b'{"step": 15, "lo')
  records = metrics.read_metrics(str(path))
  assert [r["step"] for r in records] == [5, 10]
  assert records[0] == {"step": 5, "loss": 4.0, "eval/validation/loss": 3.9}
  assert np.isnan(records[1]["loss"]) and records[1]["mfu"] == float("inf")
  # The writer never glues a record onto the torn line, and truncate_after rewrites cleanly.
  writer = metrics.MetricsWriter(str(tmp_path), tensorboard=False)
  writer.write({"step": 20, "loss": 3.5})
  assert [r["step"] for r in metrics.read_metrics(str(path))] == [5, 10, 20]
  writer.truncate_after(10)
  lines = path.read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [5, 10]


def test_fitter_table_reads_a_run_with_a_torn_metrics_line(reference, tmp_path):
  from scaling_jax.scaling import runs
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  def table():
    return runs.learning_table(runs.read_runs(str(workdir)), None)
  before = table()
  with open(workdir / "metrics.jsonl", "a") as f:
    f.write('{"step": 65, "loss": 3.')
  after = table()
  assert before and before.keys() == after.keys()
  for key in before:
    np.testing.assert_equal(after[key], before[key], err_msg=key)


class _ENOSPCFile:
  """A file that takes `budget` more bytes, writes part of what does not fit, then fails."""

  def __init__(self, real, budget):
    self.real, self.budget = real, budget

  def write(self, text):
    if len(text) > self.budget:
      self.real.write(text[:self.budget])
      self.real.flush()
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    self.budget -= len(text)
    return self.real.write(text)

  def __getattr__(self, name):
    return getattr(self.real, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.real.close()


def test_metrics_disk_full_mid_line_then_space_freed(tmp_path, monkeypatch):
  writer = metrics.MetricsWriter(str(tmp_path), tensorboard=False)
  writer.write({"step": 5, "loss": 4.0})
  monkeypatch.setattr(metrics, "open", lambda *a, **k: _ENOSPCFile(open(*a, **k), 10),
                      raising=False)
  with pytest.raises(metrics.MetricsWriteError, match="step 10.*No space left"):
    writer.write({"step": 10, "loss": 3.9})
  monkeypatch.undo()
  assert not (tmp_path / "metrics.jsonl").read_text().endswith("\n")  # a torn line on disk
  assert [r["step"] for r in metrics.read_metrics(str(tmp_path))] == [5]
  writer.write({"step": 10, "loss": 3.9})  # space freed: appended on a line of its own
  assert [r["step"] for r in metrics.read_metrics(str(tmp_path))] == [5, 10]


# --- training faults in patched subprocesses ------------------------------------------------

@pytest.mark.slow
def test_disk_full_at_a_checkpoint_fails_clearly_then_resumes(reference, corpus, cli_env, tmp_path):
  workdir = tmp_path / "run"
  proc = run_patched(ENOSPC_AT_40, workdir, corpus, cli_env)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("scaling-jax train: failed: could not write checkpoint step 40"), last
  assert "No space left on device" in last and "[20] are intact" in last
  status = rundir.read_status(str(workdir))
  assert status["status"] == "failed" and status["step"] == 40
  assert "No space left on device" in status["error"]
  assert os.listdir(workdir / "checkpoints") == ["20"]  # the partial step 40 removed
  assert [r["step"] for r in metrics.read_metrics(str(workdir))] == [5, 10, 15, 20, 25, 30, 35, 40]
  # Space freed: rerunning the same command resumes from step 20 and ends as if never failed.
  assert finish(start(workdir, corpus, cli_env), workdir) == 0, log_of(workdir)
  assert raw_steps(workdir) == list(range(LOG_EVERY, NUM_STEPS + 1, LOG_EVERY))
  assert_same_curve(str(workdir), reference)


@pytest.mark.slow
def test_nan_skip_policy_stops_past_max_skipped_steps(corpus, cli_env, tmp_path):
  workdir = tmp_path / "run"
  proc = run_patched(POISON_DRAWS_2_AND_4, workdir, corpus, cli_env,
                     "--config.train.nan_policy=skip", "--config.train.max_skipped_steps=1")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert "diverged: non-finite loss or gradient at step 1 (2 bad step(s)" in proc.stderr
  status = rundir.read_status(str(workdir))
  assert status["status"] == "failed" and status["step"] == 1
  assert set(status["metrics"]) >= {"loss", "grad_norm"}  # the offending step's metrics
  assert not os.listdir(workdir / "checkpoints")  # nothing saved from a diverged state
  assert metrics.read_metrics(str(workdir)) == []


@pytest.fixture(scope="module")
def array_path(tmp_path_factory):
  return write_token_array(tmp_path_factory.mktemp("tokens_inproc"))


def fast_config(array_path, **train_kw):
  c = tiny_config(array_path, **train_kw)
  c.gns.enabled = False
  return c


# --- preflight and hostile input -------------------------------------------------------------

def test_preflight_estimate_bounds_a_real_checkpoint(reference):
  from scaling_jax.config import load_config
  config = load_config(str(REPO / "configs/tiny.py"), overrides(pathlib.Path("unused.npy")))
  actual = sum(os.path.getsize(p) for p in _files(os.path.join(reference, "checkpoints", "60")))
  estimate = preflight.checkpoint_bytes(config)
  assert actual <= estimate <= actual + 2 * preflight.CHECKPOINT_OVERHEAD_BYTES


def test_preflight_refuses_too_little_disk_before_anything_is_written(array_path, tmp_path,
                                                                      monkeypatch):
  workdir = tmp_path / "run"
  total = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(preflight.shutil, "disk_usage",
                      lambda p: total._replace(free=64 * 1024))
  with pytest.raises(preflight.PreflightError, match=r"64.0 KB free but this run needs about"):
    train.train_and_evaluate(fast_config(array_path), str(workdir))
  assert os.listdir(workdir) == []  # no config.json, status or checkpoints


@pytest.mark.parametrize("how", ["parent_is_a_file", "not_writable"])
def test_preflight_unwritable_workdir(tmp_path, monkeypatch, how):
  config = fast_config(tmp_path / "unused.npy")
  if how == "parent_is_a_file":
    (tmp_path / "file").write_text("x")
    workdir, match = tmp_path / "file" / "run", "cannot create --workdir"
  else:
    workdir, match = tmp_path / "run", "is not writable"
    monkeypatch.setattr(preflight, "open", lambda *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, os.strerror(errno.EACCES))), raising=False)
  with pytest.raises(preflight.PreflightError, match=match):
    preflight.check(config, str(workdir))


def test_run_dir_from_another_code_version(array_path, tmp_path, monkeypatch):
  """Policy: another scaling_jax version is refused (override by env var); other libraries
  only warn."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  versions = dict(rundir.code_versions(), scaling_jax="0.0.1")
  (workdir / "config.json").write_text(json.dumps(
      {"config": fast_config(array_path).to_dict(), "facts": {}, "versions": versions}))
  with pytest.raises(rundir.VersionMismatch, match=r"scaling_jax 0\.0\.1, this is "):
    train.train_and_evaluate(fast_config(array_path), str(workdir))
  assert sorted(os.listdir(workdir)) == ["config.json"]  # untouched
  monkeypatch.setenv(rundir.VERSION_OVERRIDE_ENV, "1")
  assert any("resuming anyway" in w for w in preflight.check_versions(str(workdir)))
  monkeypatch.delenv(rundir.VERSION_OVERRIDE_ENV)
  versions = dict(rundir.code_versions(), jax="0.0.1")
  (workdir / "config.json").write_text(json.dumps({"config": {}, "versions": versions}))
  warnings = preflight.check_versions(str(workdir))
  assert len(warnings) == 1 and "jax 0.0.1" in warnings[0]
  (workdir / "config.json").write_text(json.dumps({"config": {}}))
  assert "records no code versions" in preflight.check_versions(str(workdir))[0]


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(os.urandom(4096)), "cannot read"),
    (lambda p: p.write_bytes(b""), "cannot read"),
    (lambda p: np.save(p, np.zeros(0, np.int32)), "non-empty integer array"),
    (lambda p: np.save(p, np.linspace(0, 1, 5000)), "non-empty integer array"),
    (lambda p: np.save(p, np.arange(5000)), "vocab_size >= 5000"),
])
def test_hostile_corpus_files_fail_before_training(tmp_path, make, fragment):
  path = tmp_path / "tokens.npy"
  make(path)
  with pytest.raises(config_lib.ConfigError, match=fragment):
    train.train_and_evaluate(fast_config(path), str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


# --- the fitter: bad points are dropped loudly (sweeps: tests/test_sweep.py) ---------------

def test_fitter_drops_nan_negative_and_duplicate_points_loudly():
  from scaling_jax.scaling import fit
  n = np.array([1e5, 1e6, 1e6, 1e7, 1e8, 3e8, 1e9])
  loss = (8.8e13 / n) ** 0.076
  loss[4], n[5] = np.nan, -3e8
  table = {"N": n, "L": loss}
  with pytest.raises(fit.FitError, match="drop_invalid"):
    fit.fit_law("L_N", table, grid=64)
  res = fit.fit_law("L_N", table, drop_invalid=True, grid=64)
  assert res.n_points == 4  # 7 rows - NaN - negative - one duplicate
  assert any("duplicate" in w for w in res.warnings)
  assert any("dropped" in w and "nan" in w.lower() for w in res.warnings), res.warnings
  assert res.params["alpha_N"] == pytest.approx(0.076, rel=1e-4)
