"""Compute-optimal allocation five ways on the same runs: Chinchilla's Approaches 1-3
(Hoffmann et al. 2022) and Approach 3's surface by variable projection beside Kaplan's
frontier (Kaplan et al. 2020, App. B).

Every run trained to a budget C = 6 N D FLOPs, with N the parameters the FLOP convention
charges (`accounting.FLOP_CONVENTIONS`: non-embedding N for "6N", N + d_model·vocab for
"6N+unembedding", F/6 for "exact"), D its tokens. Each method yields the compute-optimal
N_opt(C) = k_N C^a and D_opt(C) = C / (6 N_opt) = k_D C^b, so b = 1 - a:

- Approach 1 (`approach1`): the envelope of the learning curves, min over runs of the loss
  at each C on a log grid from the smallest to the largest budget; the run on the envelope
  gives N_opt(C); a and k_N by least squares in log-log over the grid.
- Approach 2 (`approach2`): per budget a parabola L = c0 + c1 ln N + c2 (ln N)^2 through the
  lowest-loss size and up to `window` neighbours on each side; its vertex is N_opt(C). The power
  law is a weighted least-squares fit of ln N_opt on ln C, each budget weighted by
  1/se^2, se the vertex's standard error (delta method, floored at a third of the ln N step
  between the sizes the parabola went through: `SE_FLOOR_STEPS`). Budgets
  with no minimum inside their grid are left out; off-centre or narrow grids get a
  warning (an off-centre grid biases the vertex towards the sampled side).
- Approach 3 (`approach3`): E + A/N^alpha + B/D^beta fitted to the final losses with
  `fit.fit_law` (Huber on log residuals, L-BFGS); a = beta/(alpha + beta).
- VPNLS (`vpnls`): the same surface by variable projection: at fixed (alpha, beta) the
  loss is linear in (E, A, B), which non-negative least squares gives exactly, so only the
  two exponents are searched (a grid, then Nelder-Mead); least squares on the loss. The
  five-parameter fit of Approach 3 has local minima and trades E against A and B; this one
  cannot land in a local minimum of the linear parameters.
- Kaplan (`kaplan`): L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S fitted to the
  learning-curve points, S_min = S / (1 + B_crit(L)/B), and the frontier of
  `frontier.closed_form` (or `frontier.frontier` for a callable B_crit);
  a = alpha_C_min/alpha_N. B_crit(L) is a parameter (default Kaplan's Eq. 5.3; any law of
  `scaling.bcrit.choose_b_crit`, (B_star, alpha_B) or a callable). Runs at
  B << B_crit spend C ~ C_min, so N_opt(C) is read off the frontier at C_min = C.

Intervals (`bootstrap`) resample whole runs with replacement within each budget and refit.

Disagreement (`compute_waste`): following method X's allocation N_X(C) when method Y is
right wastes the fraction W(X|Y) = C / C_eq - 1 of the budget C, where C_eq is the
compute with which Y's optimal allocation reaches the loss X's allocation reaches with C.
The loss surface is Approach 3's fitted L(N, D) (the only method that yields a loss for
any allocation) re-centred on Y: at budget C, Y's surface is L3 shifted along ln N so its
minimum lies at N_Y(C). Then X's loss at C is L3(r N3(C), C/(6 r N3(C))) with
r = N_X(C)/N_Y(C) and N3(C) Approach 3's optimum, and C_eq solves L3*(C_eq) = that loss,
L3*(C) = E + K (C/6)^(-alpha beta/(alpha + beta)) being L3 along its own optimum. W >= 0,
and W(X|X) = 0.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from typing import Any, Callable, Mapping, Sequence

import ml_collections
import numpy as np
from scipy import optimize

from scaling_jax import accounting
from scaling_jax.scaling import fit as fit_lib
from scaling_jax.scaling import frontier
from scaling_jax.scaling import reference
from scaling_jax.scaling import runs as runs_lib
from scaling_jax.scaling.laws import FitError

METHODS = ("approach1", "approach2", "approach3", "vpnls", "kaplan")
LABELS = {"approach1": "Approach 1 (envelope)", "approach2": "Approach 2 (IsoFLOP parabolas)",
          "approach3": "Approach 3 (parametric L(N, D))",
          "vpnls": "VPNLS (L(N, D) by variable projection)",
          "kaplan": "Kaplan (L(N, S_min) + B_crit)"}
PUBLISHED_A = {"kaplan2020": 0.73, "hoffmann2022": 0.50}  # N_opt ∝ C^a as published
PUBLISHED_LABELS = {"kaplan2020": "Kaplan et al. 2020", "hoffmann2022": "Hoffmann et al. 2022"}


# ------------------------------------------------------------------------------ data


@dataclasses.dataclass
class IsoflopRuns:
  """One row per run (arrays of length R) and, optionally, its learning curve.

  N: parameters under the FLOP convention (C = 6 N D); D: tokens trained; loss: the final
  loss; budget: the compute the run trained to (6 N D at its last step, or the budget of
  its isoFLOP group); batch: tokens per step (Kaplan's S_min); curves: per run, (tokens_K,
  loss_K) at its evaluations (Approach 1 and Kaplan need them).
  """
  run: np.ndarray
  N: np.ndarray
  D: np.ndarray
  loss: np.ndarray
  budget: np.ndarray
  batch: np.ndarray | None = None
  curves: list[tuple[np.ndarray, np.ndarray]] | None = None

  def __post_init__(self):
    self.run = np.asarray(self.run, dtype=object)
    for k in ("N", "D", "loss", "budget"):
      setattr(self, k, np.asarray(getattr(self, k), float))
    if self.batch is not None:
      self.batch = np.asarray(self.batch, float)
    n = len(self.run)
    lengths = {k: len(getattr(self, k)) for k in ("N", "D", "loss", "budget")}
    if any(v != n for v in lengths.values()) or (self.curves is not None
                                                  and len(self.curves) != n):
      raise FitError(f"IsoflopRuns columns must all have one entry per run ({n}); got {lengths}")
    bad = ~(np.isfinite(self.N) & np.isfinite(self.D) & np.isfinite(self.loss)
            & (self.N > 0) & (self.D > 0) & (self.loss > 0) & (self.budget > 0))
    if bad.any():
      raise FitError(f"runs {list(self.run[bad])[:5]} have non-finite or non-positive N, D, "
                     "loss or budget; drop them (unfinished or diverged runs)")

  def __len__(self) -> int:
    return len(self.run)

  @property
  def C(self) -> np.ndarray:
    return 6.0 * self.N * self.D

  def to_dict(self) -> dict[str, Any]:
    """Plain lists (JSON): what `from_dict` reads back."""
    out = {k: getattr(self, k).tolist() for k in ("N", "D", "loss", "budget")}
    out["run"] = [str(r) for r in self.run]
    if self.batch is not None:
      out["batch"] = self.batch.tolist()
    if self.curves is not None:
      out["curves"] = [[np.asarray(t).tolist(), np.asarray(v).tolist()] for t, v in self.curves]
    return out

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "IsoflopRuns":
    curves = d.get("curves")
    return cls(run=d["run"], N=d["N"], D=d["D"], loss=d["loss"], budget=d["budget"],
               batch=d.get("batch"),
               curves=None if curves is None else [(np.asarray(t, float), np.asarray(v, float))
                                                   for t, v in curves])

  def groups(self, tolerance: float = 0.1) -> np.ndarray:
    """Budget group of each run: budgets within a factor (1 + tolerance) share a group."""
    return budget_groups(self.budget, tolerance)


def budget_groups(budget: Any, tolerance: float = 0.1) -> np.ndarray:
  """Integer group ids (0 = smallest budget) joining budgets within (1 + tolerance)."""
  lb = np.log(np.asarray(budget, float))
  order = np.argsort(lb)
  gid = np.empty(len(lb), int)
  g = 0
  for i, j in enumerate(order):
    if i and lb[j] - lb[order[i - 1]] > math.log1p(tolerance):
      g += 1
    gid[j] = g
  return gid


# ------------------------------------------------------------------------------ results


@dataclasses.dataclass
class Allocation:
  """A method's compute-optimal allocation N_opt = k_N C^a, D_opt = C/(6 N_opt) = k_D C^b."""
  method: str
  a: float
  k_N: float
  C: np.ndarray  # the points the power law was fitted to
  N_opt: np.ndarray
  a_interval: tuple[float, float] | None = None
  b_interval: tuple[float, float] | None = None
  bootstrap: int = 0  # resamples asked for
  bootstrap_ok: int = 0  # resamples that gave an exponent
  params: dict[str, float] = dataclasses.field(default_factory=dict)  # the method's fit
  warnings: list[str] = dataclasses.field(default_factory=list)

  @property
  def b(self) -> float:
    return 1.0 - self.a

  @property
  def k_D(self) -> float:
    return 1.0 / (6.0 * self.k_N)

  def n_opt(self, compute: Any) -> np.ndarray:
    return self.k_N * np.asarray(compute, float) ** self.a

  def d_opt(self, compute: Any) -> np.ndarray:
    c = np.asarray(compute, float)
    return c / (6.0 * self.n_opt(c))

  def to_dict(self) -> dict[str, Any]:
    return {"method": self.method, "label": LABELS.get(self.method, self.method),
            "a": self.a, "b": self.b, "k_N": self.k_N, "k_D": self.k_D,
            "a_interval": self.a_interval, "b_interval": self.b_interval,
            "bootstrap": self.bootstrap, "bootstrap_ok": self.bootstrap_ok,
            "C": self.C.tolist(), "N_opt": self.N_opt.tolist(), "params": self.params,
            "warnings": self.warnings}


@dataclasses.dataclass
class Profile:
  """Approach 2's parabola L = c0 + c1 u + c2 u^2 (u = ln N) on one budget's grid."""
  C: float
  N_opt: float  # the vertex (NaN without a minimum)
  L_opt: float
  coef: tuple[float, float, float]  # (c0, c1, c2)
  se_log_n: float  # standard error of ln N_opt (delta method; inf if undetermined)
  position: float  # the vertex's place in the grid's ln N span (0 = smallest N, 1 = largest)
  N: np.ndarray  # the grid (sorted) and its losses
  L: np.ndarray
  used: np.ndarray  # which grid points the parabola went through
  usable: bool
  warnings: list[str]
  step_log_n: float = math.nan  # mean ln N step between the sizes the parabola went through


# ------------------------------------------------------------------------------ helpers


def power_law(x: Any, y: Any, weights: Any = None) -> tuple[float, float]:
  """(k, p) of y = k x^p by (weighted) least squares on ln y vs ln x."""
  lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
  if len(np.unique(lx)) < 2:
    raise FitError("a power law needs at least 2 distinct x values")
  w = None if weights is None else np.sqrt(np.asarray(weights, float))
  p, lk = np.polyfit(lx, ly, 1, w=w)
  return float(math.exp(lk)), float(p)


def _percentile_interval(samples: Sequence[float], level: float) -> tuple[float, float] | None:
  s = np.asarray([v for v in samples if np.isfinite(v)], float)
  if len(s) < 2:
    return None
  q = 100 * (1 - level) / 2
  lo, hi = np.percentile(s, [q, 100 - q])
  return float(lo), float(hi)


def _active(data: IsoflopRuns, weights: Any) -> np.ndarray:
  return np.ones(len(data)) if weights is None else np.asarray(weights, float)


# ------------------------------------------------------------------------------ approach 1


def lower_envelope(log_c_curves: Sequence[np.ndarray], loss_curves: Sequence[np.ndarray],
                   grid_G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(lowest loss, index of the curve holding it) at each ln C of `grid_G`: each curve
  (ln C, loss) is interpolated linearly in ln C and used only inside its own range; a curve
  of fewer than 2 points is left out, and a grid point no curve covers gets loss inf."""
  loss_RG = np.full((len(loss_curves), grid_G.size), np.inf)
  for i, (lc, loss) in enumerate(zip(log_c_curves, loss_curves)):
    lc = np.asarray(lc, float)
    if lc.size < 2:
      continue
    inside = (grid_G >= lc.min()) & (grid_G <= lc.max())
    loss_RG[i, inside] = np.interp(grid_G[inside], lc, np.asarray(loss, float))
  return loss_RG.min(axis=0), loss_RG.argmin(axis=0)


def envelope(data: IsoflopRuns, weights: Any = None, n_grid: int = 60,
             c_range: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
  """min over runs (weight > 0) of the loss at each C of a log grid (default: smallest to
  largest budget); each curve is interpolated linearly in ln C and used only inside its
  own range. Returns C, L, N_opt (the run on the envelope) and run (its index)."""
  if data.curves is None:
    raise FitError("Approach 1 needs learning curves (IsoflopRuns.curves); the runs have none")
  w = _active(data, weights)
  lo, hi = c_range or (data.budget[w > 0].min(), data.budget[w > 0].max())
  grid = np.linspace(math.log(lo), math.log(hi), n_grid)
  log_c = [np.log(6.0 * data.N[i] * np.asarray(tokens, float)) if w[i] > 0 else np.zeros(0)
           for i, (tokens, _) in enumerate(data.curves)]
  loss_G, best_G = lower_envelope(log_c, [loss for _, loss in data.curves], grid)
  covered = np.isfinite(loss_G)
  return {"C": np.exp(grid[covered]), "L": loss_G[covered],
          "N_opt": data.N[best_G[covered]], "run": best_G[covered]}


def approach1(data: IsoflopRuns, weights: Any = None, n_grid: int = 60) -> Allocation:
  env = envelope(data, weights, n_grid)
  if len(np.unique(env["N_opt"])) < 2:
    raise FitError("one size holds the whole envelope; Approach 1 needs the optimum to move "
                   "across sizes (widen the budgets or the size ladder)")
  k, a = power_law(env["C"], env["N_opt"])
  return Allocation("approach1", a, k, env["C"], env["N_opt"])


# ------------------------------------------------------------------------------ approach 2


def fit_profile(N: Any, L: Any, C: float, window: int = 2, weights: Any = None,
                min_span: float = 4.0, max_se: float = 0.5) -> Profile:
  """Approach 2's parabola on one budget: through the lowest-loss size and up to `window`
  neighbours on each side, least squares in u = ln N (weights: run multiplicities).

  Warnings: fewer than 3 sizes; no minimum (the parabola opens downwards); off centre (the
  lowest loss at an end of the grid, or the vertex outside it: unusable; or the vertex in
  the outer quarter of the grid's span); too narrow (the grid spans less than `min_span` in
  N, or the vertex's standard error exceeds `max_se` in ln N).
  """
  N, L = np.asarray(N, float), np.asarray(L, float)
  w = np.ones_like(N) if weights is None else np.asarray(weights, float)
  keep = w > 0
  N, L, w = N[keep], L[keep], w[keep]
  order = np.argsort(N)
  N, L, w = N[order], L[order], w[order]
  u = np.log(N)
  warnings: list[str] = []
  nan = math.nan
  if len(np.unique(u)) < 3:
    return Profile(C, nan, nan, (nan, nan, nan), math.inf, nan, N, L, np.zeros(len(N), bool),
                   False, [f"C={C:.3g}: {len(np.unique(u))} sizes; a parabola needs >= 3"])
  i = int(np.argmin(L))
  lo, hi = max(0, i - window), min(len(u), i + window + 1)
  while len(np.unique(u[lo:hi])) < 3:  # widen towards the side that has points
    lo, hi = (lo - 1, hi) if lo > 0 else (lo, hi + 1)
  used = np.zeros(len(u), bool)
  used[lo:hi] = True
  X = np.stack([np.ones(hi - lo), u[lo:hi], u[lo:hi] ** 2], axis=1)
  sw = np.sqrt(w[lo:hi])
  coef, *_ = np.linalg.lstsq(X * sw[:, None], L[lo:hi] * sw, rcond=None)
  c0, c1, c2 = (float(c) for c in coef)
  span = u[-1] - u[0]
  step = float(np.diff(np.unique(u[lo:hi])).mean())
  if span < math.log(min_span):
    warnings.append(f"C={C:.3g}: too narrow: the grid spans {math.exp(span):.3g}x in N "
                    f"(< {min_span:g}x); add sizes on both sides")
  if c2 <= 0:
    warnings.append(f"C={C:.3g}: no minimum: the losses do not curve upwards around the "
                    "lowest one; widen the grid")
    return Profile(C, nan, nan, (c0, c1, c2), math.inf, nan, N, L, used, False, warnings, step)
  v = -c1 / (2 * c2)
  resid = (L[lo:hi] - X @ coef) * sw
  dof = max(int(round(w[lo:hi].sum())) - 3, 1)
  s2 = float(resid @ resid) / dof
  cov = s2 * np.linalg.pinv((X * sw[:, None]).T @ (X * sw[:, None]))
  grad = np.array([0.0, -1 / (2 * c2), c1 / (2 * c2 ** 2)])
  se = float(math.sqrt(max(grad @ cov @ grad, 0.0)))
  position = (v - u[0]) / span if span > 0 else nan
  usable = u[0] <= v <= u[-1]
  if i in (0, len(u) - 1) or not usable:
    side = "smallest" if (v < u[0] or i == 0) else "largest"
    warnings.append(f"C={C:.3g}: off centre: the minimum is at the {side} size of the grid"
                    + ("" if usable else " and the vertex outside it (left out)")
                    + f"; add sizes {'below' if side == 'smallest' else 'above'}")
  elif not 0.25 <= position <= 0.75:
    warnings.append(f"C={C:.3g}: off centre: the vertex sits at {position:.0%} of the grid's "
                    "ln N span, so the parabola leans on one side; re-centre the grid")
  if se > max_se:
    warnings.append(f"C={C:.3g}: too narrow or noisy: the vertex's standard error is "
                    f"{se:.2f} in ln N (> {max_se:g}); widen the grid or add seeds")
  l_opt = c0 + c1 * v + c2 * v * v
  return Profile(C, math.exp(v), l_opt, (c0, c1, c2), se, position, N, L, used, usable,
                 warnings, step)


def profiles(data: IsoflopRuns, weights: Any = None, window: int = 2,
             tolerance: float = 0.1) -> list[Profile]:
  """One `fit_profile` per budget group (the group's budget: its geometric mean)."""
  w = _active(data, weights)
  gid = data.groups(tolerance)
  out = []
  for g in np.unique(gid):
    m = gid == g
    out.append(fit_profile(data.N[m], data.loss[m], float(np.exp(np.log(data.budget[m]).mean())),
                           window, w[m]))
  return out


# The floor on a vertex's standard error, in ln N steps of the sizes its parabola went
# through. A parabola through 5 sizes has 2 residual degrees of freedom, so its delta-method
# standard error can come out near zero by chance and one budget would then carry the whole
# power law. Porian et al. (2024) floor theirs the same way: the standard deviation of
# ln N* over seed-noise resamples is raised to at least min_std_factor = 0.33 times the mean
# ln N step of the budget's grid (their analysis.py, which interpolates over the whole grid;
# the step here is that of the sizes the parabola uses). On their isoFLOP points the fitted
# exponent is flat for factors 0.2-0.5 and inside all four published intervals; without a
# floor a single budget takes over and the Kaplan reproduction misses (tests/test_isoflop.py).
SE_FLOOR_STEPS = 1 / 3


def approach2(data: IsoflopRuns, weights: Any = None, window: int = 2,
              se_floor_steps: float = SE_FLOOR_STEPS, weighted: bool = True) -> Allocation:
  """Approach 2's power law: ln N_opt on ln C over the budgets whose vertex lies inside
  their grid, each weighted by 1/se^2 (`weighted`), se the vertex's standard error floored
  at `se_floor_steps` ln N steps of its parabola's sizes (see SE_FLOOR_STEPS)."""
  profs = profiles(data, weights, window)
  ok = [p for p in profs if p.usable]
  warnings = [w for p in profs for w in p.warnings]
  if len(ok) < 2:
    raise FitError(f"only {len(ok)} budget(s) have a minimum inside their grid; Approach 2 "
                   "needs >= 2 (re-centre the size ladders: " + "; ".join(warnings[:2]) + ")")
  c = np.array([p.C for p in ok])
  n = np.array([p.N_opt for p in ok])
  se = np.maximum(np.array([p.se_log_n for p in ok]),
                  se_floor_steps * np.array([p.step_log_n for p in ok]))
  k, a = power_law(c, n, 1 / se ** 2 if weighted else None)
  return Allocation("approach2", a, k, c, n, warnings=warnings)


# ------------------------------------------------------------------------------ approach 3


def fit_chinchilla(data: IsoflopRuns, weights: Any = None, start: Mapping[str, float] | None
                   = None) -> fit_lib.FitResult:
  """E + A/N^alpha + B/D^beta on the runs' final losses (fit_law; `start`: one warm start)."""
  table = {"N": data.N, "D": data.D, "L": data.loss}
  kw: dict[str, Any] = {}
  if start is not None:
    kw = {"grid": np.array([[start[k] for k in ("E", "A", "B", "alpha", "beta")]]),
          "top_k": 1}
  return fit_lib.fit_law("chinchilla", table, weights=weights, require_convergence=False,
                         dedupe=False, **kw)


def surface_allocation(method: str, params: Mapping[str, float], budgets: Any,
                       warnings: list[str]) -> Allocation:
  """The allocation of a fitted E + A/N^alpha + B/D^beta: N_opt ∝ C^(beta/(alpha+beta))."""
  p = dict(params)
  c = np.unique(np.asarray(budgets, float))
  opt = frontier.chinchilla_optimum(p, c)
  a = p["beta"] / (p["alpha"] + p["beta"])
  k = float(opt["N_opt"][0] / c[0] ** a)
  return Allocation(method, a, k, c, opt["N_opt"], params=p, warnings=warnings)


def approach3(data: IsoflopRuns, weights: Any = None,
              start: Mapping[str, float] | None = None) -> Allocation:
  res = fit_chinchilla(data, weights, start)
  warnings = list(res.warnings) + ([] if res.converged else ["Approach 3 fit did not converge"])
  return surface_allocation("approach3", res.params, data.budget, warnings)


# ------------------------------------------------------------------------------ VPNLS


VPNLS_EXPONENTS = (0.02, 1.5)  # the (alpha, beta) box searched


def linear_terms(N: Any, D: Any, L: Any, alpha: float, beta: float, weights: Any = None
                 ) -> tuple[dict[str, float], float]:
  """E, A, B >= 0 of E + A/N^alpha + B/D^beta at fixed exponents by non-negative least
  squares (weighted by run multiplicities), and the weighted sum of squared residuals."""
  N, D, L = (np.asarray(x, float) for x in (N, D, L))
  sw = np.sqrt(np.ones_like(L) if weights is None else np.asarray(weights, float))
  X = np.stack([np.ones_like(N), N ** -alpha, D ** -beta], axis=1)
  scale = X.max(axis=0)  # unit columns: N^-alpha can be ~1e-4 next to the constant
  coef, rnorm = optimize.nnls(X / scale * sw[:, None], L * sw)
  e, a, b = coef / scale
  return {"E": float(e), "A": float(a), "B": float(b), "alpha": alpha, "beta": beta}, rnorm ** 2


def fit_vpnls(N: Any, D: Any, L: Any, weights: Any = None, grid: int = 30,
              start: Mapping[str, float] | None = None) -> tuple[dict[str, float], list[str]]:
  """E + A/N^alpha + B/D^beta by variable projection: (alpha, beta) minimise the squared
  error left after `linear_terms`, searched on a grid x grid lattice over VPNLS_EXPONENTS
  (or from `start`) and refined by bounded Nelder-Mead. Returns the parameters and warnings."""
  lo, hi = VPNLS_EXPONENTS

  def rss(x):
    return linear_terms(N, D, L, float(x[0]), float(x[1]), weights)[1]

  if start is not None:
    x0 = np.array([start["alpha"], start["beta"]], float)
  else:
    axis = np.linspace(lo, hi, grid)
    x0 = min(((a, b) for a in axis for b in axis), key=rss)
  res = optimize.minimize(rss, x0, method="Nelder-Mead", bounds=[(lo, hi), (lo, hi)],
                          options={"xatol": 1e-5, "fatol": 1e-12, "maxiter": 2000})
  params, _ = linear_terms(N, D, L, float(res.x[0]), float(res.x[1]), weights)
  warnings = []
  for k in ("alpha", "beta"):
    if min(params[k] - lo, hi - params[k]) < 1e-3:
      warnings.append(f"VPNLS: {k} = {params[k]:.3g} sits on the edge of the searched "
                      f"{VPNLS_EXPONENTS}; the surface is not determined by these runs")
  if params["A"] <= 0 or params["B"] <= 0:
    raise FitError(f"VPNLS put {'A' if params['A'] <= 0 else 'B'} at 0: the final losses do not "
                   "fall with both N and D; add sizes or budgets")
  return params, warnings


def vpnls(data: IsoflopRuns, weights: Any = None,
          start: Mapping[str, float] | None = None) -> Allocation:
  """The allocation of `fit_vpnls` on the runs' final losses."""
  w = _active(data, weights)
  m = w > 0
  params, warnings = fit_vpnls(data.N[m], data.D[m], data.loss[m], w[m], start=start)
  return surface_allocation("vpnls", params, data.budget, warnings)


# ------------------------------------------------------------------------------ Kaplan


def _b_crit_params(b_crit: Any) -> dict[str, float] | None:
  """(B_star, alpha_B) of a B_crit law given as parameters, a FitResult or a law object
  with `.params` (scaling.bcrit.BCritLaw); None for a plain callable."""
  params = b_crit.params if hasattr(b_crit, "params") else (
      None if callable(b_crit) else b_crit)
  return None if params is None else dict(params)


def _b_crit_of(b_crit: Any) -> Callable[[np.ndarray], np.ndarray]:
  """B_crit(L) in tokens from a callable or B_crit-law parameters (B_star, alpha_B)."""
  q = _b_crit_params(b_crit)
  if q is None:
    return lambda loss: np.asarray(b_crit(np.asarray(loss, float)), float)
  return lambda loss: q["B_star"] * np.asarray(loss, float) ** (-1.0 / q["alpha_B"])


def learning_points(data: IsoflopRuns, b_crit: Any = reference.KAPLAN_B_CRIT,
                    weights: Any = None, skip: float = 0.2) -> dict[str, np.ndarray]:
  """Kaplan's table from the curves: N, S = tokens/batch, S_min = S/(1 + B_crit(L)/B), L,
  per-point weight (its run's); points before `skip` of a run's tokens (warmup) left out."""
  if data.curves is None or data.batch is None:
    raise FitError("Kaplan's frontier needs learning curves and the batch size of each run")
  w = _active(data, weights)
  bc = _b_crit_of(b_crit)
  cols: dict[str, list] = {"N": [], "S": [], "S_min": [], "L": [], "w": []}
  for i, (tokens, loss) in enumerate(data.curves):
    tokens, loss = np.asarray(tokens, float), np.asarray(loss, float)
    m = (tokens >= skip * data.D[i]) & np.isfinite(loss) & (tokens > 0)
    s = tokens[m] / data.batch[i]
    cols["N"] += [data.N[i]] * int(m.sum())
    cols["S"] += list(s)
    cols["S_min"] += list(s / (1.0 + bc(loss[m]) / data.batch[i]))
    cols["L"] += list(loss[m])
    cols["w"] += [w[i]] * int(m.sum())
  return {k: np.asarray(v, float) for k, v in cols.items()}


def kaplan(data: IsoflopRuns, weights: Any = None, b_crit: Any = reference.KAPLAN_B_CRIT,
           start: Mapping[str, float] | None = None) -> Allocation:
  """Kaplan's frontier: L(N, S_min) fitted to the curves, then N_opt(C_min) with B_crit."""
  tab = learning_points(data, b_crit, weights)
  kw: dict[str, Any] = {}
  if start is not None:
    kw = {"grid": np.array([[start[k] for k in ("N_c", "S_c", "alpha_N", "alpha_S")]]),
          "top_k": 1}
  res = fit_lib.fit_law("L_N_Smin", {k: tab[k] for k in ("N", "S_min", "L")},
                        weights=tab["w"], require_convergence=False, dedupe=False, **kw)
  c = np.unique(data.budget)
  q = _b_crit_params(b_crit)
  if q is None and hasattr(b_crit, "params"):
    raise FitError("Kaplan's frontier needs a B_crit(L) law with parameters (B_star, alpha_B) "
                   "or a plain callable in jax.numpy; this law has neither (e.g. 'none')")
  if q is None:
    front = frontier.frontier(res, b_crit, c)
    k, a = power_law(front["C_min"], front["N_opt"])
    n = front["N_opt"]
  else:
    cf = frontier.closed_form(res, q)
    n = frontier.closed_form_at(res, q, c)["N_opt"]
    a = cf["p_N"]
    k = float(n[0] / c[0] ** a)
  warnings = list(res.warnings) + ([] if res.converged else ["L(N, S_min) fit did not converge"])
  return Allocation("kaplan", float(a), float(k), c, np.asarray(n, float),
                    params=dict(res.params), warnings=warnings)


# ------------------------------------------------------------------------------ bootstrap


def resample_weights(groups: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
  """(n_boot, R) run multiplicities: within each budget group, as many runs drawn with
  replacement as the group has (whole runs, stratified by budget)."""
  rng = np.random.default_rng(seed)
  out = np.zeros((n_boot, len(groups)))
  for g in np.unique(groups):
    idx = np.flatnonzero(groups == g)
    for b in range(n_boot):
      np.add.at(out[b], rng.choice(idx, size=len(idx)), 1.0)
  return out


def bootstrap(method: Callable[..., Allocation], data: IsoflopRuns, n_boot: int = 200,
              seed: int = 0, level: float = 0.95, **kwargs) -> Allocation:
  """`method` on the runs, then on n_boot run resamples: percentile intervals of a and b.
  Fitted methods (approach3, vpnls, kaplan) warm-start each refit at the full fit."""
  full = method(data, **kwargs)
  if n_boot <= 0:
    return full
  if method in (approach3, vpnls, kaplan):
    kwargs = {**kwargs, "start": full.params}
  exps = []
  for w in resample_weights(data.groups(), n_boot, seed):
    try:
      exps.append(method(data, weights=w, **kwargs).a)
    except FitError:
      exps.append(math.nan)
  full.bootstrap, full.bootstrap_ok = n_boot, int(np.isfinite(exps).sum())
  full.a_interval = _percentile_interval(exps, level)
  if full.a_interval is not None:
    full.b_interval = (1 - full.a_interval[1], 1 - full.a_interval[0])
  return full


# ------------------------------------------------------------------------------ comparison


def optimal_loss(params: Mapping[str, float], compute: Any) -> np.ndarray:
  """L3*(C): E + A/N^alpha + B/D^beta along its own optimum at C = 6 N D."""
  return frontier.chinchilla_optimum(params, compute)["L"]


def compute_for_loss(params: Mapping[str, float], loss: Any) -> np.ndarray:
  """The inverse of `optimal_loss`: C with L3*(C) = loss (inf at or below E)."""
  p = params
  a, b = p["alpha"], p["beta"]
  g = (a * p["A"] / (b * p["B"])) ** (1 / (a + b))
  k = p["A"] * g ** (-a) + p["B"] * g ** b
  excess = np.asarray(loss, float) - p["E"]
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(excess > 0, 6.0 * (excess / k) ** (-(a + b) / (a * b)), np.inf)


def compute_waste(allocations: Mapping[str, Allocation], surface: Mapping[str, float],
                  compute: float) -> dict[str, dict[str, float]]:
  """W[X][Y] = C / C_eq - 1: the fraction of `compute` wasted by following X's N_opt where
  Y's is right (module docstring), on Approach 3's surface `surface` re-centred on Y."""
  c = float(compute)
  n3 = float(frontier.chinchilla_optimum(surface, c)["N_opt"])
  p = dict(surface)
  out: dict[str, dict[str, float]] = {}
  for x, ax in allocations.items():
    out[x] = {}
    for y, ay in allocations.items():
      n = n3 * float(ax.n_opt(c)) / float(ay.n_opt(c))
      d = c / (6.0 * n)
      loss = p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]
      out[x][y] = max(float(c / compute_for_loss(p, loss) - 1.0), 0.0)  # 0 up to round-off
  return out


# ------------------------------------------------------------------------------ all methods


@dataclasses.dataclass
class IsoflopAnalysis:
  """Every method on one set of runs, Approach 2's profiles and the waste matrix."""
  allocations: dict[str, Allocation]
  profiles: list[Profile]
  waste: dict[str, dict[str, float]] | None  # W[X][Y] at compute_ref
  compute_ref: float
  errors: dict[str, str]  # methods that could not be fitted, and why
  warnings: list[str]

  def table(self) -> str:
    """Text table: method, a [interval], b [interval], beside Kaplan's 0.73 and
    Chinchilla's 0.50."""
    def iv(t):
      return f"[{t[0]:.3f}, {t[1]:.3f}]" if t else "-"
    lines = [f"{'method':<36} {'a (N_opt ~ C^a)':>16} {'95% interval':>18} "
             f"{'b (D_opt ~ C^b)':>16} {'95% interval':>18}"]
    for m, al in self.allocations.items():
      lines.append(f"{LABELS.get(m, m):<36} {al.a:>16.3f} {iv(al.a_interval):>18} "
                   f"{al.b:>16.3f} {iv(al.b_interval):>18}")
    for m, why in self.errors.items():
      lines.append(f"{LABELS.get(m, m):<36} {'not fitted: ' + why[:80]}")
    for key, a in PUBLISHED_A.items():
      lines.append(f"{PUBLISHED_LABELS[key] + ' (published)':<36} {a:>16.2f} {'':>18} "
                   f"{1 - a:>16.2f}")
    return "\n".join(lines)

  def to_dict(self) -> dict[str, Any]:
    return {"allocations": {m: a.to_dict() for m, a in self.allocations.items()},
            "profiles": [{"C": p.C, "N_opt": p.N_opt, "L_opt": p.L_opt, "se_log_n": p.se_log_n,
                          "position": p.position, "usable": p.usable, "warnings": p.warnings}
                         for p in self.profiles],
            "waste": self.waste, "compute_ref": self.compute_ref, "errors": self.errors,
            "warnings": self.warnings, "published_a": PUBLISHED_A}


def analyze(data: IsoflopRuns, n_boot: int = 200, seed: int = 0,
            b_crit: Any = reference.KAPLAN_B_CRIT, window: int = 2,
            methods: Sequence[str] = METHODS, compute_ref: float | None = None
            ) -> IsoflopAnalysis:
  """Fits every method in `methods` (with `n_boot` run resamples each) and compares them.

  A method that cannot be fitted on these runs (no curves, too few budgets) is listed in
  `errors` instead. The waste matrix needs Approach 3 (its surface) and is computed at
  `compute_ref` (default: the largest budget).
  """
  fns: dict[str, tuple[Callable[..., Allocation], dict]] = {
      "approach1": (approach1, {}), "approach2": (approach2, {"window": window}),
      "approach3": (approach3, {}), "vpnls": (vpnls, {}),
      "kaplan": (kaplan, {"b_crit": b_crit})}
  unknown = set(methods) - set(fns)
  if unknown:
    raise FitError(f"unknown methods {sorted(unknown)}; use some of {METHODS}")
  allocations: dict[str, Allocation] = {}
  errors: dict[str, str] = {}
  for m in methods:
    fn, kw = fns[m]
    try:
      allocations[m] = bootstrap(fn, data, n_boot, seed, **kw)
    except FitError as e:
      errors[m] = str(e)
  c_ref = float(compute_ref if compute_ref is not None else data.budget.max())
  waste = (compute_waste(allocations, allocations["approach3"].params, c_ref)
           if "approach3" in allocations else None)
  profs = profiles(data, window=window)
  warnings = [w for a in allocations.values() for w in a.warnings]
  return IsoflopAnalysis(allocations, profs, waste, c_ref, errors,
                         list(dict.fromkeys(warnings)))


# ------------------------------------------------------------------------------ run directories


def from_runs(runs: Sequence[runs_lib.Run], convention: str) -> IsoflopRuns:
  """Finished Transformer runs as IsoflopRuns: N = (training FLOPs per token under
  `convention`, `accounting.FLOP_CONVENTIONS`) / 6, D = tokens at the last evaluation, the
  final eval loss and the eval curve; the budget is 6 N D."""
  rows = []
  for r in runs:
    if r.status != "finished" or r.arch != "transformer":
      continue
    steps, loss = r.series()
    if not len(steps):
      continue
    try:
      n = accounting.flops_per_token(ml_collections.ConfigDict(r.model), convention) / 6.0
    except AttributeError as e:  # a config.json without the model's shape
      raise FitError(f"run {r.name}: its config has no complete model shape ({e}); the FLOPs "
                     "per token cannot be counted") from None
    tokens = steps * r.batch_tokens
    rows.append((r.name, n, tokens[-1], loss[-1], r.batch_tokens, (tokens, loss)))
  if len(rows) < 3:
    raise FitError(f"{len(rows)} finished Transformer runs with eval losses; an IsoFLOP "
                   "analysis needs >= 3 (finish the sweep first)")
  name, n, d, loss, batch, curves = zip(*rows)
  n, d = np.array(n), np.array(d)
  return IsoflopRuns(run=np.array(name, dtype=object), N=n, D=d, loss=loss,
                     budget=6.0 * n * d, batch=batch, curves=list(curves))


@dataclasses.dataclass
class IsoflopSweep:
  """A sweep directory read as an IsoFLOP sweep: the FLOP convention its budgets hold
  under, its runs and the analysis of all methods."""
  convention: str
  data: IsoflopRuns
  analysis: IsoflopAnalysis

  def to_dict(self) -> dict[str, Any]:
    return {"flop_convention": self.convention, "n_runs": len(self.data),
            **self.analysis.to_dict()}


def detect_convention(runs: Sequence[runs_lib.Run], min_sizes: int = 3
                      ) -> tuple[str, IsoflopRuns] | None:
  """The FLOP convention under which the runs form an IsoFLOP sweep -- >= 2 budgets (6 N D
  within 10%), each trained by >= `min_sizes` sizes -- with its IsoflopRuns; the tightest
  (fewest budgets, then least spread inside them) where several do. None if none does (a
  size ladder at one step count has a budget per size)."""
  best = None
  for convention in accounting.FLOP_CONVENTIONS:
    try:
      data = from_runs(runs, convention)
    except FitError:
      return None
    gid = data.groups()
    sizes = [len(np.unique(data.N[gid == g])) for g in np.unique(gid)]
    if len(sizes) < 2 or min(sizes) < min_sizes:
      continue
    lb = np.log(data.budget)
    spread = max(float(np.ptp(lb[gid == g])) for g in np.unique(gid))
    score = (len(sizes), spread)
    if best is None or score < best[0]:
      best = (score, convention, data)
  return None if best is None else (best[1], best[2])


def analyze_sweep(runs: Sequence[runs_lib.Run], n_boot: int = 200, seed: int = 0,
                  b_crit: Any = reference.KAPLAN_B_CRIT) -> IsoflopSweep | None:
  """`analyze` on the runs if they form an IsoFLOP sweep (`detect_convention`), else None."""
  found = detect_convention(runs)
  if found is None:
    return None
  convention, data = found
  return IsoflopSweep(convention, data, analyze(data, n_boot=n_boot, seed=seed, b_crit=b_crit))


# ------------------------------------------------------------------------------ reference


PORIAN_KAPLAN = "Reproducing Kaplan et al."  # Porian et al.'s first and last configurations
PORIAN_CORRECTED = "Optimizer tuning (no decay)"


def porian_runs(label: str, dataset: str = "rw") -> IsoflopRuns:
  """Porian et al.'s (2024) isoFLOP points of one configuration as IsoflopRuns (final losses
  only: N under its FLOP convention, D tokens, the budget), from reference/."""
  with open(reference.DIR / "porian2024_isoflop_points.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["label"] == label and r["dataset"] == dataset]
  if not rows:
    raise FitError(f"no Porian et al. points for label={label!r}, dataset={dataset!r}; see "
                   "reference/porian2024_fits.json for the configurations")
  col = lambda k: np.array([float(r[k]) for r in rows])
  return IsoflopRuns(run=np.array([f"{r['flops']}:{r['n']}" for r in rows], dtype=object),
                     N=col("n"), D=col("t"), loss=col("loss"), budget=col("flops"))


def porian_published(label: str, dataset: str = "rw") -> dict[str, Any]:
  """Porian et al.'s published N_opt = n_coef C^a (bs_median_weighted) and a's 95% interval."""
  with open(reference.DIR / "porian2024_fits.json") as f:
    configs = json.load(f)["configs"]
  for c in configs:
    if c["label"] == label and c["dataset"] == dataset:
      r = c["fit_results"]
      return {"a": r["bs_median_weighted"]["n_exponent"],
              "n_coef": r["bs_median_weighted"]["n_coef"],
              "a_interval": tuple(r["bootstrap_weighted_n_exponent_95ci"]),
              "param_count": c["param_count"]}
  raise FitError(f"no Porian et al. fit for label={label!r}, dataset={dataset!r}")
