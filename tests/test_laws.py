"""The law registry: paper values, named parameters, log-parametrisation, extension."""

import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from scaling_jax.scaling import batch, laws

REF = pathlib.Path(__file__).resolve().parents[1] / "scaling_jax" / "scaling" / "reference"
KAPLAN = json.loads((REF / "kaplan2020.json").read_text())


def _v(*path):
  node = KAPLAN
  for k in path:
    node = node[k]
  return node["value"]


def test_registry_has_every_law_of_the_issue():
  assert {"L_N", "L_D", "L_C", "L_Cmin", "L_N_D", "L_N_Smin", "chinchilla",
          "B_crit"} <= set(laws.LAWS)
  assert laws.get_law("L_N_Smin").inputs == ("N", "S_min")
  assert laws.get_law("B_crit").output == "B_crit"


def test_unknown_law_is_a_fit_error_listing_the_known_ones():
  with pytest.raises(laws.FitError, match="unknown law 'L_X'.*L_N_Smin"):
    laws.get_law("L_X")
  assert issubclass(laws.FitError, ValueError)


def test_laws_match_the_paper_formulas():
  n, d, s = np.array([1e8, 1e9]), np.array([1e10, 1e11]), np.array([1e3, 1e5])
  l_n = laws.get_law("L_N")({"N_c": _v("single_variable_laws", "L_N", "N_c"),
                             "alpha_N": _v("single_variable_laws", "L_N", "alpha_N")}, {"N": n})
  np.testing.assert_allclose(l_n, (8.8e13 / n) ** 0.076, rtol=1e-6)
  p = {"N_c": 6.5e13, "S_c": 2.1e3, "alpha_N": 0.077, "alpha_S": 0.76}
  np.testing.assert_allclose(laws.get_law("L_N_Smin")(p, {"N": n, "S_min": s}),
                             (6.5e13 / n) ** 0.077 + (2.1e3 / s) ** 0.76, rtol=1e-6)
  p = {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103}
  np.testing.assert_allclose(laws.get_law("L_N_D")(p, {"N": n, "D": d}),
                             ((6.4e13 / n) ** (0.076 / 0.103) + 1.8e13 / d) ** 0.103, rtol=1e-6)
  p = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
  np.testing.assert_allclose(laws.get_law("chinchilla")(p, {"N": n, "D": d}),
                             1.69 + 406.4 / n ** 0.34 + 410.7 / d ** 0.28, rtol=1e-6)
  loss = np.array([2.0, 3.5])
  np.testing.assert_allclose(laws.get_law("B_crit")({"B_star": 2e8, "alpha_B": 0.21}, {"L": loss}),
                             batch.b_crit_kaplan(loss), rtol=1e-5)


def test_log_parametrisation_keeps_parameters_positive():
  law = laws.get_law("L_N")
  p = law.unpack(jnp.array([-50.0, -3.0]))
  assert float(p["N_c"]) > 0 and float(p["alpha_N"]) > 0
  np.testing.assert_allclose(float(law.log_predict(jnp.log(jnp.array([8.8e13, 0.076])),
                                                   {"N": jnp.array(1e9)})),
                             0.076 * np.log(8.8e13 / 1e9), rtol=1e-5)


def test_a_new_law_is_a_few_lines_and_init_ranges_are_checked():
  law = laws.register(laws.Law("test_exp_offset", ("L0", "k"), ("N",),
                               lambda p, x: p["L0"] + jnp.exp(-p["k"] * x["N"]),
                               {"L0": (0.1, 10.0), "k": (1e-3, 10.0)}))
  assert laws.get_law("test_exp_offset") is law
  np.testing.assert_allclose(law({"L0": 2.0, "k": 1.0}, {"N": jnp.array(0.0)}), 3.0)
  with pytest.raises(ValueError, match="init ranges"):
    laws.Law("bad", ("a", "b"), ("N",), lambda p, x: x["N"], {"a": (1.0, 2.0)})
  del laws.LAWS["test_exp_offset"]
