"""The sweep runner on tiny runs of the array corpus: finished runs are skipped, a run with a
bad override fails alone (status.json + non-zero exit) and is retried on a rerun, and an
interrupted sweep resumes its run from the checkpoint; another sweep into the same directory
adds to sweep.json, and reusing a run's name with another config is refused (issue #27)."""

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
from scaling_jax.config import load_config
from tests.helpers import write_token_array
from tests.test_hostile_inputs import tree_digest

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


def _fake_train(run, out_dir):
  """The `command` of a run that "trains" at once: config.json recorded as the trainer records
  it (train.prepare_workdir, with the config the real train command line loads) and
  status.json finished; the process it returns does nothing."""
  from scaling_jax import train

  cmd = sweep.train_command(run, out_dir)
  config = load_config(cmd[cmd.index("--config") + 1],
                       [a for a in cmd if a.startswith("--config.")])
  workdir = cmd[cmd.index("--workdir") + 1]
  train.prepare_workdir(config, workdir, {"n_params": 1}, is_main=True)
  rundir.write_status(workdir, "finished", step=int(config.train.num_steps))
  return [sys.executable, "-c", "pass"]


def _run(name, **overrides):
  return {"name": name, "config": "configs/tiny.py", "overrides": overrides}


def test_another_sweep_into_the_same_out_keeps_the_other_runs_entries(tmp_path):
  """sweep.json is merged, never rewritten from the new file alone: runs not in the new file
  keep their entries (and order), a rerun name gets the new entry, new names are appended and
  other keys of the file are kept."""
  out = tmp_path / "out"
  res = sweep.run_sweep([_run("a", **{"model.d_model": 16}), _run("b", **{"model.d_model": 24})],
                        str(out), stream=None, command=_fake_train)
  assert {k: r.status for k, r in res.items()} == {"a": "finished", "b": "finished"}
  first = json.loads((out / "sweep.json").read_text())
  assert [r["name"] for r in first["runs"]] == ["a", "b"]
  first["note"] = "kept"  # a key some tool added
  rundir.write_json_atomic(out / "sweep.json", first)
  a_config = (out / "a" / "config.json").read_bytes()

  # Another sweep file with only run c, and run a again with the same config said another way.
  res = sweep.run_sweep([_run("c", **{"model.d_model": 8}),
                         _run("a", **{"model.d_model": 16, "seed": 0})],
                        str(out), stream=None, command=_fake_train)
  assert {k: r.status for k, r in res.items()} == {"a": "skipped", "c": "finished"}
  merged = json.loads((out / "sweep.json").read_text())
  assert [r["name"] for r in merged["runs"]] == ["a", "b", "c"]
  assert merged["runs"][1] == first["runs"][1]  # b: not in the new file, unchanged
  assert merged["runs"][0] == dict(first["runs"][0],
                                   overrides={"model.d_model": 16, "seed": 0})  # the new entry
  assert merged["runs"][2]["overrides"] == {"model.d_model": 8}
  assert merged["note"] == "kept"
  assert (out / "a" / "config.json").read_bytes() == a_config


def test_a_run_name_reused_with_another_config_is_refused_before_anything_runs(tmp_path,
                                                                               capfd):
  """Reusing a finished run's name with another d_model is one stderr line naming the run
  and the field (exit 2, dry run too); sweep.json, the run and the directory are untouched
  and no other run of the file starts."""
  out = tmp_path / "out"
  sweep.run_sweep([_run("a", **{"model.d_model": 16}), _run("b", **{"model.d_model": 24})],
                  str(out), stream=None, command=_fake_train)
  before = tree_digest(out)
  other = _write_sweep(tmp_path / "other.py", [_run("c", **{"model.d_model": 8}),
                                               _run("a", **{"model.d_model": 24})])
  capfd.readouterr()
  for extra in ([], ["--dry-run"], ["--rerun-finished"]):
    assert sweep.main([other, "--out", str(out), *extra]) == 2
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("scaling-jax sweep: error: run 'a': ")
    assert f"{out / 'a'} holds a run with a different config" in lines[0]
    assert "model.d_model: 16 there vs 24 now" in lines[0]
    assert "give the run another name, or delete" in lines[0]
    assert captured.out == ""  # the dry run printed no commands
    assert tree_digest(out) == before  # no OUT/c, sweep.json and OUT/a byte for byte

  # Several conflicting runs: all in the one line.
  both = _write_sweep(tmp_path / "both.py", [_run("a", **{"model.d_model": 24}),
                                              _run("b", **{"model.d_model": 24, "seed": 3})])
  assert sweep.main([both, "--out", str(out)]) == 2
  lines = capfd.readouterr().err.splitlines()
  assert len(lines) == 1 and "run 'a': " in lines[0] and "run 'b': " in lines[0]
  assert "model.d_model: 16 there vs 24 now" in lines[0] and "seed: 0 there vs 3 now" in lines[0]
  assert tree_digest(out) == before


@pytest.mark.parametrize("damage, problem", [(b'{"runs": [{"na', "not valid JSON"),
                                             (b'{"runs": 5}', '"runs" is not a list')])
def test_a_damaged_sweep_json_is_refused_not_rewritten(tmp_path, damage, problem):
  """The entries of a sweep.json that cannot be read are not replaced by the new file's."""
  out = tmp_path / "out"
  out.mkdir()
  (out / "sweep.json").write_bytes(damage)
  with pytest.raises(rundir.DamagedRunFile, match=f"sweep.json is damaged: .*{problem}"):
    sweep.run_sweep([_run("a")], str(out), stream=None, command=_fake_train)
  assert (out / "sweep.json").read_bytes() == damage and not (out / "a").exists()


def test_an_unchanged_run_is_not_refused(tmp_path, capfd):
  """The same sweep file again: finished runs are listed as finished (dry run) and rerun with
  --rerun-finished; only a differing config is a conflict."""
  out = tmp_path / "out"
  runs = [_run("a", **{"model.d_model": 16}), _run("b", **{"model.d_model": 24})]
  sweep.run_sweep(runs, str(out), stream=None, command=_fake_train)
  same = _write_sweep(tmp_path / "same.py", runs)
  capfd.readouterr()
  assert sweep.main([same, "--out", str(out), "--dry-run"]) == 0
  assert capfd.readouterr().out.splitlines() == ["# 0 to run, 2 finished"]
  assert sweep.main([same, "--out", str(out), "--dry-run", "--rerun-finished"]) == 0
  printed = capfd.readouterr().out.splitlines()
  assert printed[-1] == "# 2 to run, 0 finished"
  assert f"--workdir {out / 'a'}" in printed[0] and "--config.model.d_model=16" in printed[0]
  res = sweep.run_sweep(runs, str(out), stream=None, rerun_finished=True, command=_fake_train)
  assert {k: r.status for k, r in res.items()} == {"a": "finished", "b": "finished"}


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
  # Rerun through the CLI: the finished runs are skipped, the failed one retried (and fails);
  # the config the trainer recorded is the one the sweep resolves (not a reused name: exit 1,
  # not 2).
  sweep_file = _write_sweep(tmp_path / "grid.py", runs)
  assert sweep.main([sweep_file, "--out", str(out), "--dry-run"]) == 0
  assert sweep.main([sweep_file, "--out", str(out)]) == 1
  assert os.path.getmtime(out / "ok_a" / "metrics.jsonl") == before
  assert (out / "bad" / "train.log").read_text().count("\n### ") == 2
  assert [r["name"] for r in json.load(open(out / "sweep.json"))["runs"]] == ["ok_a", "bad"]
  # The trained run's name with another d_model: refused before anything runs.
  sweep_json = (out / "sweep.json").read_bytes()
  other = _write_sweep(tmp_path / "other.py", [dict(runs[0], overrides=_overrides(
      array, **{"model.d_model": 48}))])
  with pytest.raises(sweep.SweepError, match=r"run 'ok_a': .*model.d_model: 32 there vs 48 now"):
    sweep.run_sweep(sweep.load_sweep(other), str(out), stream=None)
  assert (out / "sweep.json").read_bytes() == sweep_json
  assert os.path.getmtime(out / "ok_a" / "metrics.jsonl") == before


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
