"""Two jax processes on one CPU machine train like one process (issue #9).

Two processes x 4 simulated CPU devices, joined by jax.distributed (gloo CPU collectives),
train configs/tiny.py on a token array over one global mesh of 8 devices, each feeding its
own half of every global batch. They must reproduce a single process x 8 devices run of
the same config (same global batch), stop together when only one of them gets SIGTERM,
checkpoint, and resume to the same curve.

Tolerance: rtol=1e-5 on losses and gradient norms. Both runs do the same float32 math on
the same 8 shards; only the cross-device reductions (the gradient all-reduce, the mean
loss) are summed by gloo across processes instead of in-process, in another order, which
moves float32 results by a few ulps (measured ~1e-7 relative after 20 steps). A bug (rows
fed twice or dropped, a wrong data position after resume, a missed step) moves the loss
by > 1e-3. The GNS estimates are differences of nearly equal squared norms, so their
rounding error is amplified (measured ~3e-7): rtol=1e-4 there.
"""

from __future__ import annotations

import io
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from launch import local
from scaling_jax import metrics, rundir, train, train_cli
from tests.helpers import write_token_array

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "tiny.py")
PROCESSES, DEVICES_PER_PROCESS = 2, 4
SIGTERM_AT = 12  # process 1 gets SIGTERM when it draws batch 12; both stop at log step 15
RTOL, RTOL_GNS = 1e-5, 1e-4
TIMEOUT_S = 100
EVAL_BATCHES = 100  # 50 and 100 deadlocked the first evaluation before the fix (issue #27)

# `scaling-jax train ARGS` in a child process; with MP_TEST_SIGTERM_AT=k, process 1 sends
# itself SIGTERM when the trainer draws its k-th batch (a preemption of one host only); with
# MP_TEST_SIGKILL_AT=k and MP_TEST_VICTIM=i, process i kills itself (a host that dies).
DRIVER = textwrap.dedent("""
    import os, signal, sys
    from scaling_jax import data as data_lib, train_cli
    at = int(os.environ.get("MP_TEST_SIGTERM_AT", "0"))
    sig = signal.SIGTERM
    if os.environ.get("MP_TEST_SIGKILL_AT"):
      at, sig = int(os.environ["MP_TEST_SIGKILL_AT"]), signal.SIGKILL
    if at and os.environ["SCALING_JAX_PROCESS_ID"] == os.environ.get("MP_TEST_VICTIM", "1"):
      real = data_lib.make_train_iterator

      class SignalAt:
        def __init__(self, inner):
          self.inner, self.n = inner, 0
        def __next__(self):
          self.n += 1
          if self.n == at:
            os.kill(os.getpid(), sig)
          return next(self.inner)
        def __getattr__(self, name):
          return getattr(self.inner, name)

      data_lib.make_train_iterator = lambda *a, **k: SignalAt(real(*a, **k))
    sys.exit(train_cli.main(sys.argv[1:]))
""")


def _overrides(array_path) -> list[str]:
  # EVAL_BATCHES: a large eval set; dispatched as independent programs, as many eval batches
  # hung both processes at their first evaluation (issue #27).
  return ["--config.data.name=array", f"--config.data.array_path={array_path}",
          "--config.model.vocab_size=128", "--config.train.progress=False",
          f"--config.data.eval_batches={EVAL_BATCHES}"]


def _cache_env(root: pathlib.Path) -> dict[str, str]:
  """A persistent compilation cache in `root`, shared by the launches of one module."""
  return {"JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}


def _launch(workdir, array_path, root: pathlib.Path, name: str,
            sigterm_at: int = 0) -> tuple[list[int], str]:
  """Runs `scaling-jax train` as PROCESSES jax processes; (exit codes, their output).

  Output goes to root/name/p<i>.log. The launches share a persistent compilation cache in
  `root`: the resumed run reuses the first run's executables (same programs, same
  numbers), which saves time on 2 cores.
  """
  port = local.free_port()
  logs = root / name
  logs.mkdir()
  cache = _cache_env(root)
  argv = [sys.executable, "-c", DRIVER, "--config", CONFIG, "--workdir", str(workdir),
          *_overrides(array_path)]
  pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
  procs, files = [], []
  for i in range(PROCESSES):
    env = {**os.environ, **local.process_env(i, PROCESSES, port, DEVICES_PER_PROCESS),
           **cache, "MP_TEST_SIGTERM_AT": str(sigterm_at), "PYTHONPATH": pythonpath}
    f = open(logs / f"p{i}.log", "w")
    files.append(f)
    procs.append(subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT,
                                  cwd=REPO, start_new_session=True))
  deadline = time.monotonic() + TIMEOUT_S
  try:
    codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
  except subprocess.TimeoutExpired:
    codes = [None] * PROCESSES
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    for f in files:
      f.close()
  text = "\n".join(f"--- p{i}\n" + (logs / f"p{i}.log").read_text()[-3000:]
                   for i in range(PROCESSES))
  return codes, text


@pytest.fixture(scope="module")
def array_path(tmp_path_factory):
  return write_token_array(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def reference(array_path, tmp_path_factory):
  """One process x 8 devices (this pytest process), the same config file and overrides."""
  workdir = str(tmp_path_factory.mktemp("single"))
  config = train_cli.load_config(CONFIG, _overrides(array_path))
  assert train.train_and_evaluate(config, workdir)["status"] == "finished"
  return metrics.read_metrics(workdir)


@pytest.fixture(scope="module")
def two_process_run(array_path, tmp_path_factory):
  """Two processes x 4 devices, preempted (SIGTERM to process 1 only), then resumed."""
  root = tmp_path_factory.mktemp("multi")
  workdir = root / "run"
  codes, text = _launch(workdir, array_path, root, "preempted", sigterm_at=SIGTERM_AT)
  first = {"codes": codes, "text": text, "status": rundir.read_status(str(workdir)),
           "metrics": metrics.read_metrics(str(workdir)),
           "checkpoints": sorted(os.listdir(workdir / "checkpoints"), key=int)}
  codes, text = _launch(workdir, array_path, root, "resumed")
  resumed = {"codes": codes, "text": text, "status": rundir.read_status(str(workdir)),
             "metrics": metrics.read_metrics(str(workdir))}
  return str(workdir), first, resumed


def _assert_curves_match(got_records, want_records, steps):
  for key, rtol in (("loss", RTOL), ("grad_norm", RTOL), ("lr", RTOL),
                    ("eval/validation/loss", RTOL), ("gns/b_simple_tokens", RTOL_GNS)):
    got_steps, got = metrics.series(got_records, key)
    want_steps, want = metrics.series(want_records, key)
    want_steps, want = zip(*[(s, w) for s, w in zip(want_steps, want) if s in steps])
    assert got_steps == list(want_steps), key
    np.testing.assert_allclose(got, want, rtol=rtol, err_msg=key)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_match_one_process_then_stop_together(two_process_run, reference):
  workdir, first, _ = two_process_run
  assert first["codes"] == [75, 75], first["text"]  # both exit "preempted", resumable
  assert first["status"]["status"] == "preempted" and first["status"]["step"] == 15
  assert first["status"]["signal"] == signal.SIGTERM  # though process 0 never got it
  assert first["checkpoints"] == ["10", "15"]
  assert [r["step"] for r in first["metrics"]] == [5, 10, 15]
  _assert_curves_match(first["metrics"], reference, steps={5, 10, 15})
  devices = rundir.read_config(workdir)["devices"]
  assert devices["count"] == 8 and devices["process_count"] == 2


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_resume_to_the_same_curve(two_process_run, reference):
  workdir, first, resumed = two_process_run
  assert resumed["codes"] == [0, 0], resumed["text"]
  assert resumed["status"]["status"] == "finished" and resumed["status"]["step"] == 20
  assert [r["step"] for r in resumed["metrics"]] == [5, 10, 15, 20]
  assert resumed["metrics"][:3] == first["metrics"]  # the resumed run kept steps <= 15
  _assert_curves_match(resumed["metrics"], reference, steps={5, 10, 15, 20})
  assert resumed["metrics"][-1]["tokens"] == reference[-1]["tokens"] == 20 * 16 * 32
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int)[-1] == "20"


KILL_AT = 13  # the victim dies drawing batch 13: after the checkpoint at step 10
HEARTBEAT_S = 10  # JAX's heartbeat timeout for the dead-host test (its default is 100 s)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.parametrize("victim", [1, 0], ids=["worker_dies", "coordinator_dies"])
def test_a_dead_host_is_recorded_as_failed_with_the_step_to_resume_from(
    victim, array_path, tmp_path, monkeypatch):
  """kill -9 of one of two processes (issue #27): the survivor must not hang, and status.json
  must say `failed`, that a peer died, and from which checkpoint a rerun resumes. Before,
  it said `running` (JAX aborts the survivor with SIGABRT, nothing written) or blamed the
  disk; launch/local.py killed the survivor 5 s after the death, with nothing recorded."""
  workdir = tmp_path / "run"
  for k, v in {**_cache_env(tmp_path), "MP_TEST_SIGKILL_AT": str(KILL_AT),
               "MP_TEST_VICTIM": str(victim),
               "SCALING_JAX_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_S),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                           os.environ.get("PYTHONPATH")]))
               }.items():
    monkeypatch.setenv(k, v)
  command = [sys.executable, "-c", DRIVER, "--config", CONFIG, "--workdir", str(workdir),
             *_overrides(array_path)]
  out = io.StringIO()
  start = time.monotonic()
  rc = local.run(command, PROCESSES, cpu_devices=DEVICES_PER_PROCESS, timeout_s=TIMEOUT_S,
                 out=out)
  elapsed = time.monotonic() - start
  text = out.getvalue()
  assert rc == -signal.SIGKILL, text[-3000:]  # the first to fail: the victim
  assert elapsed < TIMEOUT_S - 10, text[-3000:]  # the survivor ended; no launcher timeout
  status = rundir.read_status(str(workdir))
  assert status["status"] == "failed" and status["peer_lost"] is True, (status, text[-3000:])
  assert status["step"] == 10  # the checkpoint a rerun resumes from
  assert "a peer process of this job died" in status["error"]
  assert "resume from checkpoint step 10" in status["error"]
  assert "disk" not in status["error"].lower()
  assert f"process {victim} was killed by signal 9 (SIGKILL)" in status["error"] or (
      "Connection closed by peer" in status["error"])  # the survivor's own record
  assert [r["step"] for r in metrics.read_metrics(str(workdir))][:2] == [5, 10]
