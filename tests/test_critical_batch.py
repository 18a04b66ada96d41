"""Branches (train.init_from / init_step / stop_loss) and the critical-batch study command."""

import dataclasses
import html
import json
import os
import re

import numpy as np
import pytest

from scaling_jax import checkpoint, metrics, rundir, train
from scaling_jax import metric_keys as keys
from scaling_jax.config import ConfigError
from tests.helpers import tiny_config, write_token_array


@pytest.fixture(scope="module")
def array_path(tmp_path_factory):
  return write_token_array(tmp_path_factory.mktemp("data"))


def _constant(c):
  c.optim.update(schedule="constant", warmup_steps=0)
  return c


@pytest.fixture(scope="module")
def base_run(array_path, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("base"))
  c = _constant(tiny_config(array_path, log_every=1, eval_every=10, ckpt_every=10,
                            keep_checkpoints=3))
  train.train_and_evaluate(c, workdir)
  return workdir


def _losses(workdir):
  return dict(zip(*metrics.series(metrics.read_metrics(workdir), keys.LOSS)))


def test_a_branch_continues_its_base_run_exactly(base_run, array_path, tmp_path):
  """Same batch and LR from step 10: the branch's steps 1..10 are the base's 11..20 (params,
  Adam state and the data position all carried over)."""
  c = _constant(tiny_config(array_path, log_every=1, num_steps=10, init_from=base_run,
                            init_step=10))
  train.train_and_evaluate(c, str(tmp_path))
  base, branch = _losses(base_run), _losses(str(tmp_path))
  assert sorted(branch) == list(range(1, 11))
  np.testing.assert_allclose([branch[s] for s in range(1, 11)],
                             [base[10 + s] for s in range(1, 11)], rtol=2e-5)
  # from scratch the same 10 steps give other losses: the start really came from the base
  assert abs(branch[1] - base[1]) > 0.1


def test_a_branch_at_another_batch_stops_at_its_target_loss(base_run, array_path, tmp_path):
  eval_key = keys.eval_loss("validation")
  start = dict(zip(*metrics.series(metrics.read_metrics(base_run), eval_key)))[10]
  target = start - 0.4
  c = _constant(tiny_config(array_path, batch_size=32, log_every=2, eval_every=2,
                            num_steps=60, init_from=base_run, init_step=10, stop_loss=target))
  train.train_and_evaluate(c, str(tmp_path))
  status = rundir.read_status(str(tmp_path))
  steps, evals = metrics.series(metrics.read_metrics(str(tmp_path)), eval_key)
  assert status["status"] == "finished" and status["stopped_at_loss"] <= target
  assert len(evals) >= 2 and evals[-1] <= target < evals[-2]  # stopped at the first crossing
  assert status["step"] == steps[-1] < 60
  assert os.path.isdir(os.path.join(str(tmp_path), "checkpoints", str(int(steps[-1]))))


def test_a_branch_from_a_missing_step_says_which_steps_exist(base_run, array_path, tmp_path):
  c = _constant(tiny_config(array_path, init_from=base_run, init_step=7))
  with pytest.raises(checkpoint.BranchError, match=r"no checkpoint at step 7 .*\[10, 20\]"):
    train.train_and_evaluate(c, str(tmp_path))  # refused in preflight, before any compile
  assert os.listdir(tmp_path) == []
  c = _constant(tiny_config(array_path, init_from=base_run, init_step=10))
  c.seed = 3  # another shuffle of the data: the base's position means nothing here
  with pytest.raises(ConfigError, match="other data"):
    train.train_and_evaluate(c, str(tmp_path / "other"))


# ------------------------------------------------------------------ the study command

from scaling_jax import critical_batch, sweep as sweep_lib  # noqa: E402
from scaling_jax.config import validate  # noqa: E402

CPU_STUDY = os.path.join(sweep_lib.CONFIGS_DIR, "critical_batch.py")
POD_STUDY = os.path.join(sweep_lib.CONFIGS_DIR, "critical_batch_pod.py")


def _points(s):
  return [critical_batch.BranchPoint(step, 4.0 - 0.1 * i, (4.0 - 0.1 * i) * (1 - s.target_drop),
                                     6e-4) for i, step in enumerate(s.branch_steps)]


@pytest.mark.parametrize("devices", [16, 32])
def test_pod_study_defines_valid_runs_for_the_85m_model(devices):
  """--scale pod: every run of the study (base, sweep, branches) is a valid config of the 85M
  model on a slice of 16 or 32 chips (no training)."""
  s = critical_batch.load_study(POD_STUDY, {})
  entries = [critical_batch.base_entry(s, POD_STUDY)] + critical_batch.study_entries(
      s, POD_STUDY, "gs://bucket/cb/runs", _points(s))
  assert len(entries) == 1 + (len(s.batch_sizes) - 1) + len(s.branch_steps) * len(s.batch_sizes)
  evals = set()
  for e in entries:
    c = sweep_lib.load_run_config(POD_STUDY, e["overrides"])
    validate(c, num_devices=devices)
    evals.add(c.train.batch_size * c.data.eval_batches)
    if e["name"].startswith("branch_"):
      assert c.train.init_from == "gs://bucket/cb/runs/base" and c.train.stop_loss > 0
  from scaling_jax import accounting
  assert accounting.counts(c.model).n_params == pytest.approx(85e6, rel=0.01)
  assert evals == {s.eval_sequences}  # one eval set for every run


def test_study_lr_rules_scale_with_the_batch():
  s = critical_batch.load_study(CPU_STUDY, {"lr_rule": "sqrt"})
  entries = critical_batch.study_entries(s, CPU_STUDY, "/r", _points(s))
  lr = {e["name"]: e["overrides"]["optim.lr"] for e in entries}
  step = s.branch_steps[0]
  assert lr[f"branch_s{step}_B{4 * s.base_batch}"] == pytest.approx(2 * 6e-4)
  s = critical_batch.load_study(CPU_STUDY, {"lr_rule": "constant"})
  lr = {e["name"]: e["overrides"]["optim.lr"]
        for e in critical_batch.study_entries(s, CPU_STUDY, "/r", _points(s))}
  assert set(lr.values()) == {6e-4}  # the base run's LR at every batch


def test_gns_lr_rule_scales_linearly_below_the_noise_scale_and_saturates_above():
  """McCandlish et al.'s optimal step eps(B) = eps_max/(1 + B_noise/B): LR proportional to B
  well below B_noise, flat well above it, the base LR at the base batch."""
  s = critical_batch.load_study(CPU_STUDY, {"lr_rule": "gns"})
  n_ctx = sweep_lib.load_run_config(CPU_STUDY, {}).model.n_ctx

  def lrs(b_noise_seqs):
    p = dataclasses.replace(_points(s)[0], b_noise=b_noise_seqs * n_ctx)
    entries = critical_batch.study_entries(s, CPU_STUDY, "/r", [p])
    return {e["overrides"]["train.batch_size"]: e["overrides"]["optim.lr"]
            for e in entries if e["name"].startswith("branch_")}

  noisy, quiet = lrs(1e5), lrs(1e-3)  # B_noise far above / below the whole ladder
  assert noisy[s.base_batch] == quiet[s.base_batch] == pytest.approx(6e-4)
  for b in s.batch_sizes:
    assert noisy[b] == pytest.approx(6e-4 * b / s.base_batch, rel=1e-2)  # linear scaling
    assert quiet[b] == pytest.approx(6e-4, rel=1e-3)  # no gain from a larger batch
  mid = lrs(s.base_batch)
  assert sorted(mid.values()) == [mid[b] for b in sorted(s.batch_sizes)]  # rises with B
  assert mid[max(s.batch_sizes)] < 2 * 6e-4 < noisy[max(s.batch_sizes)]  # but sublinearly
  sweep_lr = {e["overrides"]["optim.lr"] for e in critical_batch.study_entries(
      s, CPU_STUDY, "/r", _points(s)) if e["name"].startswith("sweep_")}
  assert sweep_lr == {6e-4}  # from scratch through every level: the base LR


@pytest.mark.parametrize("args, fragment", [
    (["--study.lr_rule=cubic"], "lr_rule='cubic' is not one of"),
    (["--study.branch_steps=(100, 900)"], "before the base run's end"),
    (["--study.batch_sizes=(8,)"], ">= 3 distinct batch sizes"),
    (["--study.eval_sequences=100"], "multiple of every batch size"),
    (["--study.nope=1"], "unknown study field 'nope'"),
    (["--study.target_drop=x"], "expected a float"),
    (["--bogus"], "unknown argument"),
])
def test_bad_study_input_is_one_line(args, fragment, tmp_path, capsys):
  assert critical_batch.main(["--out", str(tmp_path), "--dry-run", *args]) == 2
  err = capsys.readouterr().err.strip()
  assert fragment in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_critical_batch_command_end_to_end_and_resume(array_path, tmp_path, monkeypatch):
  """A tiny study: base run, 2 sweep runs, 3 branches; the report has all three methods at
  the branch point; a rerun trains nothing and writes the same numbers."""
  monkeypatch.setenv("XLA_FLAGS", "")  # the trainings run on one CPU device
  out = str(tmp_path / "study")
  argv = ["--out", out, "--bootstrap", "50",
          "--study.base_batch=8", "--study.base_steps=40", "--study.branch_steps=(20,)",
          "--study.batch_sizes=(4, 8, 16)", "--study.eval_sequences=16",
          "--study.eval_every_sequences=16", "--study.target_drop=0.05",
          "--study.branch_max_tokens=20000", "--study.sweep_max_tokens=40000",
          "--config.data.name=array", f"--config.data.array_path={array_path}",
          "--config.model.vocab_size=128", "--config.model.n_ctx=32", "--config.model.n_layer=1",
          "--config.model.d_model=32", "--config.model.n_heads=1", "--config.model.d_ff=64",
          "--config.optim.lr=3e-3", "--config.optim.warmup_steps=4", "--config.gns.ema=0.8",
          "--config.train.log_every=2"]
  assert critical_batch.main(argv) == 0
  with open(os.path.join(out, "report", "report.json")) as f:
    first = json.load(f)
  (row,) = first["levels"]
  assert row["branch_step"] == 20 and row["target_loss"] == pytest.approx(0.95 * row["start_loss"])
  assert set(first["ladders"]["20"]["batch_tokens"]) == {128.0, 256.0, 512.0}
  assert row["gns"]["runs"] >= 2 and row["gns"]["lo"] <= row["gns"]["b"] <= row["gns"]["hi"]
  assert first["cost"]["probes"]["runs"] == 3 and first["cost"]["sweep"]["runs"] == 2
  assert first["cost"]["gns"]["tokens"] == 40 * 8 * 32
  branch = rundir.read_status(os.path.join(out, "runs", "branch_s20_B16"))
  assert branch["status"] == "finished"
  assert os.path.getsize(os.path.join(out, "report", "critical_batch.png")) > 10_000
  mtime = os.path.getmtime(os.path.join(out, "runs", "base", "metrics.jsonl"))
  assert critical_batch.main(argv) == 0  # resumes: nothing left to train
  with open(os.path.join(out, "report", "report.json")) as f:
    again = json.load(f)
  assert again["levels"] == first["levels"]
  assert os.path.getmtime(os.path.join(out, "runs", "base", "metrics.jsonl")) == mtime


def test_three_methods_figure_draws_every_method_with_its_interval():
  from scaling_jax.scaling import batch_plots
  rows = [{"loss": l, "branch_step": s, "start_loss": l + 0.05, "target_loss": l - 0.05,
           "gns": {"b": g, "lo": g / 2, "hi": g * 2}, "sweep": {"b": 2 * g, "lo": g, "hi": 4 * g},
           "probe": {"b": 3 * g, "lo": 2 * g, "hi": 5 * g, "b_20": g, "b_20_lo": None,
                     "b_20_hi": None, "s_min": 10.0, "e_min": 3e4}}
          for l, s, g in ((5.0, 100, 1e3), (4.5, 250, 2e3), (4.2, 500, 3e3))]
  law = {"B_star": 1e7, "alpha_B": 0.2}
  report = {"levels": rows, "model": {"n_params": 1e5},
            "laws": {"gns": law, "sweep": None, "probe": law, "probe_20": None},
            "ladders": {"100": {"batch_tokens": [256.0, 512.0, 1024.0], "steps": [90, 50, 30]}}}
  ax = batch_plots.plot_three_methods(report).axes[0]
  lines = {l.get_gid(): l for l in ax.get_lines()}
  for key in ("gns", "sweep", "probe", "probe_20"):
    assert len(lines[f"method:{key}"].get_xdata()) == 3
  np.testing.assert_allclose(sorted(lines["method:sweep"].get_ydata()), [2e3, 4e3, 6e3])
  assert {"law:gns", "law:probe"} <= set(lines) and "law:sweep" not in set(lines)
  ax = batch_plots.plot_probe_ladders(report).axes[0]
  fit = {l.get_gid(): l for l in ax.get_lines()}["fit:100"]
  np.testing.assert_allclose(fit.get_ydata()[0], 10 + 3e4 / 256)


def test_the_printed_summary_and_the_html_report_show_the_same_tables():
  """One set of tables, two renderings: every printed row is an HTML table row, cell for
  cell (the HTML used to wrap the printed text in a <pre> wider than the page)."""
  row = {"loss": 4.5, "gns": {"b": 1.2e3, "lo": 900.0, "hi": 1.6e3},
         "sweep": {"b": 800.0, "lo": 700.0, "hi": 950.0}, "probe": None,
         "gns_over_sweep": 1.5, "gns_over_probe": None}
  report = {"model": {"n_params": 9.8e4, "n_ctx": 64}, "levels": [row],
            "laws": {"gns": {"B_star": 4.8e7, "alpha_B": 0.15, "B_star_interval": [1e7, 2e9],
                             "alpha_B_interval": [0.11, 0.17], "n_levels": 3, "tested": True},
                     "probe": {"B_star": 1.5e14, "alpha_B": 0.065, "n_levels": 2,
                               "tested": False},
                     "sweep": None},
            "cost": {"gns": {"runs": 1, "tokens": 8.2e5, "time_s": 35.2}}}
  text = critical_batch.summary_lines(report)
  printed = [[c.strip() for c in line.split("|")] for line in text[1:]]
  page = critical_batch.summary_html(report)
  assert page.count("<table>") == 3 and "<pre>" not in page
  cells = [[html.unescape(c) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", tr)]
           for tr in re.findall(r"<tr>(.*?)</tr>", page)]
  assert cells == printed
  assert printed[1][:4] == ["4.5000", "1.2e+03 [900, 1.6e+03]", "800 [700, 950]", "–"]
  assert printed[4] == ["probe", "1.5e+14 [–, –]",
                        "0.065 [–, –] (through 2 levels, untested)"]
  assert printed[-1] == ["gns", "1", "8.2e+05", "35"]
