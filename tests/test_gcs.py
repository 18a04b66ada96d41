"""gs:// run, sweep and data directories end to end, against a local GCS emulator (started
and stopped here): train, preempt (SIGTERM), resume, sweep and fit write only to the bucket;
the tokenized data is built once, published to the bucket and fetched by the next host into
its local mirror; without a backend a gs:// workdir or data directory is refused in one
line, never made a local `gs:` folder.

The emulator and the environment that points gcsfs and tensorstore at it: tests/gcs_emulator.py.
A bucket that fails requests (503 from tests/fault_proxy.py in front of the emulator): the
writes and reads still succeed, and scaling_jax.storage counts the libraries' retries and
says so (issue #27).
"""

import asyncio
import contextlib
import importlib.util
import io
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest

from tests import fault_proxy, gcs_emulator

BUCKET = gcs_emulator.BUCKET
for _module in gcs_emulator.MODULES:
  if importlib.util.find_spec(_module) is None:
    pytest.skip(f"{_module} is not installed (pip install -e '.[test]')", allow_module_level=True)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  """A running emulator with one bucket; this process and its children talk to it."""
  with gcs_emulator.running(tmp_path_factory.mktemp("emulator")) as url, \
      gcs_emulator.environment(url):
    yield f"gs://{BUCKET}"


@pytest.fixture
def clean(tmp_path, monkeypatch):
  """An empty cwd and HOME: nothing of a run may land there."""
  home = tmp_path / "clean" / "home"
  home.mkdir(parents=True)
  monkeypatch.chdir(home.parent)
  monkeypatch.setenv("HOME", str(home))
  return home.parent


RUN_FILES = {"config.json", "metrics.jsonl", "status.json", "train.log", "sweep.json"}


def local_run_files(root: pathlib.Path) -> list[str]:
  """Run files (or a `gs:` folder) under a local directory."""
  return [str(p) for p in root.rglob("*")
          if p.name in RUN_FILES or p.name.startswith("gs:") or "checkpoints" in p.parts
          or p.name.startswith("events.out")]


# --- primitives ---------------------------------------------------------------------------

def test_rundir_and_metrics_on_a_bucket(gcs, clean, monkeypatch):
  from scaling_jax import metrics, rundir
  run = f"{gcs}/prims/a/run1"
  rundir.write_json_atomic(f"{run}/config.json", {"config": {"x": 1}})
  rundir.write_status(run, "running", step=3)
  assert rundir.read_config(run) == {"config": {"x": 1}}
  assert rundir.read_status(run) == {"status": "running", "step": 3}
  assert rundir.read_status(f"{gcs}/prims/none")["status"] == "missing"
  assert rundir.find_runs(f"{gcs}/prims") == [run]
  assert rundir.listdir(f"{gcs}/prims/a") == ["run1"]

  # Metrics: segments of SEGMENT_RECORDS lines, merged on read, consolidated on resume.
  monkeypatch.setattr(metrics, "SEGMENT_RECORDS", 4)
  w = metrics.MetricsWriter(run, tensorboard=True)
  for step in range(1, 11):
    w.write({"step": step, "loss": 10.0 - step})
  w.close()
  assert len(metrics.segment_paths(run)) == 3  # 4 + 4 + 2 records
  assert [r["step"] for r in metrics.read_metrics(run)] == list(range(1, 11))
  assert metrics.last_step(run) == 10
  assert rundir.glob(f"{run}/events", "events.out.tfevents.*")  # TensorBoard reached the bucket
  w = metrics.MetricsWriter(run, tensorboard=False)
  w.truncate_after(6)  # a resume from step 6
  assert metrics.segment_paths(run) == []
  assert [r["step"] for r in metrics.read_metrics(f"{run}/metrics.jsonl")] == list(range(1, 7))
  w.write({"step": 7, "loss": -1.0})
  assert [r["loss"] for r in metrics.read_metrics(run)][-2:] == [4.0, -1.0]
  assert local_run_files(clean) == []


# --- a gs:// workdir without its backend is refused, never made local ----------------------

def test_remote_workdir_without_backend_is_refused(clean, monkeypatch, capsys, repo_root):
  from scaling_jax import cli, rundir
  monkeypatch.setitem(rundir.REMOTE_BACKENDS, "gs", ("no_such_gcs_backend", "pip install X"))
  argv = ["train", "--config", str(repo_root / "configs/tiny.py"), "--workdir", "gs://b/x"]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "no_such_gcs_backend" in err and "pip install" in err
  assert cli.main(argv[:-1] + ["hdfs://b/x"]) == 2
  assert "not supported" in capsys.readouterr().err
  sweep_file = clean / "home" / "grid.py"
  sweep_file.write_text("def get_sweep():\n  return [('a', 'configs/tiny.py', {})]\n")
  assert cli.main(["sweep", str(sweep_file), "--out", "gs://b/sweep"]) == 2
  assert "no_such_gcs_backend" in capsys.readouterr().err
  assert sorted(p.name for p in clean.rglob("*")) == ["grid.py", "home"]


def test_collect_copies_finished_runs_from_a_bucket(gcs, tmp_path):
  from launch import sweep_fanout
  from scaling_jax import rundir
  from scaling_jax.sweep import SweepError
  src = f"{gcs}/collect/sweep"
  for name, status in (("a", "finished"), ("b", "running")):
    rundir.write_json_atomic(f"{src}/{name}/config.json", {"config": {"name": name}})
    rundir.write_status(f"{src}/{name}", status)
    rundir.write_text(f"{src}/{name}/metrics.jsonl", '{"step": 1, "loss": 2.5}\n')
    rundir.write_bytes(f"{src}/{name}/checkpoints/1/state", b"\0" * 1000)
  dest = tmp_path / "study"
  out = io.StringIO()
  assert sweep_fanout.collect([src], str(dest), "copy", out=out) == [str(dest / "a")]
  assert out.getvalue().splitlines() == [str(dest / "a"), f"# skipped {src}/b: running"]
  assert sorted(p.name for p in (dest / "a").iterdir()) == ["config.json", "metrics.jsonl",
                                                           "status.json"]
  assert (dest / "a" / "metrics.jsonl").read_bytes() == rundir.read_bytes(f"{src}/a/metrics.jsonl")
  with_ckpt = sweep_fanout.collect([src], str(tmp_path / "full"), "copy", with_checkpoints=True,
                                   out=io.StringIO())
  assert (pathlib.Path(with_ckpt[0]) / "checkpoints/1/state").read_bytes() == b"\0" * 1000
  with pytest.raises(SweepError, match="cannot link gs://.*use --mode copy"):
    sweep_fanout.collect([src], str(tmp_path / "links"), "link", out=io.StringIO())
  assert not (tmp_path / "links").exists()


# --- a gs:// data directory: built once, published, fetched by the next host -------------

TEXT_FILES = ["textwrap.py", "shlex.py", "heapq.py", "bisect.py", "glob.py", "abc.py"]


def write_corpus(directory: pathlib.Path) -> pathlib.Path:
  """A few real text files (standard-library sources) for the text_files builder."""
  from scaling_jax.data import corpus
  directory.mkdir(parents=True, exist_ok=True)
  for name in TEXT_FILES:
    (directory / f"{name}.txt").write_text((corpus.stdlib_root() / name).read_text())
  return directory


def _data_config(corpus_dir, data_dir):
  from scaling_jax.config import default_config
  c = default_config()
  c.model.update(vocab_size=512, n_ctx=32)
  c.data.update(name="text_files", paths=str(corpus_dir), data_dir=data_dir)
  return c


def test_remote_data_directory_is_built_once_and_fetched(gcs, clean, tmp_path, monkeypatch,
                                                         capsys, caplog):
  import numpy as np
  from scaling_jax import rundir
  from scaling_jax.data import cli as data_cli, sources, tokenizer
  remote = f"{gcs}/mirrored/data"  # each test its own prefix: the emulator is per module
  c = _data_config(write_corpus(tmp_path / "corpus"), remote)
  monkeypatch.setenv("SCALING_JAX_DATA_MIRROR", str(tmp_path / "host1"))
  # Nothing remote yet: `scaling-jax data` builds in host1's mirror, then publishes.
  assert data_cli.main(["--name", "text_files", "--paths", c.data.paths, "--vocab-size", "512",
                        "--data-dir", remote, "--quiet"]) == 0
  assert str(tmp_path / "host1") in capsys.readouterr().out  # the tokenizer's local path
  built = sources.prepare(c)
  entry = built.token_paths["train"].parent
  assert entry.is_relative_to(tmp_path / "host1")
  remote_entry = f"{remote}/{entry.relative_to(sources.data_root(c)).as_posix()}"
  assert rundir.listdir(remote_entry) == ["spm.model", "train.json", "train.npy",
                                          "validation.json", "validation.npy"]

  # Another host, with an empty mirror and no way to build a tokenizer: it fetches them.
  monkeypatch.setenv("SCALING_JAX_DATA_MIRROR", str(tmp_path / "host2"))
  def no_build(*args, **kwargs):
    raise AssertionError("built again instead of fetched")
  monkeypatch.setattr(tokenizer, "train", no_build)
  monkeypatch.setattr(tokenizer, "tokenize_to_file", no_build)
  fetched = sources.prepare(c)
  assert fetched.info == built.info
  for name, local in built.token_paths.items():
    assert fetched.token_paths[name].is_relative_to(tmp_path / "host2")
    assert np.array_equal(np.load(fetched.token_paths[name]), np.load(local))
  assert (fetched.token_paths["train"].parent / "spm.model").read_bytes() == \
      rundir.read_bytes(f"{remote_entry}/spm.model")
  assert local_run_files(clean) == [] and not any(clean.rglob("*.npy"))

  # The bucket's entry now holds another tokenizer: host1's arrays are neither fetched over
  # nor published beside it.
  rundir.write_bytes(f"{remote_entry}/spm.model", b"another tokenizer")
  rundir.remove(f"{remote_entry}/train.npy")
  monkeypatch.setenv("SCALING_JAX_DATA_MIRROR", str(tmp_path / "host1"))
  sources._CACHE.clear()
  with caplog.at_level("WARNING"):
    assert sources.prepare(c).token_paths == built.token_paths
  assert "holds another tokenizer" in caplog.text
  assert not rundir.exists(f"{remote_entry}/train.npy")


def test_remote_data_directory_without_backend_is_refused(monkeypatch):
  from scaling_jax import rundir
  from scaling_jax.data import sources
  monkeypatch.setitem(rundir.REMOTE_BACKENDS, "gs", ("no_such_gcs_backend", "pip install X"))
  with pytest.raises(rundir.RemoteBackendError, match="no_such_gcs_backend.*pip install"):
    sources.data_root(_data_config("corpus", "gs://b/data"))


# --- train, preempt, resume, sweep and fit on gs:// ----------------------------------------

def _sweep_file(path, corpus_dir, data_dir):
  common = {"data.name": "text_files", "data.paths": str(corpus_dir),
            "data.data_dir": data_dir, "model.vocab_size": 512,
            "model.n_ctx": 32, "model.d_ff": 64, "model.n_heads": 2, "train.batch_size": 16,
            "train.num_steps": 24, "train.log_every": 2, "train.eval_every": 12,
            "train.ckpt_every": 4, "optim.warmup_steps": 2, "data.eval_batches": 1}
  runs = [(f"d{d}", "configs/tiny.py", {**common, "model.d_model": d}) for d in (16, 24, 32)]
  path.write_text(textwrap.dedent(f"""
      def get_sweep():
        return {runs!r}
      """))
  return str(path)


@pytest.mark.slow
def test_train_preempt_resume_sweep_and_fit_on_gs(gcs, clean, tmp_path_factory, capsys,
                                                  monkeypatch):
  from scaling_jax import metric_keys as keys, metrics, rundir, sweep
  data = tmp_path_factory.mktemp("data")
  # The data directory is on the bucket too; each process works in a local mirror of it.
  monkeypatch.setenv("SCALING_JAX_DATA_MIRROR", str(data / "mirror"))
  sweep_file = _sweep_file(data / "grid.py", write_corpus(data / "corpus"), f"{gcs}/study/data")
  out = f"{gcs}/study/sweep"
  first = f"{out}/d16"
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  proc = subprocess.Popen([sys.executable, "-m", "scaling_jax.cli", "sweep", sweep_file,
                           "--out", out], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 240
  while metrics.last_step(first) < 8:
    assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)  # a preemption: forwarded to the training, which saves
  text = proc.communicate(timeout=180)[0].decode()
  assert proc.returncode == sweep.EX_TEMPFAIL, text[-3000:]
  status = rundir.read_status(first)
  assert status["status"] == "preempted", (status, text[-2000:])
  stopped = status["step"]
  assert 8 <= stopped < 24
  assert str(stopped) in rundir.listdir(f"{first}/checkpoints")  # Orbax wrote to the bucket
  kept = [r for r in metrics.read_metrics(first) if r["step"] <= stopped]

  res = sweep.run_sweep(sweep.load_sweep(sweep_file), out, stream=None,
                        sweep_dir=str(data))  # resume: the first run from its checkpoint
  assert {k: r.status for k, r in res.items()} == {n: "finished" for n in ("d16", "d24", "d32")}
  assert rundir.find_runs(out) == [f"{out}/{n}" for n in ("d16", "d24", "d32")]
  recs = metrics.read_metrics(first)
  assert [r["step"] for r in recs] == list(range(2, 25, 2))
  assert [r for r in recs if r["step"] <= stopped] == kept  # not redone after the resume
  assert recs[-1]["loss"] < recs[0]["loss"]
  assert {r[keys.STORAGE_RETRIES] for r in recs} == {0}  # a gs:// run counts; no faults here
  log = rundir.read_text(f"{first}/train.log")
  assert log.count("\n### ") == 2 and "run finished" in log  # both attempts' output
  assert rundir.glob(f"{first}/events", "events.out.tfevents.*")
  assert rundir.read_json(f"{out}/sweep.json")["runs"][0]["name"] == "d16"
  tokens = [d for d, _, files in rundir.walk(f"{gcs}/study/data/tokens") if "spm.model" in files]
  assert len(tokens) == 1 and {"train.npy", "validation.npy"} <= set(rundir.listdir(tokens[0]))

  assert local_run_files(clean) == []

  from scaling_jax.scaling import cli as fit_cli
  fit_out = f"{gcs}/study/fit"
  rc = fit_cli.main([out, "--out", fit_out, "--law", "L_N", "--bootstrap", "0",
                     "--b-crit", "none", "--no-plots"])
  assert rc == 0, capsys.readouterr().err[-2000:]
  fit = rundir.read_json(f"{fit_out}/fit_report.json")
  assert fit and fit["n_points"] > 0
  assert local_run_files(clean) == []


# --- a bucket that fails requests: the retries are counted and said (issue #27) ------------

@pytest.fixture
def faulty(gcs, monkeypatch):
  """`faulty(fail, seed, process=False)`: a fault proxy (tests/fault_proxy.py; in a thread, or
  a subprocess) in front of the module's emulator, which gcsfs and tensorstore reach through
  it for the rest of the test. gcsfs's retry loop stays its own; only its backoff sleeps
  (1-2 s, then 2-3 s, ...) are cut 50x, so that a test takes seconds."""
  import gcsfs.retry
  from scaling_jax import storage
  upstream = os.environ["STORAGE_EMULATOR_HOST"]
  real_sleep = asyncio.sleep
  monkeypatch.setattr(gcsfs.retry, "asyncio",
                      types.SimpleNamespace(sleep=lambda s: real_sleep(s / 50)))
  with contextlib.ExitStack() as stack:
    def start(fail: float, seed: int = 0, process: bool = False):
      if process:
        proxy = stack.enter_context(fault_proxy.spawn(upstream, fail, seed))
      else:
        proxy = stack.enter_context(fault_proxy.FaultProxy(upstream, fail, seed))
      stack.enter_context(gcs_emulator.environment(proxy.url))
      return proxy
    yield start
    storage.finish(report=False)


def _write_run(run: str, monkeypatch) -> None:
  """A run directory's writes: config.json and 10 metrics records in 3 segments."""
  from scaling_jax import metrics, rundir
  monkeypatch.setattr(metrics, "SEGMENT_RECORDS", 4)
  rundir.write_json_atomic(f"{run}/config.json", {"config": {"x": 1}})
  w = metrics.MetricsWriter(run, tensorboard=False)
  for step in range(1, 11):
    w.write({"step": step, "loss": 10.0 - step})
  w.close()


def _check_run(run: str) -> None:
  """What `_write_run` wrote reads back whole."""
  from scaling_jax import metrics, rundir
  assert rundir.read_config(run) == {"config": {"x": 1}}
  assert [(r["step"], r["loss"]) for r in metrics.read_metrics(run)] == [
      (s, 10.0 - s) for s in range(1, 11)]
  assert len(metrics.segment_paths(run)) == 3


def test_fault_schedule_is_deterministic():
  import random
  counts = fault_proxy._Counts(fail=0.25, seed=7)
  got = [counts.next_fails("gcsfs" if i % 2 else "tensorstore") for i in range(400)]
  rng = random.Random(7)
  assert got == [rng.random() < 0.25 for _ in range(400)]
  stats = counts.snapshot()
  assert stats["requests"] == 400 and stats["faults"] == sum(got)
  assert 60 < stats["faults"] < 140  # ~100
  assert stats["by_client"]["gcsfs"]["faults"] == sum(got[1::2])
  assert fault_proxy.client_of("python-gcsfs/2026.10.1 cache_type/adaptive:d") == "gcsfs"
  assert fault_proxy.client_of("tensorstore/0.1.86 libcurl/8.20.0") == "tensorstore"


def test_bucket_faults_are_retried_counted_and_warned(gcs, faulty, monkeypatch, caplog):
  import logging
  from scaling_jax import metric_keys as keys, storage
  proxy = faulty(1 / 3, seed=0)
  err = io.StringIO()
  mon = storage.watch(f"{gcs}/faults/run", warn_after=3, warn_every_s=3600, stream=err)
  run = f"{gcs}/faults/run"
  _write_run(run, monkeypatch)
  # Writes are one request at a time: each injected 503 is one gcsfs retry.
  wrote = proxy.stats()["by_client"]["gcsfs"]
  assert wrote["faults"] >= 5 and mon.gcsfs_retries == wrote["faults"], (wrote, mon.describe())
  _check_run(run)  # every write landed whole, every read came back
  # Reads ask for an object and its listing at once and may drop the slower one: a 503
  # answered to a dropped request is not retried.
  read = proxy.stats()["by_client"]["gcsfs"]
  assert read["faults"] > wrote["faults"] and wrote["faults"] <= mon.gcsfs_retries <= read["faults"]
  assert mon.tensorstore_retries() == 0 and mon.gcsfs_gave_up == 0
  assert storage.metrics() == {keys.STORAGE_RETRIES: mon.gcsfs_retries,
                               keys.STORAGE_SLOW_WRITES: 0}
  # One line once past 3 retries, none per retry after it (the next is due in an hour).
  lines = err.getvalue().splitlines()
  assert len(lines) == 1 and mon.warnings == 1, lines
  assert lines[0].startswith("WARNING: storage is slowing this run: 3 storage request(s) "
                             "retried (gcsfs 3, tensorstore 0) so far")
  assert "injected by tests/fault_proxy.py, 503" in lines[0] and keys.STORAGE_RETRIES in lines[0]
  assert storage.finish() == (f"storage: {mon.gcsfs_retries} storage request(s) retried "
                              f"(gcsfs {mon.gcsfs_retries}, tensorstore 0) in this run")
  assert storage.metrics() == {}  # stopped: nothing watched
  # gcsfs's DEBUG lines (the retries among them) were counted, never passed on to handlers.
  assert not [r for r in caplog.records if r.name.startswith("gcsfs")]
  gcsfs_logger = logging.getLogger("gcsfs")
  assert not gcsfs_logger.filters and gcsfs_logger.level == logging.NOTSET  # as it was
  assert logging.getLogger("gcsfs.credentials").level == logging.NOTSET


def test_no_faults_no_retries_no_warning(gcs, faulty, monkeypatch, capsys):
  import logging
  from scaling_jax import metric_keys as keys, storage
  proxy = faulty(0.0, process=True)  # the proxy as a subprocess this time
  mon = storage.watch(f"{gcs}/calm/run", warn_after=1)
  _write_run(f"{gcs}/calm/run", monkeypatch)
  _check_run(f"{gcs}/calm/run")
  stats = proxy.stats()
  assert stats["by_client"]["gcsfs"]["requests"] >= 20 and stats["faults"] == 0
  assert storage.metrics() == {keys.STORAGE_RETRIES: 0, keys.STORAGE_SLOW_WRITES: 0}
  assert not logging.getLogger("gcsfs.credentials").isEnabledFor(logging.DEBUG)  # pinned
  assert mon.warnings == 0 and storage.finish() is None
  assert capsys.readouterr().err == ""
  assert storage.watch("local/run") is None and storage.metrics() == {}  # a local run: no keys


def test_tensorstore_retries_are_counted(gcs, faulty):
  import tensorstore as ts
  from scaling_jax import storage
  proxy = faulty(1 / 3, seed=1)
  mon = storage.watch(f"{gcs}/ts", warn_after=10**6)
  # Tensorstore's own retry loop (C++), its backoff shortened through its context.
  context = ts.Context({"gcs_request_retries": {"initial_delay": "10ms", "max_delay": "50ms"}})
  kv = ts.KvStore.open({"driver": "gcs", "bucket": BUCKET, "path": "ts/"},
                       context=context).result()
  for i in range(8):
    kv.write(f"k{i}", f"value {i}".encode()).result()
  assert [kv.read(f"k{i}").result().value for i in range(8)] == [
      f"value {i}".encode() for i in range(8)]
  injected = proxy.stats()["by_client"]["tensorstore"]["faults"]
  assert injected >= 3 and mon.tensorstore_retries() == injected
  assert mon.gcsfs_retries == 0 and mon.retries() == injected


def test_retry_warnings_are_rate_limited():
  from scaling_jax import storage
  now = [0.0]
  err = io.StringIO()
  mon = storage.StorageMonitor(warn_after=3, warn_every_s=60, slow_s=10, stream=err,
                               clock=lambda: now[0])
  for _ in range(2):
    mon.count_gcsfs_retry("_request retrying after exception: busy, 503")
  assert err.getvalue() == ""  # below the threshold
  for _ in range(20):
    mon.count_gcsfs_retry("_request retrying after exception: busy, 503")
  assert len(err.getvalue().splitlines()) == 1 and " 3 storage request(s)" in err.getvalue()
  now[0] = 59.0
  mon.count_gcsfs_retry("_request retrying after exception: busy, 503")
  mon.metrics()
  assert mon.warnings == 1
  now[0] = 61.0
  mon.metrics()  # due, and the count grew: the second line, with the count now
  assert mon.warnings == 2 and " 23 storage request(s)" in err.getvalue().splitlines()[1]
  now[0] = 500.0
  mon.metrics()  # due, but nothing new
  assert mon.warnings == 2
  with mon.timed_write("checkpoint step 7"):
    now[0] += 11.0  # a save of 11 s: slow, and a slow write is news
  assert mon.slow_writes == 1 and mon.warnings == 3
  assert "1 checkpoint save(s) over 10 s (the longest 11 s)" in err.getvalue().splitlines()[2]


def test_slow_checkpoint_save_is_counted_and_warned(gcs, monkeypatch, capsys):
  import numpy as np
  from scaling_jax import checkpoint, metric_keys as keys, storage
  monkeypatch.setenv(storage.SLOW_WRITE_ENV, "0")  # every save is slow
  storage.watch(f"{gcs}/slow", warn_after=10**6)
  ckpt = checkpoint.Checkpointer(f"{gcs}/slow/checkpoints",
                                 types.SimpleNamespace(keep_checkpoints=2,
                                                       async_checkpointing=False))
  ckpt.save(1, {"w": np.arange(4.0)}, {"time_s": 1.0})
  ckpt.close()
  assert storage.metrics() == {keys.STORAGE_RETRIES: 0, keys.STORAGE_SLOW_WRITES: 1}
  err = capsys.readouterr().err
  assert "WARNING: storage is slowing this run: 0 storage request(s) retried (gcsfs 0, " \
         "tensorstore 0), 1 checkpoint save(s) over 0 s" in err
  assert "checkpoint step 1 took" in err
  storage.finish(report=False)
