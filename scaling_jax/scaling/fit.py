"""Fitting scaling laws: Huber loss on log-residuals, vmapped start grid, L-BFGS, bootstrap.

The objective is Hoffmann et al.'s: sum_i Huber_delta(log f(x_i; p) - log y_i), with
p = exp(theta) so every parameter stays positive. A quasi-random grid of starts is scored
at once with vmap, the best `top_k` are refined with optax's L-BFGS (zoom line search)
in one vmapped, jit-compiled while-loop, and the lowest objective wins. Bootstrap
intervals refit the law on resamples -- row weights and/or simulated log y, so every
resample has the same shape -- with the same solver vmapped over resamples, warm-started
at the fit. How the resamples are drawn (`scaling.resample`): independent points for
tables of independent points, and for learning curves (several rows per run) a parametric
bootstrap with run offsets and AR(1) noise, whose coverage bench/bench_coverage.py measures.

Precision: everything runs in float64 under the `jax.enable_x64(True)` context manager,
entered only inside this module's public functions, so the global jax config (and a
trainer in the same process) stays in float32.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from scaling_jax import rundir
from scaling_jax.scaling import resample as resample_lib
from scaling_jax.scaling.laws import FitError, Law, get_law

__all__ = ["FitError", "FitResult", "Prediction", "fit_law", "fit_batch", "holdout_error",
           "huber", "objective", "start_grid", "as_table"]

DEFAULT_DELTA = 1e-3  # Hoffmann et al. (2022)
UNIDENTIFIABLE_RATIO = 100.0  # an interval whose hi/lo exceeds this spans orders of magnitude
RUNAWAY = 1e6  # a parameter this far outside its law's init box ran off to 0 or infinity
_GTOL = 1e-7  # converged when |grad| <= _GTOL * objective + _ATOL (mean-Huber scale)
_ATOL = 1e-13
_LOOSE_GTOL = 1e-3  # a stalled line search still counts as converged below this



def x64():
  """The float64 context every fitter computation runs in (thread-local, not global)."""
  return jax.enable_x64(True)


def huber(r: jnp.ndarray, delta: float) -> jnp.ndarray:
  """Huber loss: r^2/2 inside |r| <= delta, delta (|r| - delta/2) outside."""
  a = jnp.abs(r)
  return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def objective(law: Law, theta_P, x, logy_N, w_N, delta) -> jnp.ndarray:
  """Weighted sum of Huber losses of the log-residuals (the reported objective)."""
  r_N = law.log_predict(theta_P, x) - logy_N
  h_N = huber(r_N, delta)
  return jnp.sum(jnp.where(w_N > 0, w_N * h_N, 0.0))


# ------------------------------------------------------------------------------ starts


def _halton(n: int, dims: int) -> np.ndarray:
  """The first n points of the Halton sequence in [0, 1)^dims (deterministic, even)."""
  primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53][:dims]
  if len(primes) < dims:
    raise FitError(f"start grids support at most 16 parameters, got {dims}")
  out = np.zeros((n, dims))
  for d, b in enumerate(primes):
    i = np.arange(1, n + 1)
    f, r = np.ones(n), np.zeros(n)
    while np.any(i > 0):
      f = f / b
      r = r + f * (i % b)
      i = i // b
    out[:, d] = r
  return out


def start_grid(law: Law | str, size: int = 1000,
               ranges: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
  """`size` log-parameter starts (size x P) spread evenly (Halton) over the init box."""
  law = get_law(law)
  box = dict(law.init)
  box.update(ranges or {})
  lo = np.log([box[k][0] for k in law.params])
  hi = np.log([box[k][1] for k in law.params])
  return lo + _halton(int(size), len(law.params)) * (hi - lo)


# ------------------------------------------------------------------------------ solver


class _Solver:
  """Jit-compiled grid search + vmapped L-BFGS + bootstrap for one law."""

  def __init__(self, law: Law, max_iter: int, top_k: int, memory: int):
    self.law, self.max_iter, self.top_k = law, max_iter, top_k
    self.opt = optax.lbfgs(memory_size=memory, linesearch=optax.scale_by_zoom_linesearch(
        max_linesearch_steps=12, initial_guess_strategy="one"))
    self.fit = jax.jit(self._fit)
    self.refine = jax.jit(jax.vmap(self._refine, in_axes=(0, None, None, 0, None)))
    # One refit per bootstrap resample (its log y and row weights), warm-started at the fit.
    self.refit_many = jax.jit(jax.vmap(self._refine, in_axes=(None, None, 0, 0, None)))
    self.fit_and_bootstrap = jax.jit(
        jax.vmap(self._fit_and_bootstrap, in_axes=(None, None, 0, 0, None, None)),
        static_argnums=(5,))

  def _scaled(self, theta_P, x, logy_N, w_N, delta):
    # Mean Huber: the same minimiser, a scale that the tolerances can rely on.
    return objective(self.law, theta_P, x, logy_N, w_N, delta) / jnp.sum(w_N)

  def _refine(self, theta0_P, x, logy_N, w_N, delta):
    """L-BFGS from one start; returns (theta, objective, |grad|, iterations, converged)."""
    def fun(theta):
      f = self._scaled(theta, x, logy_N, w_N, delta)
      return jnp.where(jnp.isfinite(f), f, jnp.inf)

    vg = optax.value_and_grad_from_state(fun)

    def step(carry):
      theta, state, f_prev, stall = carry
      f, g = vg(theta, state=state)
      updates, state = self.opt.update(g, state, theta, value=f, grad=g, value_fn=fun)
      theta = optax.apply_updates(theta, updates)
      f_new = otu.tree_get(state, "value")
      tiny = (f - f_new) <= 1e-14 * jnp.abs(f)
      return theta, state, f, jnp.where(tiny, stall + 1, 0)

    def keep_going(carry):
      theta, state, _, stall = carry
      k = otu.tree_get(state, "count")
      f, g = otu.tree_get(state, "value"), otu.tree_get(state, "grad")
      gn = jnp.linalg.norm(g)
      done = (gn <= _GTOL * f + _ATOL) | (stall >= 3) | ~jnp.isfinite(f) | ~jnp.all(
          jnp.isfinite(theta))
      return (k == 0) | ((k < self.max_iter) & ~done)

    state0 = self.opt.init(theta0_P)
    carry = (theta0_P, state0, jnp.inf, jnp.zeros((), jnp.int32))
    theta, state, _, _ = jax.lax.while_loop(keep_going, step, carry)
    f, g = fun(theta), jax.grad(fun)(theta)
    gn = jnp.linalg.norm(g)
    ok = jnp.isfinite(f) & jnp.all(jnp.isfinite(theta)) & (gn <= _LOOSE_GTOL * f + 1e3 * _ATOL)
    return theta, f * jnp.sum(w_N), gn, otu.tree_get(state, "count"), ok

  def _fit(self, grid_GP, x, logy_N, w_N, delta):
    """Scores every start (vmap), refines the best top_k (vmap), keeps the lowest."""
    f_G = jax.vmap(lambda t: self._scaled(t, x, logy_N, w_N, delta))(grid_GP)
    f_G = jnp.where(jnp.isfinite(f_G), f_G, jnp.inf)
    k = min(self.top_k, grid_GP.shape[0])
    _, idx_K = jax.lax.top_k(-f_G, k)
    refine = jax.vmap(self._refine, in_axes=(0, None, None, None, None))
    theta_KP, f_K, gn_K, it_K, ok_K = refine(grid_GP[idx_K], x, logy_N, w_N, delta)
    f_K = jnp.where(jnp.isfinite(f_K), f_K, jnp.inf)
    best = jnp.argmin(f_K)
    n_ok = jnp.sum(ok_K & (jnp.abs(f_K - f_K[best]) <= 1e-6 * f_K[best] + 1e-300))
    return dict(theta=theta_KP[best], objective=f_K[best], grad_norm=gn_K[best],
                n_iter=it_K[best], converged=ok_K[best], n_starts_agree=n_ok)

  def _bootstrap(self, theta_P, x, logy_N, w_N, key, delta, n_boot):
    """Refits on n_boot resamples of the rows with w > 0 (which come first in the arrays)."""
    n = logy_N.shape[0]
    n_active = jnp.sum(w_N > 0)
    idx_BN = jax.random.randint(key, (n_boot, n), 0, n_active)
    draw_N = (jnp.arange(n) < n_active).astype(w_N.dtype)
    w_BN = jax.vmap(lambda i: jnp.zeros(n).at[i].add(draw_N))(idx_BN) * w_N
    refine = jax.vmap(self._refine, in_axes=(None, None, None, 0, None))
    theta_BP, _, _, _, ok_B = refine(theta_P, x, logy_N, w_BN, delta)
    return theta_BP, ok_B

  def _fit_and_bootstrap(self, grid_GP, x, logy_N, key, delta, n_boot):
    w_N = jnp.ones_like(logy_N)
    out = self._fit(grid_GP, x, logy_N, w_N, delta)
    if n_boot:
      out["boot_theta"], out["boot_ok"] = self._bootstrap(out["theta"], x, logy_N, w_N, key,
                                                          delta, n_boot)
    return out


@functools.lru_cache(maxsize=64)
def _solver_cached(law_id: int, law: Any, max_iter: int, top_k: int, memory: int) -> _Solver:
  return _Solver(law._law, max_iter, top_k, memory)


class _Key:
  """Hashable-by-identity wrapper (Law holds a dict, so it is not hashable itself)."""

  def __init__(self, law):
    self._law = law

  def __hash__(self):
    return id(self._law)

  def __eq__(self, other):
    return isinstance(other, _Key) and other._law is self._law


def _solver(law: Law, max_iter: int = 500, top_k: int = 8, memory: int = 10) -> _Solver:
  return _solver_cached(id(law), _Key(law), max_iter, top_k, memory)


# ------------------------------------------------------------------------------ tables


def as_table(table: Any) -> dict[str, np.ndarray]:
  """A table as columns: accepts a dict of columns or a sequence of row dicts."""
  if isinstance(table, Mapping):
    cols = {k: np.asarray(v) for k, v in table.items()}
  elif isinstance(table, Sequence) and (len(table) == 0 or isinstance(table[0], Mapping)):
    keys = list(dict.fromkeys(k for row in table for k in row))
    cols = {k: np.asarray([row.get(k, np.nan) for row in table]) for k in keys}
  else:
    raise FitError("a table must be a dict of columns or a list of row dicts "
                   "(columns run, N, B, S, D, C, L); read files with runs.read_table(path)")
  lengths = {k: len(v) for k, v in cols.items()}
  if len(set(lengths.values())) > 1:
    raise FitError(f"table columns have different lengths {lengths}; fix the table")
  return cols


def _row_names(cols: Mapping[str, np.ndarray], idx: np.ndarray) -> str:
  runs = cols.get("run")
  shown = [f"row {i}" + (f" (run {runs[i]})" if runs is not None else "") for i in idx[:5]]
  more = f" and {len(idx) - 5} more" if len(idx) > 5 else ""
  return ", ".join(shown) + more


def _prepare(law: Law, table: Any, drop_invalid: bool, dedupe: bool, weights: Any = None):
  """Checks and extracts the law's columns: (x dict, y, weights, kept row index, warnings)."""
  cols = as_table(table)
  need = list(law.inputs) + [law.output]
  missing = [c for c in need if c not in cols]
  if missing:
    hint = (" (derive them with study.study_table(source, b_crit='gns'|'kaplan'|...))"
            if {"S_min", "C_min"} & set(missing) else "")
    raise FitError(f"law {law.name!r} needs columns {need}; the table lacks {missing}{hint}")
  try:
    data = np.stack([np.asarray(cols[c], dtype=np.float64) for c in need], axis=1)
  except (TypeError, ValueError) as e:
    raise FitError(f"columns {need} must be numeric: {e}") from None
  warnings: list[str] = []
  w = np.ones(len(data)) if weights is None else np.asarray(weights, np.float64)
  if w.shape != (len(data),) or np.any(~np.isfinite(w)) or np.any(w < 0):
    raise FitError(f"weights must be {len(data)} finite non-negative numbers (one per row)")
  bad = ~np.all(np.isfinite(data) & (data > 0), axis=1)
  keep = np.arange(len(data))
  if bad.any():
    bad_idx = np.flatnonzero(bad)
    msg = (f"{len(bad_idx)} of {len(data)} rows have NaN, inf or non-positive values in "
           f"{need}: {_row_names(cols, bad_idx)}")
    if not drop_invalid:
      raise FitError(msg + "; remove them from the table or pass drop_invalid=True")
    warnings.append(msg + "; dropped")
    keep = keep[~bad]
  if dedupe and len(keep):
    _, first = np.unique(data[keep], axis=0, return_index=True)
    n_dup = len(keep) - len(first)
    if n_dup:
      warnings.append(f"dropped {n_dup} duplicate rows (same {need})")
      keep = keep[np.sort(first)]
  n_par = len(law.params)
  active = keep[w[keep] > 0]
  if len(active) < n_par + 1:
    raise FitError(f"law {law.name!r} has {n_par} parameters and needs at least {n_par + 1} "
                   f"valid distinct points; got {len(active)}. Add runs or use a smaller law")
  for j, c in enumerate(law.inputs):
    if len(np.unique(data[active, j])) < 2:
      raise FitError(f"every row has the same {c}={data[active[0], j]:g}; law {law.name!r} "
                     f"needs {c} to vary (add runs with other {c}, or fit a law without {c})")
  x = {c: data[keep, j] for j, c in enumerate(law.inputs)}
  return x, data[keep, -1], w[keep], keep, warnings


def _bucket(n: int) -> int:
  """Padded length: the next power of two (>= 16), so similar tables share one compile."""
  return max(16, 1 << (int(n) - 1).bit_length())


def _pad(x: dict[str, np.ndarray], y: np.ndarray, w: np.ndarray):
  """Rows with w > 0 first, then zero-weight padding (copies of row 0) up to _bucket(n)."""
  order = np.argsort(w <= 0, kind="stable")
  pad = _bucket(len(y)) - len(y)
  padded = lambda v: np.concatenate([v[order], np.full(pad, v[order][0])])
  return ({k: padded(v) for k, v in x.items()}, padded(y),
          np.concatenate([w[order], np.zeros(pad)]))


# ------------------------------------------------------------------------------ results


@dataclasses.dataclass
class Prediction:
  """Predicted output at given inputs with a bootstrap confidence band (NaN without one)."""
  value: np.ndarray
  lo: np.ndarray
  hi: np.ndarray
  level: float

  def to_dict(self) -> dict[str, Any]:
    return {"value": self.value.tolist(), "lo": self.lo.tolist(), "hi": self.hi.tolist(),
            "level": self.level}


@dataclasses.dataclass
class FitResult:
  """A fitted law: parameters, bootstrap intervals, convergence and diagnostics."""
  law: str
  params: dict[str, float]
  intervals: dict[str, tuple[float, float]] | None
  converged: bool
  objective: float  # sum over points of Huber(log residual), as in Hoffmann et al.
  n_points: int
  delta: float
  level: float
  n_iter: int
  grad_norm: float
  n_starts: int
  n_starts_agree: int  # refined starts that reached the same optimum
  bootstrap: int = 0
  bootstrap_converged: int = 0
  samples: np.ndarray | None = None  # converged bootstrap parameters (B' x P), natural scale
  unidentifiable: list[str] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)
  rows: np.ndarray | None = None  # indices of the table rows the fit used
  resample: str | None = None  # how the bootstrap resampled (scaling.resample)
  noise: resample_lib.NoiseModel | None = None  # residual model, when rows have runs
  _law: Law | None = dataclasses.field(default=None, repr=False)

  @property
  def law_obj(self) -> Law:
    return self._law if self._law is not None else get_law(self.law)

  def predict(self, inputs: Any, level: float | None = None, band: str = "confidence",
              seed: int = 0) -> Prediction:
    """Law prediction at `inputs` (a table or dict of the law's input columns).

    band: "confidence" (the bootstrap spread of the law itself) or "prediction" (where
    a new run's observed curve at `inputs` should fall: each bootstrap law times the noise
    of an unseen run -- an offset and AR(1) noise, `noise` -- drawn afresh; needs a fit
    whose rows had runs).
    """
    law = self.law_obj
    cols = as_table(inputs)
    missing = [c for c in law.inputs if c not in cols]
    if missing:
      raise FitError(f"predict needs inputs {list(law.inputs)}; missing {missing}")
    level = self.level if level is None else level
    with x64():
      x = {c: jnp.atleast_1d(jnp.asarray(cols[c], jnp.float64)) for c in law.inputs}
      p = {k: jnp.asarray(v, jnp.float64) for k, v in self.params.items()}
      value = np.asarray(law(p, x))
      lo = hi = np.full_like(value, np.nan)
      if self.samples is not None and len(self.samples):
        s = jnp.asarray(self.samples, jnp.float64)
        pred_BN = jax.vmap(lambda row: law({k: row[i] for i, k in enumerate(law.params)}, x))(s)
        if band == "prediction":
          if self.noise is None:
            raise FitError("a prediction band needs a fit of learning curves with a run "
                           "column (the noise of a new run); use band='confidence'")
          new_BN = self.noise.new_run(pred_BN.shape[1], pred_BN.shape[0],
                                      np.random.default_rng(seed))
          pred_BN = pred_BN * jnp.exp(jnp.asarray(new_BN))
        elif band != "confidence":
          raise FitError(f"band={band!r} is not 'confidence' or 'prediction'")
        q = 100 * (1 - level) / 2
        lo, hi = np.asarray(jnp.nanpercentile(pred_BN, jnp.array([q, 100 - q]), axis=0))
    return Prediction(value, lo, hi, level)

  def to_dict(self) -> dict[str, Any]:
    law = self.law_obj
    out = {
        "law": self.law, "form": law.doc, "inputs": list(law.inputs), "output": law.output,
        "params": self.params,
        "intervals": ({k: list(v) for k, v in self.intervals.items()}
                      if self.intervals else None),
        "level": self.level, "converged": self.converged, "objective": self.objective,
        "objective_convention": "sum_i Huber_delta(log pred_i - log obs_i)",
        "delta": self.delta, "n_points": self.n_points, "n_iter": self.n_iter,
        "grad_norm": self.grad_norm, "n_starts": self.n_starts,
        "n_starts_agree": self.n_starts_agree, "bootstrap": self.bootstrap,
        "bootstrap_converged": self.bootstrap_converged,
        "unidentifiable": self.unidentifiable, "warnings": self.warnings,
        "resample": self.resample, "noise": self.noise.to_dict() if self.noise else None,
    }
    return json.loads(json.dumps(out, default=rundir.json_default))

  def to_json(self, path: str | None = None) -> str:
    """The report as JSON text; also written to `path` when given."""
    text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
    if path:
      with open(path, "w") as f:
        f.write(text + "\n")
    return text

  def table(self) -> str:
    """A human-readable parameter table (value, interval, flags)."""
    lines = [f"law {self.law}: {self.law_obj.doc}",
             f"{'param':<12} {'value':>12} {'lo':>12} {'hi':>12}  note"]
    for k, v in self.params.items():
      lo, hi = self.intervals[k] if self.intervals else (math.nan, math.nan)
      note = "UNIDENTIFIABLE (interval spans orders of magnitude)" if (
          k in self.unidentifiable) else ""
      lines.append(f"{k:<12} {v:>12.5g} {lo:>12.5g} {hi:>12.5g}  {note}")
    pct = f"{100 * self.level:g}%"
    lines.append(f"objective {self.objective:.6g} (Huber delta {self.delta:g}, "
                 f"{self.n_points} points), converged={self.converged}, "
                 f"{self.n_iter} L-BFGS iterations, intervals: {pct} bootstrap "
                 f"({self.bootstrap_converged}/{self.bootstrap} resamples converged)")
    lines += [f"warning: {w}" for w in self.warnings]
    return "\n".join(lines)



def _intervals(law: Law, theta_BP: np.ndarray, ok_B: np.ndarray, level: float):
  samples = np.exp(theta_BP[ok_B])
  if len(samples) < 2:
    return None, samples, []
  q = 100 * (1 - level) / 2
  lo, hi = np.percentile(samples, [q, 100 - q], axis=0)
  intervals = {k: (float(lo[i]), float(hi[i])) for i, k in enumerate(law.params)}
  unident = [k for k, (a, b) in intervals.items()
             if not (np.isfinite(a) and np.isfinite(b) and a > 0 and b / a <= UNIDENTIFIABLE_RATIO)]
  return intervals, samples, unident


def _n_groups(groups: np.ndarray | None) -> int:
  return 0 if groups is None else resample_lib.group_index(groups)[1]


def _resample_mode(resample: str, groups: np.ndarray | None) -> str:
  if resample not in ("auto",) + resample_lib.MODES:
    raise FitError(f"resample={resample!r} is not one of auto, {', '.join(resample_lib.MODES)}")
  n_groups = _n_groups(groups)
  if resample == "auto":  # learning curves: several rows per run, and >= 2 runs
    return "parametric" if 2 <= n_groups < len(groups) else "points"
  if resample != "points" and n_groups < 2:
    raise FitError(f"resample={resample!r} needs the run of each row (a 'run' column or "
                   "groups=) with at least 2 runs; use resample='points'")
  return resample


def _between_params(law: Law, x: dict[str, np.ndarray], groups: np.ndarray) -> int:
  """Parameters fitted from between-run differences: 2 (a power law's scale and exponent)
  for each input that is constant within every run (N for learning curves)."""
  g, n_groups = resample_lib.group_index(groups)
  const = [c for c in law.inputs
           if all(np.ptp(np.asarray(x[c])[:len(g)][g == k]) == 0 for k in range(n_groups))]
  return 2 * len(const)


def _resamples(mode: str, n_boot: int, rng: np.random.Generator, logpred_N: np.ndarray,
               logy_N: np.ndarray, w_N: np.ndarray, n_active: int, groups, noise):
  """[n_boot, N] log y and weights of the bootstrap resamples (padded rows keep weight 0)."""
  n = len(logy_N)
  w_BN = np.zeros((n_boot, n))
  logy_BN = np.broadcast_to(logy_N, (n_boot, n)).copy()
  act = slice(0, n_active)
  if mode == "points":
    w_BN[:, act] = resample_lib.point_weights(n_active, n_boot, rng)
  elif mode == "runs":
    w_BN[:, act] = resample_lib.run_weights(groups, n_boot, rng)
  elif mode == "blocks":
    w_BN[:, act] = resample_lib.block_weights(groups, n_boot, rng)
  else:  # parametric: the fitted law plus simulated run offsets and AR(1) noise
    w_BN[:, act] = 1.0
    logy_BN[:, act] = logpred_N[act] + noise.draw(groups, n_boot, rng)
  return logy_BN, w_BN * w_N[None, :]


# ------------------------------------------------------------------------------ API


def fit_law(law: str | Law, table: Any, *, bootstrap: int = 0, delta: float = DEFAULT_DELTA,
            level: float = 0.95, grid: int | np.ndarray = 1000, top_k: int = 8,
            max_iter: int = 500, seed: int = 0, drop_invalid: bool = False,
            dedupe: bool = True, require_convergence: bool = True,
            weights: Any = None, resample: str = "auto", groups: Any = None) -> FitResult:
  """Fits `law` to `table` (columns incl. the law's inputs and output) and bootstraps.

  Args:
    law: a registered law name (see laws.LAWS) or a Law.
    table: dict of columns or list of row dicts.
    bootstrap: number of resamples for percentile intervals (0: no intervals).
    delta: Huber threshold on log-residuals (1e-3 as Hoffmann et al.; large = least squares).
    level: confidence level of the intervals.
    grid: number of quasi-random starts over the law's init box, or an explicit array of
      starts (S x P, natural-scale parameters in law.params order).
    top_k: how many of the best starts L-BFGS refines.
    drop_invalid: drop rows with NaN/inf/non-positive values instead of raising.
    dedupe: drop exact duplicate rows (with a warning).
    require_convergence: raise FitError if the best fit did not converge.
    weights: optional per-row weights (0 leaves a row out, e.g. a held-out set); the
      bootstrap resamples the rows with weight > 0.
    resample: how the bootstrap resamples (`scaling.resample`): "points", "runs",
      "blocks" or "parametric"; "auto" (default) is "parametric" for learning curves (a
      table whose `groups` hold several rows per run, e.g. from runs.learning_table) and
      "points" for tables of independent points. bench/bench_coverage.py measures them.
    groups: the run of each row (default: the table's "run" column).
  """
  law = get_law(law)
  if not delta > 0:
    raise FitError(f"delta must be > 0, got {delta}")
  if not 0 < level < 1:
    raise FitError(f"level must be in (0, 1), got {level}")
  x, y, w, rows, warnings = _prepare(law, table, drop_invalid, dedupe, weights)
  n_points, rows = int(np.sum(w > 0)), rows[w > 0]
  if groups is None:
    groups = as_table(table).get("run")
  groups = None if groups is None else np.asarray(groups, dtype=object)[rows]
  resample = _resample_mode(resample, groups)
  x, y, w = _pad(x, y, w)
  if isinstance(grid, (int, np.integer)):
    grid_GP = start_grid(law, int(grid))
  else:
    grid_GP = np.asarray(grid, np.float64)
    if grid_GP.ndim != 2 or grid_GP.shape[1] != len(law.params) or np.any(grid_GP <= 0):
      raise FitError(f"grid must be an (S, {len(law.params)}) array of positive starts "
                     f"for {law.params}")
    grid_GP = np.log(grid_GP)
  solver = _solver(law, max_iter=max_iter, top_k=top_k)
  with x64():
    xj = {k: jnp.asarray(v, jnp.float64) for k, v in x.items()}
    logy = jnp.log(jnp.asarray(y, jnp.float64))
    d = jnp.asarray(delta, jnp.float64)
    wj = jnp.asarray(w, jnp.float64)
    out = solver.fit(jnp.asarray(grid_GP), xj, logy, wj, d)
    out = jax.tree.map(np.asarray, out)
    theta = out["theta"]
    boot_theta = boot_ok = noise = None
    logpred_N = np.asarray(law.log_predict(jnp.asarray(theta), xj))
    if _n_groups(groups) >= 2:
      resid_N = (np.asarray(logy) - logpred_N)[:n_points]
      noise = resample_lib.NoiseModel.estimate(resid_N, groups, _between_params(law, x, groups))
    if bootstrap:
      logy_BN, w_BN = _resamples(resample, int(bootstrap), np.random.default_rng(seed),
                                 logpred_N, np.asarray(logy), np.asarray(w), n_points, groups,
                                 noise)
      boot_theta, _, _, _, boot_ok = solver.refit_many(jnp.asarray(theta), xj,
                                                       jnp.asarray(logy_BN), jnp.asarray(w_BN), d)
      boot_theta, boot_ok = np.asarray(boot_theta), np.asarray(boot_ok)
  converged = bool(out["converged"])
  if not converged and require_convergence:
    raise FitError(
        f"fit of {law.name!r} did not converge (objective {float(out['objective']):.4g}, "
        f"|grad| {float(out['grad_norm']):.3g} after {int(out['n_iter'])} iterations); "
        "raise max_iter, widen the start grid (grid=, or the law's init ranges), check the "
        "data for outliers, or pass require_convergence=False to inspect the result")
  params = {k: float(np.exp(theta[i])) for i, k in enumerate(law.params)}
  intervals, samples, unident = None, None, []
  n_boot_ok = 0
  if bootstrap:
    n_boot_ok = int(boot_ok.sum())
    intervals, samples, unident = _intervals(law, boot_theta, boot_ok, level)
    if n_boot_ok < 0.9 * bootstrap:
      warnings.append(f"only {n_boot_ok} of {bootstrap} bootstrap refits converged; "
                      "intervals use those")
    if intervals is None:
      unident = list(law.params)
  runaway = [k for i, k in enumerate(law.params)
             if not law.init[k][0] / RUNAWAY <= params[k] <= law.init[k][1] * RUNAWAY]
  unident += [k for k in runaway if k not in unident]
  if unident:
    warnings.append(f"parameters {unident} are not identifiable from these data (their "
                    f"{100 * level:g}% interval spans more than a factor "
                    f"{UNIDENTIFIABLE_RATIO:g}, or they ran off towards 0 or infinity); add data covering a wider range or fix them")
  if int(out["n_starts_agree"]) < 2 and min(top_k, len(grid_GP)) > 1:
    warnings.append("only one refined start reached the best optimum; widen or densify the "
                    "start grid to make sure it is global")
  return FitResult(
      law=law.name, params=params, intervals=intervals, converged=converged,
      objective=float(out["objective"]), n_points=n_points, delta=float(delta), level=level,
      n_iter=int(out["n_iter"]), grad_norm=float(out["grad_norm"]), n_starts=len(grid_GP),
      n_starts_agree=int(out["n_starts_agree"]), bootstrap=int(bootstrap),
      bootstrap_converged=n_boot_ok, samples=samples, unidentifiable=unident,
      warnings=warnings, rows=rows, resample=resample if bootstrap else None, noise=noise,
      _law=law)


def fit_batch(law: str | Law, inputs: Mapping[str, Any], y_SN: Any, *, bootstrap: int = 0,
              delta: float = DEFAULT_DELTA, level: float = 0.95, grid: int = 256,
              top_k: int = 4, max_iter: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
  """Fits S datasets that share inputs (e.g. synthetic replicates) at once, vmapped.

  Returns arrays: params (S x P), converged (S,), objective (S,), and with bootstrap > 0
  lo, hi (S x P) percentile intervals and boot_converged (S,). No input checks beyond
  shapes: meant for validation studies (see tests/test_fit.py parameter recovery).
  """
  law = get_law(law)
  y_SN = np.asarray(y_SN, np.float64)
  if y_SN.ndim != 2 or np.any(~np.isfinite(y_SN)) or np.any(y_SN <= 0):
    raise FitError("y_SN must be a 2-D array (datasets x points) of finite positive values")
  solver = _solver(law, max_iter=max_iter, top_k=top_k)
  with x64():
    x = {k: jnp.asarray(np.asarray(inputs[k], np.float64)) for k in law.inputs}
    keys = jax.random.split(jax.random.key(seed), y_SN.shape[0])
    out = solver.fit_and_bootstrap(jnp.asarray(start_grid(law, grid)), x, jnp.log(y_SN), keys,
                                   jnp.asarray(delta, jnp.float64), int(bootstrap))
    out = jax.tree.map(np.asarray, out)
  res = {"params": np.exp(out["theta"]), "converged": out["converged"],
         "objective": out["objective"]}
  if bootstrap:
    boot = np.where(out["boot_ok"][..., None], np.exp(out["boot_theta"]), np.nan)
    q = 100 * (1 - level) / 2
    res["lo"], res["hi"] = np.nanpercentile(boot, [q, 100 - q], axis=1)
    res["boot_converged"] = out["boot_ok"].sum(axis=1)
  return res


def holdout_error(law: str | Law, table: Any, *, column: str | None = None,
                  **fit_kwargs) -> dict[str, Any]:
  """Fits without the rows at the largest `column` (default: the law's first input, N)
  and reports how well the fit extrapolates to them (relative errors of the output)."""
  law = get_law(law)
  cols = as_table(table)
  column = column or law.inputs[0]
  if column not in cols:
    raise FitError(f"holdout column {column!r} is not in the table")
  v = np.asarray(cols[column], np.float64)
  top = np.nanmax(v)
  test = v == top
  if test.all() or not test.any():
    raise FitError(f"cannot hold out the largest {column}: need at least two distinct values")
  test_tab = {k: np.asarray(c)[test] for k, c in cols.items()}
  # Zero weights (not a smaller table) keep the array shapes, so the compiled fit is reused.
  res = fit_law(law, cols, weights=(~test).astype(float), **fit_kwargs)
  pred = res.predict(test_tab)
  obs = np.asarray(test_tab[law.output], np.float64)
  ok = np.isfinite(obs) & (obs > 0)
  rel = pred.value[ok] / obs[ok] - 1
  inside = (obs[ok] >= pred.lo[ok]) & (obs[ok] <= pred.hi[ok])
  return {"column": column, "held_out_value": float(top), "n_train": res.n_points,
          "n_test": int(ok.sum()), "mean_abs_rel_error": float(np.mean(np.abs(rel))),
          "max_abs_rel_error": float(np.max(np.abs(rel))),
          "mean_rel_error": float(np.mean(rel)),
          "rmse_log": float(np.sqrt(np.mean(np.log1p(rel) ** 2))),
          "fraction_in_band": float(np.mean(inside)) if res.samples is not None else None,
          "fit": res}
