"""The sweep runner on tiny runs of the array corpus: finished runs are skipped, a run with a
bad override fails alone (status.json + non-zero exit) and is retried on a rerun, and an
interrupted sweep resumes its run from the checkpoint."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from scaling_jax import metrics as metrics_lib
from scaling_jax import rundir, sweep
from tests.helpers import write_token_array

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _overrides(array_path, **extra):
  o = {"data.name": "array", "data.array_path": str(array_path), "model.vocab_size": 128,
       "model.n_ctx": 32, "model.d_model": 32, "model.d_ff": 64, "train.num_steps": 10,
       "train.log_every": 5, "train.eval_every": 10, "train.ckpt_every": 10,
       "optim.warmup_steps": 2, "data.eval_batches": 1}
  o.update(extra)
  return o


def _write_sweep(path, runs):
  path.write_text(textwrap.dedent(f"""
      def get_sweep():
        return {runs!r}
      """))
  return str(path)


def test_normalize_and_load_errors(tmp_path):
  runs = sweep.normalize_runs([("a", "configs/tiny.py", {"seed": 1})])
  assert runs == [{"name": "a", "config": "configs/tiny.py", "overrides": {"seed": 1}}]
  with pytest.raises(sweep.SweepError, match="unique"):
    sweep.normalize_runs([("a", "c.py", {}), ("a", "c.py", {})])
  with pytest.raises(sweep.SweepError, match="directory name"):
    sweep.normalize_runs([("a/b", "c.py", {})])
  with pytest.raises(sweep.SweepError, match="no get_sweep"):
    (tmp_path / "s.py").write_text("x = 1\n")
    sweep.load_sweep(str(tmp_path / "s.py"))
  assert sweep.format_override("data.eval_sets", ("a", "b")) == "--config.data.eval_sets=('a', 'b')"
  cmd = sweep.train_command({"name": "a", "config": "c.py", "overrides": {"seed": 3}}, "/o")
  assert cmd[1:4] == ["-m", "scaling_jax.cli", "train"] and "--config.seed=3" in cmd
  assert sweep.main([str(tmp_path / "missing.py"), "--out", str(tmp_path)]) == 2


def test_a_bad_override_fails_the_sweep_before_any_run_starts(tmp_path):
  """A typo in one run's overrides is a SweepError naming the run; nothing is created."""
  runs = [{"name": "ok", "config": "configs/tiny.py", "overrides": {}},
          {"name": "typo", "config": "configs/tiny.py", "overrides": {"optim.lr": float("nan")}}]
  with pytest.raises(sweep.SweepError, match=r"run 'typo': config.optim.lr=nan"):
    sweep.run_sweep(runs, str(tmp_path / "out"), stream=None)
  assert not (tmp_path / "out").exists()


def test_a_run_killed_by_a_signal_records_the_signal(tmp_path):
  """The OOM killer or kill -9 leaves no error message: status.json names the signal."""
  def killed(run, out_dir):  # a "training" process that SIGKILLs itself
    return [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]

  runs = [{"name": "a", "config": "configs/tiny.py", "overrides": {}}]
  res = sweep.run_sweep(runs, str(tmp_path / "out"), stream=None, command=killed)
  assert res["a"].status == "failed" and res["a"].returncode == -signal.SIGKILL
  status = json.loads((tmp_path / "out" / "a" / "status.json").read_text())
  assert status["error"] == "killed by signal 9 (SIGKILL)" and status["returncode"] == -9


@pytest.mark.slow
def test_skip_finished_and_retry_failed(tmp_path):
  array = write_token_array(tmp_path)
  out = tmp_path / "sweep"
  runs = [{"name": "ok_a", "config": "configs/tiny.py", "overrides": _overrides(array)},
          {"name": "bad", "config": "configs/tiny.py",  # a valid config whose data is missing
           "overrides": _overrides(tmp_path / "no_such_tokens.npy")}]
  res = sweep.run_sweep(runs, str(out), parallel=2, stream=None)
  assert {k: r.status for k, r in res.items()} == {"ok_a": "finished", "bad": "failed"}
  status = rundir.read_status(str(out / "bad"))
  assert status["status"] == "failed" and "no_such_tokens.npy" in status["error"]
  assert status["returncode"] == 2
  assert sweep.summarize(res)[1] == 1
  recs = metrics_lib.read_metrics(str(out / "ok_a"))
  assert recs[-1]["step"] == 10 and rundir.read_status(str(out / "ok_a"))["status"] == "finished"
  assert res["ok_a"].cpu_s > 0
  before = os.path.getmtime(out / "ok_a" / "metrics.jsonl")
  # Rerun through the CLI: the finished runs are skipped, the failed one retried (and fails).
  sweep_file = _write_sweep(tmp_path / "grid.py", runs)
  assert sweep.main([sweep_file, "--out", str(out)]) == 1
  assert os.path.getmtime(out / "ok_a" / "metrics.jsonl") == before
  assert (out / "bad" / "train.log").read_text().count("\n### ") == 2
  assert json.load(open(out / "sweep.json"))["runs"][0]["name"] == "ok_a"


@pytest.mark.slow
def test_interrupted_sweep_resumes_from_checkpoint(tmp_path):
  array = write_token_array(tmp_path)
  out = tmp_path / "sweep"
  runs = [{"name": "long", "config": "configs/tiny.py",
           "overrides": _overrides(array, **{"train.num_steps": 60, "train.log_every": 2,
                                             "train.ckpt_every": 4, "train.eval_every": 60})}]
  sweep_file = _write_sweep(tmp_path / "grid.py", runs)
  cmd = [sys.executable, "-m", "scaling_jax.cli", "sweep", sweep_file, "--out", str(out)]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 240
  while metrics_lib.last_step(str(out / "long")) < 8:
    assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()[-2000:]
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)  # as a scheduler would: forwarded to the training
  text = proc.communicate(timeout=120)[0].decode()
  assert proc.returncode == sweep.EX_TEMPFAIL, text[-2000:]
  status = rundir.read_status(str(out / "long"))
  assert status["status"] == "preempted", status
  stopped = status["step"]
  assert 8 <= stopped < 60
  kept = [r for r in metrics_lib.read_metrics(str(out / "long")) if r["step"] <= stopped]
  res = sweep.run_sweep(runs, str(out), stream=None)
  assert res["long"].status == "finished"
  recs = metrics_lib.read_metrics(str(out / "long"))
  assert [r["step"] for r in recs] == list(range(2, 61, 2))
  # Records up to the checkpoint are the first attempt's (wall-clock time_s kept), not redone.
  assert [r for r in recs if r["step"] <= stopped] == kept
