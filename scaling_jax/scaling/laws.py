"""Scaling laws as pure JAX functions with named parameters, and their registry.

A `Law` maps named parameters and named input columns of a table (N, D, S_min, ...) to a
predicted output column (the loss L, or B_crit). The fitter works on log-parameters
(theta = log p), so every parameter stays positive without constraints. Adding a law is
one `register(Law(...))` call:

    register(Law("L_N", params=("N_c", "alpha_N"), inputs=("N",),
                 fn=lambda p, x: (p["N_c"] / x["N"]) ** p["alpha_N"],
                 init={"N_c": (1e6, 1e20), "alpha_N": (0.02, 1.0)}))

`init` gives, per parameter, the (low, high) range of the start grid (sampled in log space).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import jax.numpy as jnp
import numpy as np

from scaling_jax.errors import UserError
from scaling_jax.scaling.reference import KAPLAN_B_CRIT

Array = jnp.ndarray


class FitError(UserError, ValueError):
  """Bad input to the fitter or a fit that failed; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Law:
  """A scaling law: `fn(params, inputs) -> output`, all positive, evaluated elementwise."""
  name: str
  params: tuple[str, ...]
  inputs: tuple[str, ...]
  fn: Callable[[Mapping[str, Array], Mapping[str, Array]], Array]
  init: Mapping[str, tuple[float, float]]
  output: str = "L"
  doc: str = ""

  def __post_init__(self):
    missing = set(self.params) ^ set(self.init)
    if missing:
      raise ValueError(f"law {self.name!r}: init ranges must cover exactly the parameters "
                       f"{self.params}; mismatch on {sorted(missing)}")
    for k, (lo, hi) in self.init.items():
      if not 0 < lo <= hi:
        raise ValueError(f"law {self.name!r}: init range of {k} must satisfy 0 < low <= high")

  def __call__(self, params: Mapping[str, Array], inputs: Mapping[str, Array]) -> Array:
    return self.fn(params, inputs)

  def unpack(self, theta_P: Array) -> dict[str, Array]:
    """Log-parameters (last axis, in `params` order) -> named positive parameters."""
    return {k: jnp.exp(theta_P[..., i]) for i, k in enumerate(self.params)}

  def log_predict(self, theta_P: Array, inputs: Mapping[str, Array]) -> Array:
    """log of the prediction, from log-parameters (what the fitter's residuals use)."""
    return jnp.log(self.fn(self.unpack(theta_P), inputs))


LAWS: dict[str, Law] = {}


def register(law: Law) -> Law:
  """Adds a law to the registry (replacing one of the same name) and returns it."""
  LAWS[law.name] = law
  return law


def get_law(name: str | Law) -> Law:
  """The registered law called `name` (a Law passes through)."""
  if isinstance(name, Law):
    return name
  if name not in LAWS:
    raise FitError(f"unknown law {name!r}; use one of {sorted(LAWS)} "
                   "or register your own with scaling_jax.scaling.laws.register(Law(...))")
  return LAWS[name]


def _pow_ratio(c: Array, x: Array, alpha: Array) -> Array:
  """(c/x)^alpha computed in log space (c and x span many orders of magnitude)."""
  return jnp.exp(alpha * (jnp.log(c) - jnp.log(x)))


def _chinchilla(p, x):
  return (p["E"] + jnp.exp(jnp.log(p["A"]) - p["alpha"] * jnp.log(x["N"]))
          + jnp.exp(jnp.log(p["B"]) - p["beta"] * jnp.log(x["D"])))


def _kaplan_n_d(p, x):
  inner = _pow_ratio(p["N_c"], x["N"], p["alpha_N"] / p["alpha_D"]) + p["D_c"] / x["D"]
  return inner ** p["alpha_D"]


_WIDE = (1e3, 1e20)  # scale constants (N_c, D_c, C_c, S_c): many orders of magnitude
_EXP = (0.01, 1.5)  # power-law exponents

register(Law("L_N", ("N_c", "alpha_N"), ("N",),
             lambda p, x: _pow_ratio(p["N_c"], x["N"], p["alpha_N"]),
             {"N_c": _WIDE, "alpha_N": _EXP},
             doc="L(N) = (N_c/N)^alpha_N  (Kaplan Eq. 1.1; converged, data-unlimited)"))
register(Law("L_D", ("D_c", "alpha_D"), ("D",),
             lambda p, x: _pow_ratio(p["D_c"], x["D"], p["alpha_D"]),
             {"D_c": _WIDE, "alpha_D": _EXP},
             doc="L(D) = (D_c/D)^alpha_D  (Kaplan Eq. 1.2; early-stopped large model)"))
register(Law("L_C", ("C_c", "alpha_C"), ("C",),
             lambda p, x: _pow_ratio(p["C_c"], x["C"], p["alpha_C"]),
             {"C_c": (1e5, 1e40), "alpha_C": _EXP},
             doc="L(C) = (C_c/C)^alpha_C  (Kaplan Eq. 3.3; fixed batch, C in FLOPs)"))
register(Law("L_Cmin", ("C_c_min", "alpha_C_min"), ("C_min",),
             lambda p, x: _pow_ratio(p["C_c_min"], x["C_min"], p["alpha_C_min"]),
             {"C_c_min": (1e5, 1e40), "alpha_C_min": _EXP},
             doc="L(C_min) = (C_c_min/C_min)^alpha_C_min  (Kaplan Eq. 1.3; C_min in FLOPs)"))
register(Law("L_N_D", ("N_c", "D_c", "alpha_N", "alpha_D"), ("N", "D"), _kaplan_n_d,
             {"N_c": _WIDE, "D_c": _WIDE, "alpha_N": _EXP, "alpha_D": _EXP},
             doc="L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D  (Kaplan Eq. 1.5)"))
register(Law("L_N_Smin", ("N_c", "S_c", "alpha_N", "alpha_S"), ("N", "S_min"),
             lambda p, x: (_pow_ratio(p["N_c"], x["N"], p["alpha_N"])
                           + _pow_ratio(p["S_c"], x["S_min"], p["alpha_S"])),
             {"N_c": _WIDE, "S_c": (1.0, 1e8), "alpha_N": _EXP, "alpha_S": _EXP},
             doc="L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S  (Kaplan Eq. 1.6)"))
register(Law("chinchilla", ("E", "A", "B", "alpha", "beta"), ("N", "D"), _chinchilla,
             {"E": (0.37, 4.5), "A": (1.0, 1e13), "B": (1.0, 1e13),
              "alpha": (0.05, 2.0), "beta": (0.05, 2.0)},
             doc="L(N, D) = E + A/N^alpha + B/D^beta  (Hoffmann et al. 2022, approach 3)"))
register(Law("B_crit", ("B_star", "alpha_B"), ("L",),
             lambda p, x: p["B_star"] * jnp.exp(-jnp.log(x["L"]) / p["alpha_B"]),
             {"B_star": (1e2, 1e14), "alpha_B": (0.05, 2.0)}, output="B_crit",
             doc="B_crit(L) = B_* / L^(1/alpha_B)  (Kaplan Eq. 5.3; tokens)"))



# --- critical-batch adjustments (Kaplan et al. 2020 §5.1, after McCandlish et al. 2018)

def s_min(steps, batch_tokens, b_crit_tokens):
  """Minimum steps to reach the same loss: S / (1 + B_crit/B)."""
  steps, b, bc = np.asarray(steps, float), np.asarray(batch_tokens, float), np.asarray(b_crit_tokens, float)
  return steps / (1.0 + bc / b)


def c_min(compute, batch_tokens, b_crit_tokens):
  """Minimum compute to reach the same loss: C / (1 + B/B_crit)."""
  c, b, bc = np.asarray(compute, float), np.asarray(batch_tokens, float), np.asarray(b_crit_tokens, float)
  return c / (1.0 + b / bc)


def b_crit_kaplan(loss, b_star=KAPLAN_B_CRIT["B_star"], alpha_b=KAPLAN_B_CRIT["alpha_B"]):
  """Kaplan's B_crit(L) = B_* / L^(1/alpha_B) in tokens (Eq. 5.3), loss in nats; the paper's
  B_* = 2e8 and alpha_B = 0.21 unless given."""
  return b_star / np.asarray(loss, float) ** (1.0 / alpha_b)
