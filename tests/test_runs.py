"""The run reader, the B_crit(L) chooser and the fitter's table (warmup, eval loss, the
pooled GNS law and its LR rule, Kaplan, constants, tables with the documented columns)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from scaling_jax import metrics as metrics_lib
from scaling_jax import rundir
from scaling_jax.scaling import batch, bcrit, runs, study
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


def table(root, b_crit="none", **kw):
  tab, _ = study.study_table(str(root), b_crit, **kw)
  return tab


def test_table_columns_warmup_and_log_subsampling(tmp_path):
  make_run(tmp_path, "n1e6", 1e6, warmup=50)
  tab = table(tmp_path, "none", points=16)
  assert set(runs.COLUMNS) <= set(tab)
  assert tab["S"].min() > 50  # warmup dropped
  assert tab["S"].max() == 2000 and 10 <= len(tab["S"]) <= 18
  gaps = np.diff(np.log(tab["S"]))
  assert gaps.max() < 4 * np.median(gaps)  # even in log-steps, not in steps
  np.testing.assert_allclose(tab["S_min"], tab["S"])  # b_crit none
  np.testing.assert_allclose(tab["C"], 6 * 1e6 * tab["D"])
  assert set(tab["run"]) == {"n1e6"}


def test_run_reader_decides_the_loss_once(tmp_path):
  make_run(tmp_path, "a", 1e6, b_crit=8192, eval_every=100)
  make_run(tmp_path, "b", 2e6)
  a, b = runs.read_runs(str(tmp_path))
  assert a.loss_key == "eval/validation/loss" and b.loss_key == "loss"
  steps, loss = a.loss
  assert np.all(steps % 100 == 0) and len(steps) == 20
  assert a.n_params == 1e6 and a.batch_tokens == 4096 and a.warmup_steps == 20
  np.testing.assert_allclose(a.b_simple[1], 8192)
  np.testing.assert_allclose(a.flops_at(np.array([100.0])), 6e6 * 100 * 4096)


def test_pooled_gns_law_b_crit_used_for_every_point(tmp_path):
  # Every run logs B_simple = B_crit(L) of a known law: the pooled fit recovers it, and each
  # point's S_min uses the law at its own loss (not the run's own reading).
  b_star, alpha_b = 5e4, 0.3
  for i, n in enumerate((1e6, 3e6, 1e7)):
    steps = range(10, 2001, 10)
    loss = {s: (TRUE["N_c"] / n) ** TRUE["alpha_N"] + (TRUE["S_c"] / s) ** TRUE["alpha_S"]
            for s in steps}
    make_run(tmp_path, f"r{i}", n, steps=steps, loss_fn=loss.get,
             extra={s: {"gns/b_simple_tokens": b_star * loss[s] ** (-1 / alpha_b)}
                    for s in steps})
  tab, law = study.study_table(str(tmp_path), "gns", points=100, bootstrap=50)
  assert law.source == "gns" and law.n_runs == 3
  assert law.alpha_b == pytest.approx(alpha_b, rel=1e-3)
  assert law.b_star == pytest.approx(b_star, rel=1e-2)
  lo, hi = law.alpha_b_interval
  assert lo <= law.alpha_b <= hi
  np.testing.assert_allclose(tab["B_crit"], law(tab["L"]))
  np.testing.assert_allclose(tab["S_min"], tab["S"] / (1 + tab["B_crit"] / 4096))
  np.testing.assert_allclose(tab["C_min"], tab["C"] / (1 + 4096 / tab["B_crit"]))


def test_gns_law_takes_the_lr_schedule_out(tmp_path):
  # B_simple follows B_crit(L) at the peak LR and grows as the cosine schedule anneals,
  # B_simple = B_crit(L) (LR/peak)^-0.5: the runs reach each loss at different points of their
  # schedules, so the pooled fit separates the two and recovers B_crit(L) at the peak LR.
  b_star, alpha_b, gamma = 5e4, 0.3, 0.5
  steps = list(range(10, 2001, 10))
  for i, n in enumerate((1e6, 3e6, 1e7)):
    loss = {s: (TRUE["N_c"] / n) ** TRUE["alpha_N"] + (TRUE["S_c"] / s) ** TRUE["alpha_S"]
            for s in steps}
    frac = {s: 0.5 * (1 + np.cos(np.pi * s / 2000)) for s in steps}
    extra = {s: {"lr": 1e-3 * frac[s], "gns/b_simple_tokens":
                 b_star * loss[s] ** (-1 / alpha_b) * max(frac[s], 1e-3) ** -gamma}
             for s in steps}
    make_run(tmp_path, f"r{i}", n, steps=steps, loss_fn=loss.get, extra=extra)
  rs = runs.read_runs(str(tmp_path))
  pts = bcrit.gns_points(rs)
  # Kept: after the warmup (20) and one EMA horizon (20 steps at the default 0.95), and at
  # LR >= 0.1 x peak.
  np.testing.assert_array_equal(
      pts.kept, (pts.lr_fraction >= bcrit.GNS_MIN_LR_FRACTION) & (pts.step >= 20 + 20))
  assert (~pts.kept).sum() >= 3 * 20
  law = bcrit.choose_b_crit("gns", rs, bootstrap=0)
  assert law.alpha_b == pytest.approx(alpha_b, rel=1e-6)
  assert law.b_star == pytest.approx(b_star, rel=1e-3)  # the peak logged LR is 0.99994 x peak
  assert law.lr_exponent == pytest.approx(gamma, rel=1e-6)
  no_lr = dataclasses.replace(pts, lr_fraction=np.full(len(pts.loss), np.nan))
  plain = bcrit.fit_gns_law(no_lr, bootstrap=0)
  assert plain.lr_exponent is None
  assert abs(np.log(plain.alpha_b / alpha_b)) > 0.1  # ignoring the schedule biases alpha_B


def test_b_crit_choices(tmp_path):
  make_run(tmp_path, "a", 1e6)
  rs = runs.read_runs(str(tmp_path))
  kap = bcrit.choose_b_crit("kaplan", rs)
  np.testing.assert_allclose(kap(np.array([2.0, 4.0])), batch.b_crit_kaplan([2.0, 4.0]))
  const = bcrit.choose_b_crit(bcrit.parse_spec("2e5"), rs)
  np.testing.assert_allclose(const(np.array([2.0, 4.0])), 2e5)
  fn = bcrit.choose_b_crit(lambda loss: 1e4 * np.ones_like(loss), rs)
  tab = runs.learning_table(rs, fn.table_fn)
  np.testing.assert_allclose(tab["S_min"], batch.s_min(tab["S"], 4096, 1e4))
  with pytest.raises(FitError, match="GNS readings"):
    bcrit.choose_b_crit("gns", rs)  # no GNS logged: an error, not a silent fallback
  with pytest.raises(FitError, match="not one of"):
    bcrit.parse_spec("magic")
  with pytest.raises(FitError, match="positive"):
    bcrit.parse_spec("-3")


def test_tables_with_the_documented_columns(tmp_path):
  """run, N, B, S, D, C, L (+ B_simple for gns): S_min and C_min derived by --b-crit."""
  rows = [{"run": f"r{n}", "N": n, "B": 4096, "S": s, "D": 4096 * s, "C": 6 * n * 4096 * s,
           "L": (1e9 / n) ** 0.1 + (300 / s) ** 0.5, "B_simple": 2e4}
          for n in (1e5, 3e5, 1e6) for s in (100, 200, 400, 800)]
  path = str(tmp_path / "t.csv")
  runs.write_table({k: np.array([r[k] for r in rows], dtype=object if k == "run" else float)
                    for k in rows[0]}, path)
  for spec, expect in (("none", 1.0), ("2e4", 1 + 2e4 / 4096)):
    tab, law = study.study_table(path, bcrit.parse_spec(spec))
    np.testing.assert_allclose(tab["S"] / tab["S_min"], expect)
  tab, law = study.study_table(path, "kaplan")
  np.testing.assert_allclose(tab["B_crit"], batch.b_crit_kaplan(tab["L"]))
  tab, law = study.study_table(path, "gns", bootstrap=0)
  assert law.source == "gns"  # a constant B_simple: no trend, B_crit constant
  np.testing.assert_allclose(tab["B_crit"], 2e4, rtol=1e-9)
  no_gns = str(tmp_path / "no_gns.csv")
  runs.write_table({k: np.array([r[k] for r in rows], dtype=object if k == "run" else float)
                    for k in rows[0] if k != "B_simple"}, no_gns)
  with pytest.raises(FitError, match="B_simple column"):
    study.study_table(no_gns, "gns")


def test_bad_points_and_bad_runs_are_skipped_with_warnings(tmp_path):
  make_run(tmp_path, "a", 1e6, extra={500: {"loss": float("nan")}, 600: {"loss": float("inf")}})
  os.makedirs(tmp_path / "broken")
  (tmp_path / "broken" / "config.json").write_text("{not json")
  warnings = []
  tab = table(tmp_path, "none", points=0, warnings=warnings)
  assert np.all(np.isfinite(tab["L"])) and 500 not in tab["S"]
  assert any("dropped 2 points" in w for w in warnings)
  assert any("broken" in w and "skipped" in w for w in warnings)
  last = table(tmp_path, "none", last_only=True)
  assert list(last["S"]) == [2000]
  with pytest.raises(FitError, match="neither a table file nor a directory"):
    table(tmp_path / "nothing_here")
  os.makedirs(tmp_path / "empty")
  with pytest.raises(FitError, match="no run directories"):
    table(tmp_path / "empty")


def test_table_csv_and_json_round_trip(tmp_path):
  make_run(tmp_path / "sweep", "a", 1e6)
  tab = table(tmp_path / "sweep", "kaplan", points=8)
  for name in ("t.csv", "t.json"):
    runs.write_table(tab, str(tmp_path / name))
    back = runs.read_table(str(tmp_path / name))
    assert list(back["run"]) == list(tab["run"])
    np.testing.assert_allclose(back["S_min"], tab["S_min"])
  json.loads((tmp_path / "t.json").read_text())
  with pytest.raises(FitError, match="does not exist"):
    runs.read_table(str(tmp_path / "missing.csv"))
  (tmp_path / "latin1.csv").write_bytes("run,N,L\nr\xe9,1,2\n".encode("latin-1"))
  with pytest.raises(FitError, match="not UTF-8"):
    runs.read_table(str(tmp_path / "latin1.csv"))
