"""Compute-efficient frontier: numerical optimum vs Kaplan App. B closed forms."""

import json
import pathlib

import numpy as np
import pytest

from scaling_jax.scaling import fit, frontier

REF = pathlib.Path(__file__).resolve().parents[1] / "scaling_jax" / "scaling" / "reference"
KAPLAN = json.loads((REF / "kaplan2020.json").read_text())
TABLE3 = {k: KAPLAN["L_N_S"]["fit_table3"][k]["value"]
          for k in ("N_c", "S_c", "alpha_N", "alpha_S")}


def test_app_b_exponents_from_the_papers_constants():
  theory = KAPLAN["compute_efficient_frontier"]["theory_predictions"]
  a_c = frontier.alpha_c_min(0.076, 0.76, 0.21)  # (alpha_N, alpha_S, alpha_B)
  assert round(a_c, 3) == theory["alpha_C_pred_eqB7"]["value"] == 0.052
  assert round(a_c / 0.076, 2) == 0.68  # N_opt exponent with 0.052 (PAPER.md)
  cf = frontier.closed_form({**TABLE3, "alpha_N": 0.076, "alpha_S": 0.76}, frontier.KAPLAN_B_CRIT)
  assert cf["alpha_C_min"] == pytest.approx(a_c)
  assert cf["loss_ratio"] == pytest.approx(1.1, abs=0.002)  # ~10% above converged (Eq. B.5)
  assert cf["p_B"] == pytest.approx(0.25, abs=0.01)  # vs 0.24 measured (Table 6)


def test_numerical_frontier_matches_closed_form():
  c = np.geomspace(1e17, 1e24, 8)
  num = frontier.frontier(TABLE3, frontier.KAPLAN_B_CRIT, c)
  exact = frontier.closed_form_at(TABLE3, frontier.KAPLAN_B_CRIT, c)
  assert not num["at_edge"].any()
  for k in ("N_opt", "L", "S_min", "B", "D"):
    np.testing.assert_allclose(num[k], exact[k], rtol=1e-5, err_msg=k)
  slopes = frontier.fitted_exponents(num)
  cf = frontier.closed_form(TABLE3, frontier.KAPLAN_B_CRIT)
  for k in ("p_N", "p_S", "p_B", "p_D", "alpha_C_min"):
    assert slopes[k] == pytest.approx(cf[k], rel=1e-4), k
  # The compute-efficient loss is (1 + alpha_N/alpha_S) x the converged L(N_opt).
  np.testing.assert_allclose(num["L"] / exact["L_converged"], cf["loss_ratio"], rtol=1e-6)


def test_frontier_from_fitted_laws_and_a_custom_b_crit():
  rng = np.random.default_rng(0)
  n, s = np.meshgrid(np.geomspace(1e5, 1e8, 6), np.geomspace(100, 1e5, 12))
  loss = ((TABLE3["N_c"] / n) ** TABLE3["alpha_N"] + (TABLE3["S_c"] / s) ** TABLE3["alpha_S"])
  tab = {"N": n.ravel(), "S_min": s.ravel(),
         "L": loss.ravel() * np.exp(0.002 * rng.standard_normal(n.size))}
  l_fit = fit.fit_law("L_N_Smin", tab, grid=1000)
  lgrid = np.linspace(2.0, 6.0, 12)
  b_fit = fit.fit_law("B_crit", {"L": lgrid, "B_crit": 2e8 / lgrid ** (1 / 0.21)}, grid=200)
  assert b_fit.params["alpha_B"] == pytest.approx(0.21, rel=1e-6)
  c = np.geomspace(1e18, 1e22, 5)
  num = frontier.frontier(l_fit, b_fit, c)
  exact = frontier.closed_form_at(l_fit, b_fit, c)
  np.testing.assert_allclose(num["N_opt"], exact["N_opt"], rtol=1e-4)
  import jax.numpy as jnp
  const = frontier.frontier(l_fit, lambda loss: jnp.full_like(loss, 1e6), c)
  np.testing.assert_allclose(const["B"], 1e6)
  slopes = frontier.fitted_exponents(const)  # constant B_crit: alpha_B -> infinity
  assert slopes["alpha_C_min"] == pytest.approx(
      1 / (1 / l_fit.params["alpha_N"] + 1 / l_fit.params["alpha_S"]), rel=1e-3)


def test_chinchilla_optimum_balances_n_and_d():
  p = {"E": 1.8172, "A": 477.83, "B": 2143.16, "alpha": 0.3473, "beta": 0.3672}
  out = frontier.chinchilla_optimum(p, np.geomspace(1e20, 1e24, 5))
  slope = np.polyfit(np.log(out["C"]), np.log(out["N_opt"]), 1)[0]
  assert slope == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]), rel=1e-9)
  np.testing.assert_allclose(6 * out["N_opt"] * out["D_opt"], out["C"])
  assert 0.45 < slope < 0.55  # N_opt ~ C^0.5, not Kaplan's 0.73


def test_closed_form_survives_a_c_c_beyond_float_range():
  """A fit far from the paper's regime (tiny alpha_S) must not overflow: C_c -> inf, L finite."""
  from scaling_jax.scaling import frontier as fr
  l_n_s = {"N_c": 5.5e17, "S_c": 7.9e3, "alpha_N": 0.042, "alpha_S": 4.5e-17}  # a real collapse
  b_crit = {"B_star": 8.8e10, "alpha_B": 0.093}
  cf = fr.closed_form(l_n_s, b_crit)
  assert cf["C_c_min"] == float("inf") and cf["log_C_c_min"] > 709
  at = fr.closed_form_at(l_n_s, b_crit, [1e18, 1e20])
  assert np.all(np.isfinite(at["L"])) and np.all(at["L"] > 0)
