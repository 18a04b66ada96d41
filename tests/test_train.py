"""The training loop end to end on 8 simulated devices: metrics, run dir, resume, NaN, bad input."""

import json
import os
import signal

import numpy as np
import pytest

from scaling_jax import checkpoint, config as config_lib, metrics, rundir, train
from scaling_jax import data as data_lib
from tests.helpers import tiny_config, write_token_array


@pytest.fixture(scope="module")
def array_path(tmp_path_factory):
  return write_token_array(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def finished_run(array_path, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  result = train.train_and_evaluate(tiny_config(array_path), workdir)
  return workdir, result


def test_run_dir_contract(finished_run):
  workdir, result = finished_run
  assert result["status"] == "finished"
  assert rundir.read_status(workdir)["status"] == "finished"
  cfg = rundir.read_config(workdir)
  facts = cfg["facts"]
  assert facts["n_params"] == 2 * 32 * 2 * (2 * 32 + 64)
  assert facts["batch_tokens"] == 16 * 32 and facts["dataset"] == "array"
  assert cfg["config"]["model"]["d_model"] == 32 and cfg["devices"]["count"] == 8
  records = metrics.read_metrics(workdir)
  assert [r["step"] for r in records] == [5, 10, 15, 20]
  last = records[-1]
  for key in ("tokens", "flops", "time_s", "loss", "lr", "grad_norm", "tokens_per_s", "mfu",
              "eval/validation/loss", "gns/b_simple_tokens", "gns/g2_ema", "epoch"):
    assert key in last, key
  assert last["tokens"] == 20 * 16 * 32
  assert last["flops"] == pytest.approx(20 * 16 * 32 * facts["flops_per_token"])
  assert records[-1]["loss"] < records[0]["loss"] - 0.2  # it learns
  assert last["gns/b_simple_tokens"] == pytest.approx(last["gns/b_simple_seqs"] * 32)
  assert 0 < last["mfu"] < 1
  assert os.path.isdir(os.path.join(workdir, "events"))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == "20"


def test_rerunning_a_finished_run_changes_nothing(finished_run, array_path):
  workdir, _ = finished_run
  before = metrics.read_metrics(workdir)
  result = train.train_and_evaluate(tiny_config(array_path), workdir)
  assert result["status"] == "finished"
  assert metrics.read_metrics(workdir) == before


def test_workdir_with_a_different_config_is_refused(finished_run, array_path):
  workdir, _ = finished_run
  c = tiny_config(array_path)
  c.model.d_model = 64
  with pytest.raises(config_lib.ConfigError, match="model.d_model: 32 there vs 64 now"):
    train.train_and_evaluate(c, workdir)


class _SignalAt:
  """Wraps the train iterator and sends SIGTERM to this process when batch `at` is drawn."""

  def __init__(self, inner, at):
    self.inner, self.at, self.n = inner, at, 0

  def __next__(self):
    self.n += 1
    if self.n == self.at:
      os.kill(os.getpid(), signal.SIGTERM)
    return next(self.inner)

  def __getattr__(self, name):
    return getattr(self.inner, name)


def test_preempted_run_resumes_exactly(array_path, finished_run, tmp_path, monkeypatch):
  """SIGTERM mid-run saves a checkpoint; the resumed run reproduces the uninterrupted curve."""
  workdir = str(tmp_path / "run")
  real = data_lib.make_train_iterator
  monkeypatch.setattr(data_lib, "make_train_iterator",
                      lambda *a, **k: _SignalAt(real(*a, **k), at=13))
  result = train.train_and_evaluate(tiny_config(array_path), workdir)
  assert result["status"] == "preempted"
  assert rundir.read_status(workdir)["status"] == "preempted"
  assert rundir.read_status(workdir)["step"] == 13
  monkeypatch.setattr(data_lib, "make_train_iterator", real)
  result = train.train_and_evaluate(tiny_config(array_path), workdir)
  assert result["status"] == "finished"
  resumed = metrics.read_metrics(workdir)
  reference = metrics.read_metrics(finished_run[0])
  assert [r["step"] for r in resumed] == [r["step"] for r in reference]
  for key in ("loss", "eval/validation/loss", "grad_norm", "gns/b_simple_tokens"):
    steps, got = metrics.series(resumed, key)
    ref_steps, want = metrics.series(reference, key)
    assert steps == ref_steps and steps, key
    np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=key)


def test_a_signal_during_a_save_stops_at_the_step_saved(array_path, tmp_path, monkeypatch):
  """SIGTERM while step 10's checkpoint is written (the likeliest moment: saves are long):
  the run stops at step 10, with no second save at step 11 (issue #27)."""
  workdir = str(tmp_path / "run")
  real_save = checkpoint.Checkpointer.save

  def save_then_signal(self, step, state, extra):
    real_save(self, step, state, extra)
    if step == 10:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_signal)
  assert train.train_and_evaluate(tiny_config(array_path), workdir)["status"] == "preempted"
  assert rundir.read_status(workdir)["step"] == 10
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [10]


class _PoisonAt(_SignalAt):
  """Returns a batch with an out-of-vocabulary id at draw `at`: the embedding gives NaN."""

  def __next__(self):
    batch = next(self.inner)
    self.n += 1
    if self.n == self.at:
      batch = batch.copy()
      batch[0, 0] = 10**6
    return batch


def test_nan_stops_and_keeps_last_good_checkpoint(array_path, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  real = data_lib.make_train_iterator
  monkeypatch.setattr(data_lib, "make_train_iterator",
                      lambda *a, **k: _PoisonAt(real(*a, **k), at=14))
  with pytest.raises(train.TrainingDiverged, match="at step 13"):
    train.train_and_evaluate(tiny_config(array_path), workdir)
  status = rundir.read_status(workdir)
  assert status["status"] == "failed" and status["step"] == 13
  assert "metrics" in status and "loss" in status["metrics"]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10"]


def test_nan_skip_policy_counts_and_goes_on(array_path, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  real = data_lib.make_train_iterator
  monkeypatch.setattr(data_lib, "make_train_iterator",
                      lambda *a, **k: _PoisonAt(real(*a, **k), at=7))
  result = train.train_and_evaluate(tiny_config(array_path, nan_policy="skip"), workdir)
  assert result["status"] == "finished" and result["bad_steps"] == 1
  assert np.isfinite(result["loss"]) and np.isfinite(result["eval/validation/loss"])


@pytest.mark.parametrize("field, value, fragment", [
    ("train.batch_size", 20, "not divisible by the 8 data-parallel devices"),
    ("model.n_heads", 3, "does not divide"),
    ("optim.name", "sgd", "is not one of"),
    ("train.grad_accum", 3, "not divisible by the 3 micro-batches"),
    ("optim.warmup_steps", 20, "leaves no steps for the cosine decay"),
])
def test_bad_config_fails_before_compiling(array_path, tmp_path, field, value, fragment):
  c = tiny_config(array_path)
  section, key = field.split(".")
  c[section][key] = value
  with pytest.raises(config_lib.ConfigError, match=fragment):
    train.train_and_evaluate(c, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_failure_before_the_loop_marks_the_run_failed(array_path, tmp_path, monkeypatch):
  """A failure after status 'running' is written but before training (data, restore, init)."""
  def broken(*a, **k):
    raise data_lib.DataError("iterator settings changed; use the original data config")
  monkeypatch.setattr(data_lib, "make_train_iterator", broken)
  workdir = str(tmp_path / "run")
  with pytest.raises(data_lib.DataError):
    train.train_and_evaluate(tiny_config(array_path), workdir)
  status = rundir.read_status(workdir)
  assert status["status"] == "failed" and "iterator settings changed" in status["error"]
