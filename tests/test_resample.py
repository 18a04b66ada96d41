"""Bootstrap resampling for learning curves: the weights, the residual model, and coverage
(point resampling's intervals are too narrow for correlated curves; the default is not)."""

import numpy as np
import pytest

from scaling_jax.scaling import coverage, fit, resample

GROUPS = np.array(["a"] * 6 + ["b"] * 4 + ["c"] * 5, dtype=object)


def test_run_weights_draw_whole_runs():
  w = resample.run_weights(GROUPS, 200, np.random.default_rng(0))
  for row in w:
    for g in ("a", "b", "c"):
      vals = row[GROUPS == g]
      assert np.all(vals == vals[0])  # a run is drawn whole
    assert sum(row[GROUPS == g][0] for g in ("a", "b", "c")) == 3  # 3 runs drawn
  assert w.std(axis=0).min() > 0  # and the draws vary


def test_block_weights_stay_within_runs_and_keep_their_size():
  w = resample.block_weights(GROUPS, 100, np.random.default_rng(1), block=2)
  for g, n in (("a", 6), ("b", 4), ("c", 5)):
    assert np.all(w[:, GROUPS == g].sum(axis=1) == 2 * np.ceil(n / 2))


def test_noise_model_recovers_offsets_and_ar1():
  truth = resample.NoiseModel(sigma_run=0.02, phi=0.7, sigma_e=0.005, dof=1, n_groups=1)
  groups = np.repeat(np.arange(400), 30).astype(str)
  resid = truth.draw(groups, 1, np.random.default_rng(2), sample_sigma=False)[0]
  est = resample.NoiseModel.estimate(resid, groups, between_params=0)
  assert est.sigma_run == pytest.approx(0.02, rel=0.1)
  assert est.phi == pytest.approx(0.7, abs=0.05)
  assert est.sigma_e == pytest.approx(0.005, rel=0.1)
  assert est.dof == 400


def test_auto_resampling_follows_the_table():
  rng = np.random.default_rng(3)
  tab = coverage.simulate_study(rng)
  res = fit.fit_law("L_N_Smin", tab, bootstrap=8, grid=64, require_convergence=False)
  assert res.resample == "parametric" and res.noise is not None
  assert res.noise.dof == 3  # 5 runs, N's power law takes 2 degrees of freedom
  final = {"N": np.geomspace(1e5, 1e9, 8), "L": (8.8e13 / np.geomspace(1e5, 1e9, 8)) ** 0.076}
  assert fit.fit_law("L_N", final, bootstrap=8, grid=64).resample == "points"
  with pytest.raises(fit.FitError, match="needs the run of each row"):
    fit.fit_law("L_N", final, bootstrap=8, resample="runs")


@pytest.mark.slow  # 2 x 16 synthetic studies, each fitted twice with a bootstrap: ~1-2 min
def test_point_resampling_undercovers_and_the_default_does_not():
  """On demo-like curves (run offsets + AR(1) noise), nominal 95% intervals of alpha_N from
  point resampling hold the truth far less often than 95%; the default (parametric) ones
  hold it about as often as they claim. The full measurement (200+ replications) is
  bench/bench_coverage.py."""
  points = coverage.measure_coverage("points", 16, bootstrap=40, seed=7)
  default = coverage.measure_coverage("parametric", 16, bootstrap=40, seed=7)
  assert points.alpha_n <= 0.75
  assert default.alpha_n >= 0.85
  assert default.alpha_n_width > 3 * points.alpha_n_width
