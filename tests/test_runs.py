"""Run directories -> the fitter's table (warmup, eval loss, GNS/Kaplan B_crit, subsampling)."""

import json
import os

import numpy as np
import pytest

from scaling_jax import metrics as metrics_lib
from scaling_jax import rundir
from scaling_jax.scaling import batch, runs
from scaling_jax.scaling.laws import FitError

TRUE = {"N_c": 6.5e13, "S_c": 2.1e3, "alpha_N": 0.077, "alpha_S": 0.76}


def make_run(root, name, n, *, batch_tokens=4096, steps=range(10, 2001, 10), warmup=20,
             b_crit=None, eval_every=0, loss_fn=None, extra=None):
  """A tiny fake run dir: config.json (config + facts) and metrics.jsonl from a known law.

  Train loss follows L(N, S_min) with S_min = S / (1 + B_crit/B); B_crit (tokens) is logged
  as gns/b_simple_tokens when given. Eval records (when eval_every) log 0.99 x the loss.
  """
  run = os.path.join(root, name)
  os.makedirs(run, exist_ok=True)
  rundir.write_json_atomic(os.path.join(run, rundir.CONFIG_FILE), {
      "config": {"optim": {"warmup_steps": warmup}},
      "facts": {"n_params": n, "batch_tokens": batch_tokens, "dataset_tokens": 10**12},
  })
  bc = b_crit or 0.0  # no B_crit: the curve is already in S_min
  if loss_fn is None:
    def loss_fn(s):
      s_min = s / (1 + bc / batch_tokens)
      return (TRUE["N_c"] / n) ** TRUE["alpha_N"] + (TRUE["S_c"] / s_min) ** TRUE["alpha_S"]
  w = metrics_lib.MetricsWriter(run, tensorboard=False)
  for s in steps:
    rec = {"step": s, "tokens": s * batch_tokens, "flops": 6.0 * n * s * batch_tokens,
           "loss": loss_fn(s)}
    if b_crit:
      rec["gns/b_simple_tokens"] = b_crit
    if eval_every and s % eval_every == 0:
      rec["eval/validation/loss"] = 0.99 * loss_fn(s)
    rec.update((extra or {}).get(s, {}))
    w.write(rec)
  w.close()
  rundir.write_status(run, "finished")
  return run


def test_table_columns_warmup_and_log_subsampling(tmp_path):
  make_run(tmp_path, "n1e6", 1e6, warmup=50)
  tab = runs.runs_table(str(tmp_path), b_crit="none", points=16)
  assert set(runs.COLUMNS) <= set(tab)
  assert tab["S"].min() > 50  # warmup dropped
  assert tab["S"].max() == 2000 and 10 <= len(tab["S"]) <= 18
  gaps = np.diff(np.log(tab["S"]))
  assert gaps.max() < 4 * np.median(gaps)  # even in log-steps, not in steps
  np.testing.assert_allclose(tab["S_min"], tab["S"])  # b_crit none
  np.testing.assert_allclose(tab["C"], 6 * 1e6 * tab["D"])
  assert set(tab["run"]) == {"n1e6"}


def test_eval_loss_preferred_and_gns_b_crit_used(tmp_path):
  make_run(tmp_path, "a", 1e6, b_crit=8192, eval_every=100)
  tab = runs.runs_table(str(tmp_path), b_crit="gns", points=100)
  assert np.all(tab["S"] % 100 == 0)  # only eval steps
  np.testing.assert_allclose(tab["B_crit"], 8192)
  np.testing.assert_allclose(tab["S_min"], tab["S"] / 3)  # 1 + 8192/4096
  np.testing.assert_allclose(tab["C_min"], tab["C"] / 1.5)  # 1 + 4096/8192


def test_kaplan_b_crit_and_fallback_without_gns(tmp_path):
  make_run(tmp_path, "a", 1e6)
  warnings = []
  tab = runs.runs_table(str(tmp_path), b_crit="gns", warnings=warnings)
  assert any("used Kaplan" in w for w in warnings)
  np.testing.assert_allclose(tab["B_crit"], batch.b_crit_kaplan(tab["L"]))
  tab2 = runs.runs_table(str(tmp_path), b_crit=lambda loss: 1e4 * np.ones_like(loss))
  np.testing.assert_allclose(tab2["S_min"], batch.s_min(tab2["S"], 4096, 1e4))
  with pytest.raises(FitError, match="b_crit must be"):
    runs.runs_table(str(tmp_path), b_crit="magic")


def test_bad_points_and_bad_runs_are_skipped_with_warnings(tmp_path):
  make_run(tmp_path, "a", 1e6, extra={500: {"loss": float("nan")}, 600: {"loss": float("inf")}})
  os.makedirs(tmp_path / "broken")
  (tmp_path / "broken" / "config.json").write_text("{not json")
  warnings = []
  tab = runs.runs_table(str(tmp_path), b_crit="none", points=0, warnings=warnings)
  assert np.all(np.isfinite(tab["L"])) and 500 not in tab["S"]
  assert any("dropped 2 points" in w for w in warnings)
  assert any("broken" in w and "skipped" in w for w in warnings)
  last = runs.runs_table(str(tmp_path), b_crit="none", last_only=True)
  assert list(last["S"]) == [2000]
  with pytest.raises(FitError, match="no run directories"):
    runs.runs_table(str(tmp_path / "nothing_here"))


def test_table_csv_and_json_round_trip(tmp_path):
  make_run(tmp_path / "sweep", "a", 1e6)
  tab = runs.runs_table(str(tmp_path / "sweep"), b_crit="kaplan", points=8)
  for name in ("t.csv", "t.json"):
    runs.write_table(tab, str(tmp_path / name))
    back = runs.read_table(str(tmp_path / name))
    assert list(back["run"]) == list(tab["run"])
    np.testing.assert_allclose(back["S_min"], tab["S_min"])
  json.loads((tmp_path / "t.json").read_text())
  with pytest.raises(FitError, match="does not exist"):
    runs.read_table(str(tmp_path / "missing.csv"))
