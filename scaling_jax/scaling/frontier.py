"""The compute-efficient frontier from L(N, S_min) and B_crit(L) (Kaplan et al. §6, App. B).

Training at the critical batch B = B_crit(L) costs C_min = 6 N B_crit(L) S_min FLOPs.
For a budget C_min, `frontier` finds numerically the N that reaches the lowest loss:
for each N on a log grid it solves L = L(N, S_min) with S_min = C_min / (6 N B_crit(L))
by bisection (one root: the right side falls as L rises), then refines the best N by
golden-section search; all vmapped over N and budgets in float64.

`closed_form` gives App. B's exact solution for the Kaplan forms
L = (N_c/N)^a_N + (S_c/S)^a_S, B_crit = B_*/L^(1/a_B):
L(C_min) = (C_c^min/C_min)^a_C with a_C = 1/(1/a_S + 1/a_B + 1/a_N),
N_opt ∝ C^(a_C/a_N), S_min ∝ C^(a_C/a_S), B ∝ C^(a_C/a_B), and the optimum trains to
(1 + a_N/a_S) times the converged loss L(N_opt, ∞).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from scaling_jax.scaling.laws import FitError, get_law
from scaling_jax.scaling.reference import KAPLAN_B_CRIT

PF_DAY = 8.64e19  # FLOPs in a petaflop/s-day


def alpha_c_min(alpha_n: float, alpha_s: float, alpha_b: float) -> float:
  """Kaplan Eq. 1.8 / B.7: alpha_C^min = 1/(1/alpha_S + 1/alpha_B + 1/alpha_N)."""
  return 1.0 / (1.0 / alpha_s + 1.0 / alpha_b + 1.0 / alpha_n)


def _params(obj: Any) -> dict[str, float]:
  """Parameters of a FitResult or a plain dict."""
  return dict(obj.params) if hasattr(obj, "params") else dict(obj)


def closed_form(l_n_s: Any, b_crit: Any = KAPLAN_B_CRIT) -> dict[str, float]:
  """App. B exponents and prefactors from fitted L(N, S_min) and B_crit(L) parameters.

  `l_n_s`: params (or FitResult) with N_c, S_c, alpha_N, alpha_S; `b_crit`: with B_star,
  alpha_B. Returns alpha_C_min, C_c_min (FLOPs), exponents p_N, p_S, p_B, p_D of
  X_opt ∝ C_min^p_X, and loss_ratio = 1 + alpha_N/alpha_S.
  """
  p, q = _params(l_n_s), _params(b_crit)
  a_n, a_s, a_b = p["alpha_N"], p["alpha_S"], q["alpha_B"]
  a_c = alpha_c_min(a_n, a_s, a_b)
  r = a_n / a_s
  log_cc = (math.log(6 * p["N_c"] * p["S_c"] * q["B_star"]) + (1 / a_n + 1 / a_s) * math.log1p(r)
            - math.log(r) / a_s)
  # Laws fitted far from the paper's regime can put C_c beyond float range: keep its log,
  # and let C_c itself be inf rather than raise (C_c^alpha stays finite through log_C_c_min).
  c_c = math.exp(log_cc) if log_cc < 709.0 else math.inf
  return {"alpha_C_min": a_c, "C_c_min": c_c, "log_C_c_min": log_cc, "p_N": a_c / a_n,
          "p_S": a_c / a_s, "p_B": a_c / a_b, "p_D": a_c / a_b + a_c / a_s, "loss_ratio": 1 + r}


def closed_form_at(l_n_s: Any, b_crit: Any, c_min: Any) -> dict[str, np.ndarray]:
  """App. B's exact optimum at budgets `c_min` (FLOPs): same keys as `frontier`."""
  p, q, cf = _params(l_n_s), _params(b_crit), closed_form(l_n_s, b_crit)
  c = np.asarray(c_min, float)
  loss = np.exp(cf["alpha_C_min"] * (cf["log_C_c_min"] - np.log(c)))  # (C_c / C)^alpha_C
  l_n = loss / cf["loss_ratio"]
  n = p["N_c"] * l_n ** (-1 / p["alpha_N"])
  s = p["S_c"] * ((cf["loss_ratio"] - 1) * l_n) ** (-1 / p["alpha_S"])
  b = q["B_star"] * loss ** (-1 / q["alpha_B"])
  return {"C_min": c, "N_opt": n, "L": loss, "S_min": s, "B": b, "D": 2 * b * s,
          "L_converged": l_n}


def _law_fn(fit: Any, name: str) -> tuple[Any, Callable, dict]:
  """(cache key, fn(params, *inputs) in jnp, params) from a FitResult, params dict or callable."""
  if callable(fit) and not hasattr(fit, "params"):
    return fit, (lambda p, *xs: fit(*xs)), {}
  law = fit.law_obj if hasattr(fit, "law_obj") else get_law(name)
  p = _params(fit)
  missing = set(law.params) - set(p)
  if missing:
    raise FitError(f"parameters of {law.name} lack {sorted(missing)}")
  return law, (lambda q, *xs: law(q, dict(zip(law.inputs, xs)))), {k: p[k] for k in law.params}


_COMPILED: dict[tuple, tuple] = {}  # (laws, settings) -> (the laws, kept alive; jitted fn)


def _compiled(key_l, loss_fn, key_b, bc_fn, lo_n, hi_n, n_grid, bisect_iters):
  """The jitted, vmapped frontier solver for one pair of laws (params are arguments)."""
  key = (id(key_l), id(key_b), lo_n, hi_n, n_grid, bisect_iters)
  if key in _COMPILED:
    return _COMPILED[key][1]

  def loss_at(pl, pb, log_n, log_c):
    """The loss reached by N = e^log_n with budget e^log_c: the root of L = L(N, S(L))."""
    n = jnp.exp(log_n)
    l_inf = loss_fn(pl, n, jnp.inf)

    def s_of(loss):
      return jnp.exp(log_c) / (6.0 * n * bc_fn(pb, loss))

    hi0 = loss_fn(pl, n, s_of(l_inf))

    def body(_, bracket):
      a, b = bracket
      m = 0.5 * (a + b)
      g = m - loss_fn(pl, n, s_of(m))
      return jnp.where(g > 0, a, m), jnp.where(g > 0, m, b)

    a, b = jax.lax.fori_loop(0, bisect_iters, body, (l_inf, hi0))
    loss = 0.5 * (a + b)
    return loss, s_of(loss)

  def optimum(pl, pb, log_c):
    log_n_G = jnp.linspace(lo_n, hi_n, n_grid)
    loss_G, _ = jax.vmap(loss_at, in_axes=(None, None, 0, None))(pl, pb, log_n_G, log_c)
    i = jnp.argmin(jnp.where(jnp.isfinite(loss_G), loss_G, jnp.inf))
    h = (hi_n - lo_n) / (n_grid - 1)
    a, b = log_n_G[i] - h, log_n_G[i] + h
    g = (math.sqrt(5) - 1) / 2

    def golden(_, ab):
      a, b = ab
      x1, x2 = b - g * (b - a), a + g * (b - a)
      f1, f2 = loss_at(pl, pb, x1, log_c)[0], loss_at(pl, pb, x2, log_c)[0]
      return jnp.where(f1 < f2, a, x1), jnp.where(f1 < f2, x2, b)

    a, b = jax.lax.fori_loop(0, 60, golden, (a, b))
    log_n = 0.5 * (a + b)
    loss, s = loss_at(pl, pb, log_n, log_c)
    edge = (i == 0) | (i == n_grid - 1)
    return jnp.exp(log_n), loss, s, bc_fn(pb, loss), edge

  fn = jax.jit(jax.vmap(optimum, in_axes=(None, None, 0)))
  _COMPILED[key] = ((key_l, key_b), fn)
  return fn


def frontier(l_n_s: Any, b_crit: Any = KAPLAN_B_CRIT, c_min: Any = None, *,
             n_range: tuple[float, float] = (1e2, 1e16), n_grid: int = 1201,
             bisect_iters: int = 100) -> dict[str, np.ndarray]:
  """Numerical compute-efficient frontier at budgets `c_min` (FLOPs, C_min = 6 N B_crit S_min).

  l_n_s: a FitResult / params of law L_N_Smin, or a callable loss(N, S_min) in jnp.
  b_crit: a FitResult / params of law B_crit, or a callable B_crit(L) in tokens (jnp).
  Returns arrays over budgets: C_min, N_opt, L, S_min, B (= B_crit at the optimum),
  D (tokens when trained at B = B_crit: 2 B_crit S_min, i.e. C = 2 C_min), and
  at_edge (the optimum hit the edge of n_range: widen it).
  """
  key_l, loss_fn, pl = _law_fn(l_n_s, "L_N_Smin")
  key_b, bc_fn, pb = _law_fn(b_crit, "B_crit")
  c = np.atleast_1d(np.asarray(c_min if c_min is not None else np.geomspace(1e15, 1e25, 11),
                               float))
  if np.any(~np.isfinite(c)) or np.any(c <= 0):
    raise FitError("compute budgets c_min must be finite and positive (FLOPs)")
  fn = _compiled(key_l, loss_fn, key_b, bc_fn, float(np.log(n_range[0])),
                 float(np.log(n_range[1])), int(n_grid), int(bisect_iters))
  with jax.enable_x64(True):
    as64 = lambda p: {k: jnp.asarray(v, jnp.float64) for k, v in p.items()}
    n, loss, s, b, edge = fn(as64(pl), as64(pb), jnp.log(jnp.asarray(c, jnp.float64)))
    n, loss, s, b, edge = (np.asarray(v) for v in (n, loss, s, b, edge))
  return {"C_min": c, "N_opt": n, "L": loss, "S_min": s, "B": b, "D": 2 * b * s,
          "at_edge": edge}


def fitted_exponents(front: Mapping[str, np.ndarray]) -> dict[str, float]:
  """Log-log slopes of a frontier: p_X of X_opt ∝ C_min^p_X and -alpha_C_min for L."""
  lc = np.log(front["C_min"])
  out = {f"p_{k[0]}": float(np.polyfit(lc, np.log(front[k]), 1)[0])
         for k in ("N_opt", "S_min", "B", "D")}
  out["alpha_C_min"] = -float(np.polyfit(lc, np.log(front["L"]), 1)[0])
  return out


def chinchilla_optimum(params: Any, compute: Any) -> dict[str, np.ndarray]:
  """Compute-optimal N, D for E + A/N^alpha + B/D^beta at C = 6 N D (Hoffmann et al. A.3)."""
  p = _params(params)
  c = np.asarray(compute, float)
  a, b = p["alpha"], p["beta"]
  g = (a * p["A"] / (b * p["B"])) ** (1 / (a + b))
  n = g * (c / 6) ** (b / (a + b))
  d = (c / 6) / n
  loss = p["E"] + p["A"] / n ** a + p["B"] / d ** b
  return {"C": c, "N_opt": n, "D_opt": d, "L": loss}
