"""The fitter: the Chinchilla refit vs scipy, vmapped parameter recovery, bad input."""

import csv
import itertools
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from scaling_jax.scaling import fit
from scaling_jax.scaling.laws import FitError

REF = pathlib.Path(__file__).resolve().parents[1] / "scaling_jax" / "scaling" / "reference"
PUBLISHED = {"E": 1.8172, "A": 477.83, "B": 2143.16, "alpha": 0.3473, "beta": 0.3672}
PUBLISHED_OBJECTIVE = 1.01827e-3


def _chinchilla():
  with open(REF / "chinchilla_epoch.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["epoch_excluded"] == "0"]
  return {"N": np.array([float(r["Model Size"]) for r in rows]),
          "D": np.array([float(r["Training Tokens"]) for r in rows]),
          "L": np.array([float(r["loss"]) for r in rows])}


def _scipy_fit(tab, n_starts=4):
  """Epoch's procedure: Huber(1e-3) on log-loss, L-BFGS-B from the best of their grid."""
  from scipy.optimize import minimize
  from scipy.special import logsumexp
  log_n, log_d, log_l = np.log(tab["N"]), np.log(tab["D"]), np.log(tab["L"])

  def obj(p):
    a, b, e, al, be = p
    pred = logsumexp([a - al * log_n, b - be * log_d, np.full_like(log_n, e)], axis=0)
    r = pred - log_l
    return np.sum(np.where(np.abs(r) <= 1e-3, 0.5 * r * r, 1e-3 * (np.abs(r) - 0.5e-3)))

  grid = list(itertools.product(np.arange(0, 30, 5), np.arange(0, 30, 5),
                                np.arange(-1, 1.5, 0.5), np.arange(0, 2.5, 0.5),
                                np.arange(0, 2.5, 0.5)))
  best = np.argsort([obj(g) for g in grid])[:n_starts]
  res = min((minimize(obj, grid[i], method="L-BFGS-B") for i in best), key=lambda r: r.fun)
  a, b, e, al, be = res.x
  return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": al, "beta": be}, res.fun


def test_chinchilla_refit_matches_published_and_scipy():
  pytest.importorskip("scipy")
  tab = _chinchilla()
  assert len(tab["L"]) == 240
  res = fit.fit_law("chinchilla", tab, grid=1000)
  assert res.converged and res.n_points == 240
  assert abs(res.objective - PUBLISHED_OBJECTIVE) < 5e-9  # published to 6 digits
  for k, v in PUBLISHED.items():
    assert res.params[k] == pytest.approx(v, rel=1e-3), k
  sp_params, sp_obj = _scipy_fit(tab)
  assert res.objective <= sp_obj * (1 + 1e-9)  # at least as low as scipy's optimum
  assert res.objective == pytest.approx(sp_obj, rel=1e-6)
  for k in PUBLISHED:
    assert res.params[k] == pytest.approx(sp_params[k], rel=2e-3), k
  # Hoffmann et al.'s own fit (E=1.69, B=410.7, beta=0.28) is clearly worse on these data.
  hoffmann = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
  with fit.x64():
    theta = jnp.log(jnp.array([hoffmann[k] for k in res.law_obj.params]))
    x = {k: jnp.asarray(tab[k]) for k in ("N", "D")}
    f_h = float(fit.objective(res.law_obj, theta, x, jnp.log(tab["L"]), jnp.ones(240), 1e-3))
  assert f_h > 1.5 * res.objective


def test_chinchilla_bootstrap_intervals_and_predictions():
  tab = _chinchilla()
  res = fit.fit_law("chinchilla", tab, grid=1000, bootstrap=64, seed=3)
  assert res.bootstrap_converged >= 60 and res.samples.shape[1] == 5
  for k, (lo, hi) in res.intervals.items():
    assert lo < res.params[k] < hi, k
  assert 1.70 < res.intervals["E"][0] and res.intervals["E"][1] < 1.95
  assert res.unidentifiable == []
  pred = res.predict({"N": [1e9, 7e10], "D": [2e10, 1.4e12]})
  assert np.all(pred.lo < pred.value) and np.all(pred.value < pred.hi)
  assert 1.9 < pred.value[1] < pred.value[0] < 3.0
  report = json.loads(res.to_json())
  assert report["law"] == "chinchilla" and report["converged"] is True
  assert report["intervals"]["alpha"][0] < report["params"]["alpha"]
  assert "E" in res.table() and "converged=True" in res.table()


def test_fitter_does_not_flip_global_x64():
  tab = _chinchilla()
  fit.fit_law("L_N", {"N": tab["N"][:12], "L": tab["L"][:12]}, grid=64,
              require_convergence=False)
  assert jnp.ones(1).dtype == jnp.float32


def test_parameter_recovery_coverage_vmapped_over_seeds():
  """True values fall inside the 95% bootstrap intervals at about the nominal rate."""
  rng = np.random.default_rng(0)
  n = np.geomspace(1e5, 1e9, 24)
  true = np.array([8.8e13, 0.076])
  y = (true[0] / n) ** true[1] * np.exp(0.01 * rng.standard_normal((200, len(n))))
  res = fit.fit_batch("L_N", {"N": n}, y, bootstrap=100, delta=1e-2, grid=64, seed=1)
  assert res["converged"].all() and res["boot_converged"].min() >= 95
  inside = (res["lo"] <= true) & (true <= res["hi"])  # 200 seeds x 2 params
  coverage = inside.mean(axis=0)
  assert np.all(coverage > 0.85) and np.all(coverage <= 0.99), coverage
  np.testing.assert_allclose(np.median(res["params"], axis=0), true, rtol=0.05)


def test_recovers_kaplan_l_n_smin_from_noisy_curves():
  rng = np.random.default_rng(1)
  n, s = np.meshgrid(np.geomspace(1e5, 1e8, 6), np.geomspace(100, 1e5, 12))  # 72 points
  true = {"N_c": 6.5e13, "S_c": 2.1e3, "alpha_N": 0.077, "alpha_S": 0.76}
  loss = (true["N_c"] / n) ** true["alpha_N"] + (true["S_c"] / s) ** true["alpha_S"]
  tab = {"N": n.ravel(), "S_min": s.ravel(), "L": loss.ravel() * np.exp(0.003 * rng.standard_normal(n.size))}
  res = fit.fit_law("L_N_Smin", tab, grid=1000, bootstrap=32)
  assert res.converged
  for k in ("alpha_N", "alpha_S", "S_c"):
    assert res.params[k] == pytest.approx(true[k], rel=0.1), k
  assert res.params["N_c"] == pytest.approx(true["N_c"], rel=1.0)  # exp(log) sensitivity


def test_holdout_extrapolation_error_is_small_on_law_data():
  n = np.geomspace(1e5, 1e9, 9)
  tab = {"N": n, "L": (8.8e13 / n) ** 0.076 * (1 + 0.002 * np.sin(np.arange(9)))}
  out = fit.holdout_error("L_N", tab, bootstrap=16, grid=64)
  assert out["held_out_value"] == pytest.approx(1e9) and out["n_test"] == 1
  assert out["n_train"] == 8 and out["mean_abs_rel_error"] < 0.01


def test_unidentifiable_parameter_is_reported():
  # The S term is tiny everywhere: S_c and alpha_S cannot be pinned down.
  rng = np.random.default_rng(2)
  n, s = np.meshgrid(np.geomspace(1e5, 1e8, 6), np.geomspace(1e6, 1e7, 12))
  loss = (6.5e13 / n) ** 0.077 * np.exp(0.01 * rng.standard_normal(n.shape))
  res = fit.fit_law("L_N_Smin", {"N": n.ravel(), "S_min": s.ravel(), "L": loss.ravel()},
                    grid=1000, bootstrap=32, require_convergence=False)
  assert "S_c" in res.unidentifiable, res.params
  assert any("not identifiable" in w for w in res.warnings)
  assert "UNIDENTIFIABLE" in res.table()


@pytest.mark.parametrize("bad, match", [
    ({"N": [1e6, 2e6, np.nan, 4e6], "L": [4.0, 3.9, 3.8, 3.7]}, "NaN, inf or non-positive"),
    ({"N": [1e6, 2e6, 3e6, 4e6], "L": [4.0, -1.0, 3.8, 3.7]}, "row 1"),
    ({"N": [1e6, 2e6], "L": [4.0, 3.9]}, "needs at least 3"),
    ({"N": [1e6, 1e6, 1e6], "L": [4.0, 3.9, 3.8]}, "needs N to vary"),
    ({"D": [1e6, 2e6, 3e6], "L": [4.0, 3.9, 3.8]}, "lacks \\['N'\\]"),
])
def test_bad_input_raises_fit_error_with_advice(bad, match):
  with pytest.raises(FitError, match=match):
    fit.fit_law("L_N", bad)


def test_drop_invalid_and_duplicates():
  n = np.array([1e5, 1e6, 1e6, 1e7, 1e8, 3e8])
  loss = (8.8e13 / n) ** 0.076
  loss[-1] = np.inf
  res = fit.fit_law("L_N", {"N": n, "L": loss}, drop_invalid=True, grid=64)
  assert res.n_points == 4
  assert any("dropped 1 duplicate" in w for w in res.warnings)
  assert any("dropped" in w and "inf" in w for w in res.warnings)
  assert res.params["alpha_N"] == pytest.approx(0.076, rel=1e-4)


def test_non_convergence_is_reported():
  n = np.geomspace(1e5, 1e9, 8)
  tab = {"N": n, "L": (8.8e13 / n) ** 0.076 * (1 + 0.01 * np.cos(np.arange(8)))}
  with pytest.raises(FitError, match="did not converge.*max_iter"):
    fit.fit_law("L_N", tab, max_iter=2, grid=64)
  res = fit.fit_law("L_N", tab, max_iter=2, grid=64, require_convergence=False)
  assert res.converged is False and res.to_dict()["converged"] is False
  with pytest.raises(FitError, match="unknown law"):
    fit.fit_law("L_nope", tab)
