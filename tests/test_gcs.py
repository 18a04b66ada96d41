"""gs:// run, sweep and data directories end to end, against a local GCS emulator (started
and stopped here): train, preempt (SIGTERM), resume, sweep and fit write only to the bucket;
the tokenized data is built once, published to the bucket and fetched by the next host into
its local mirror; without a backend a gs:// workdir or data directory is refused in one
line, never made a local `gs:` folder.

The emulator and the environment that points gcsfs and tensorstore at it: tests/gcs_emulator.py.
"""

import importlib.util
import io
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests import gcs_emulator

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
  from scaling_jax import metrics, rundir, sweep
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
