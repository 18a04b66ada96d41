"""Critical batch size (Kaplan et al. 2020 §5.1, after McCandlish et al. 2018).

A run at batch B (tokens) that took S steps to reach loss L would have needed
S_min = S / (1 + B_crit(L)/B) steps at a very large batch, and C_min = C / (1 + B/B_crit(L))
compute at a very small one.

From a batch-size sweep (one model, several B), each loss level L gives the steps S(B) and
examples E = B·S to reach it. They follow (S/S_min − 1)(E/E_min − 1) = 1, i.e.
S = S_min + E_min / B: linear in 1/B, fit by weighted least squares per level. Then
B_crit(L) = E_min/S_min, and over the levels B_crit(L) = B_* / L^(1/α_B) is a line in
log space. `analyze_batch_sweep` does both and returns a JSON-ready `BatchSweepResult`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Sequence

import numpy as np

from scaling_jax import errors
from scaling_jax import metric_keys as keys
from scaling_jax import metrics as metrics_lib
from scaling_jax import rundir
from scaling_jax.scaling import runs as runs_lib
from scaling_jax.scaling.laws import b_crit_kaplan, c_min, s_min  # noqa: F401  (re-exported)

MIN_BATCH_SIZES = 3  # distinct batch sizes a level needs: S_min, E_min and one dof
MIN_LEVELS = 3  # levels the B_crit(L) power law needs: B_*, α_B and one dof
# ... or, when every level comes with its own error (se of log B_crit), 2: the line through two
# measured points with known errors has an interval from those errors alone, but no dof is left
# to test the power law itself (the result says so: n_levels == 2).
MIN_LEVELS_KNOWN_ERRORS = 2
Z_975 = 1.959964  # the normal 0.975 quantile


class BatchSweepError(errors.UserError, ValueError):
  """Input a batch-size analysis cannot use; the message says what to change."""


# ---------------------------------------------------------------------------- statistics

# Two-sided 95% Student-t quantiles (scipy is not a runtime dependency); interpolated in 1/df.
_T975 = ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365),
         (8, 2.306), (9, 2.262), (10, 2.228), (12, 2.179), (15, 2.131), (20, 2.086),
         (30, 2.042), (60, 2.000), (120, 1.980))


def t_quantile_975(dof: int) -> float:
  """0.975 quantile of Student's t with `dof` degrees of freedom (to ~0.3%)."""
  if dof < 1:
    raise BatchSweepError(f"t quantile needs dof >= 1, got {dof}")
  inv = [0.0] + [1.0 / d for d, _ in reversed(_T975)]
  vals = [1.959964] + [t for _, t in reversed(_T975)]
  return float(np.interp(1.0 / dof, inv, vals))


def error_of_interval(lo: float | None, hi: float | None) -> float:
  """The standard error of log x that a normal 95% interval [lo, hi] of x has: how the B_crit(L)
  law weighs each level by the level's own interval, whatever gave it (a t-interval of a fit,
  a bootstrap); 0 (unknown) without a finite positive interval."""
  if not (lo and hi and 0 < lo < hi < math.inf):
    return 0.0
  return math.log(hi / lo) / (2 * Z_975)


def _wls_line(x, y, w, scale_floor: float = 0.0):
  """Weighted least squares y = a + b x: (a, b, cov[2x2], dof, s2) with the scale from the
  residuals, s2, but never below `scale_floor`: with weights 1/se² of known errors a floor of
  1 keeps the covariance from shrinking below what those errors allow when a few points
  happen to fall on a line (the Birge-ratio convention)."""
  x, y, w = (np.asarray(v, float) for v in (x, y, w))
  X = np.stack([np.ones_like(x), x], axis=1)
  xtwx = X.T @ (w[:, None] * X)
  try:
    xtwx_inv = np.linalg.inv(xtwx)
  except np.linalg.LinAlgError as e:
    raise BatchSweepError("degenerate fit: the x values are all equal; vary them") from e
  beta = xtwx_inv @ (X.T @ (w * y))
  resid = y - X @ beta
  dof = len(x) - 2
  s2 = float(np.sum(w * resid**2) / dof) if dof > 0 else 0.0
  return float(beta[0]), float(beta[1]), max(s2, scale_floor) * xtwx_inv, dof, s2


# ---------------------------------------------------------------------------- curves


@dataclasses.dataclass
class Curve:
  """One run's learning curve: loss (nats/token) against optimizer step at batch B (tokens)."""
  batch_tokens: float
  steps: np.ndarray
  loss: np.ndarray
  name: str = ""

  def __post_init__(self):
    self.steps = np.asarray(self.steps, float).ravel()
    self.loss = np.asarray(self.loss, float).ravel()
    label = self.name or f"curve at B={self.batch_tokens}"
    b = self.batch_tokens
    if not isinstance(b, (int, float, np.number)) or not math.isfinite(b) or b <= 0:
      raise BatchSweepError(f"{label}: batch_tokens={b!r} must be a positive number of tokens")
    self.batch_tokens = float(b)
    if self.steps.shape != self.loss.shape:
      raise BatchSweepError(f"{label}: {self.steps.size} steps but {self.loss.size} losses; "
                            "pass one loss per step")
    if self.steps.size < 2:
      raise BatchSweepError(f"{label}: needs at least 2 (step, loss) points")
    if not np.all(np.isfinite(self.steps)) or np.any(self.steps < 0):
      raise BatchSweepError(f"{label}: steps must be finite and >= 0")
    if np.any(np.diff(self.steps) <= 0):
      raise BatchSweepError(f"{label}: steps must be strictly increasing; sort the curve and "
                            "drop repeated steps")
    if not np.all(np.isfinite(self.loss)):
      raise BatchSweepError(f"{label}: loss has NaN/inf (a diverged run?); cut the curve at the "
                            "first non-finite loss or leave the run out")
    if np.any(self.loss < 0):
      raise BatchSweepError(f"{label}: negative loss; pass cross-entropy in nats per token")


def as_curves(curves: Iterable[Curve | Sequence[Any]]) -> list[Curve]:
  """Curves from `Curve`s or (batch_tokens, steps, loss[, name]) tuples."""
  out = []
  for c in curves:
    if isinstance(c, Curve):
      out.append(c)
    elif isinstance(c, (tuple, list)) and len(c) in (3, 4):
      out.append(Curve(*c))
    else:
      raise BatchSweepError("each curve must be a Curve or a (batch_tokens, steps, loss) tuple, "
                            f"got {type(c).__name__}")
  return out


def smooth_loss(loss, decay: float = 0.8) -> np.ndarray:
  """Zero-phase EMA: a bias-corrected EMA run forward, then backward over the result.

  A one-way EMA lags a falling loss and so would move every crossing later; the
  backward pass cancels that lag to first order.
  """
  if not 0.0 <= decay < 1.0:
    raise BatchSweepError(f"smoothing decay={decay} must be in [0, 1)")

  def ema(v):
    out, acc, weight = np.empty_like(v), 0.0, 0.0
    for i, x in enumerate(v):
      acc = decay * acc + (1 - decay) * x
      weight = decay * weight + (1 - decay)
      out[i] = acc / weight
    return out

  loss = np.asarray(loss, float)
  return ema(ema(loss)[::-1])[::-1] if loss.size else loss


def steps_to_loss(steps, loss, level: float) -> float | None:
  """First step at which the curve reaches `level`, linearly interpolated; None if never.

  Also None if the curve is already at or below `level` at its first point (the crossing
  lies before the data, so its step is unknown).
  """
  steps, loss = np.asarray(steps, float), np.asarray(loss, float)
  below = np.nonzero(loss <= level)[0]
  if below.size == 0 or below[0] == 0:
    return None
  i = below[0]
  s0, s1, l0, l1 = steps[i - 1], steps[i], loss[i - 1], loss[i]
  return float(s0 + (l0 - level) / (l0 - l1) * (s1 - s0))


def default_levels(curves: Sequence[Curve], n: int = 6) -> np.ndarray:
  """`n` loss levels, log-spaced, that at least MIN_BATCH_SIZES curves reach after their start.

  From just below the lowest starting loss down to the MIN_BATCH_SIZES-th lowest final
  minimum; an empty array if there is no such range.
  """
  curves = as_curves(curves)
  if len(curves) < MIN_BATCH_SIZES:
    return np.array([])
  start = min(float(c.loss[0]) for c in curves)
  lows = sorted(float(np.min(c.loss)) for c in curves)
  lo = lows[MIN_BATCH_SIZES - 1]
  if not lo < start:
    return np.array([])
  return np.geomspace(start, lo, n + 2)[1:-1]  # interior points, highest loss first


# ---------------------------------------------------------------------------- fits


@dataclasses.dataclass
class LevelFit:
  """S = S_min + E_min / B fitted at one loss level (S in steps, B and E in tokens)."""
  loss: float
  batch_tokens: list[float]  # the curves that reached the level
  steps: list[float]  # S: interpolated first crossing
  examples: list[float]  # E = B·S (tokens)
  s_min: float
  s_min_se: float
  e_min: float
  e_min_se: float
  cov_s_e: float  # covariance of (S_min, E_min)
  b_crit: float  # E_min / S_min (tokens)
  b_crit_se: float  # delta method
  b_crit_lo: float  # 95% interval, log-normal from the delta method
  b_crit_hi: float
  dof: int
  rms_rel_resid: float  # rms of (S - fit)/S

  @property
  def log_b_crit_se(self) -> float:
    return self.b_crit_se / self.b_crit

  @property
  def log_b_crit_error(self) -> float:
    """The level's own 95% interval as a standard error of log B_crit (`error_of_interval`):
    with few batch sizes, wider than the delta method's se by t(dof)/1.96."""
    return error_of_interval(self.b_crit_lo, self.b_crit_hi)

  def steps_at(self, batch_tokens):
    """The fitted S(B) = S_min + E_min / B."""
    return self.s_min + self.e_min / np.asarray(batch_tokens, float)


def fit_level(batch_tokens, steps, loss: float = 0.0) -> LevelFit:
  """Fits S = S_min + E_min/B (weighted by 1/S²: relative errors) at one loss level.

  Needs >= MIN_BATCH_SIZES distinct batch sizes; raises BatchSweepError if the fit gives
  S_min <= 0 or E_min <= 0 (no trade-off visible: widen the batch range).
  """
  b, s = np.asarray(batch_tokens, float), np.asarray(steps, float)
  if b.shape != s.shape:
    raise BatchSweepError(f"{b.size} batch sizes but {s.size} step counts; pass one per curve")
  if not (np.all(np.isfinite(b)) and np.all(np.isfinite(s))) or np.any(b <= 0) or np.any(s <= 0):
    raise BatchSweepError("batch sizes and steps must be positive and finite (no NaN)")
  n_b = len(np.unique(b))
  if n_b < MIN_BATCH_SIZES:
    raise BatchSweepError(f"loss {loss:.4g}: {n_b} distinct batch sizes reach it; the S_min/E_min "
                          f"fit needs >= {MIN_BATCH_SIZES}: run more batch sizes")
  s_fit, e_fit, cov, dof, _ = _wls_line(1.0 / b, s, 1.0 / s**2)
  if not (s_fit > 0 and e_fit > 0):
    raise BatchSweepError(
        f"loss {loss:.4g}: fit gives S_min={s_fit:.4g}, E_min={e_fit:.4g}; both must be > 0 "
        "(steps must fall as the batch grows, and level off): widen the batch-size range")
  var_s, var_e, cov_se = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
  bc = e_fit / s_fit
  var_log_bc = max(var_e / e_fit**2 + var_s / s_fit**2 - 2 * cov_se / (e_fit * s_fit), 0.0)
  se_log = math.sqrt(var_log_bc)
  t = t_quantile_975(dof) if dof > 0 else 0.0
  resid = (s - (s_fit + e_fit / b)) / s
  return LevelFit(
      loss=float(loss), batch_tokens=b.tolist(), steps=s.tolist(), examples=(b * s).tolist(),
      s_min=s_fit, s_min_se=math.sqrt(max(var_s, 0.0)), e_min=e_fit,
      e_min_se=math.sqrt(max(var_e, 0.0)), cov_s_e=cov_se, b_crit=bc, b_crit_se=bc * se_log,
      b_crit_lo=bc * math.exp(-t * se_log), b_crit_hi=bc * math.exp(t * se_log), dof=dof,
      rms_rel_resid=float(np.sqrt(np.mean(resid**2))))


@dataclasses.dataclass
class PowerLawFit:
  """B_crit(L) = B_* / L^(1/α_B), fitted as log B_crit = log B_* − (1/α_B) log L."""
  b_star: float  # tokens
  b_star_lo: float  # 95% intervals
  b_star_hi: float
  alpha_b: float
  alpha_b_lo: float | None  # None: the slope's interval reaches 0 (α_B unbounded)
  alpha_b_hi: float | None
  slope: float  # −1/α_B
  slope_se: float
  log_b_star_se: float
  n_levels: int
  weighted: bool  # by the levels' 1/se(log B_crit)²

  @property
  def tested(self) -> bool:
    """False for a law through fewer than MIN_LEVELS levels: determined by them, not tested."""
    return self.n_levels >= MIN_LEVELS

  def predict(self, loss):
    return self.b_star / np.asarray(loss, float) ** (1.0 / self.alpha_b)


def fit_b_crit_power_law(loss, b_crit, log_b_crit_se=None) -> PowerLawFit:
  """Fits B_crit(L) = B_* / L^(1/α_B) by (weighted) least squares in log space.

  log_b_crit_se: each level's error (`error_of_interval` of its own 95% interval). Weights
  1/se² when every level has one, else unweighted (and then >= 3 levels). Weighted, the errors
  count as known: the intervals are never narrower than they allow, however well the few
  levels happen to line up, and two levels suffice (a line through them, untested). The
  levels share runs, so their errors are correlated; the intervals are a guide, not exact.
  """
  l, bc = np.asarray(loss, float), np.asarray(b_crit, float)
  if l.shape != bc.shape:
    raise BatchSweepError(f"{l.size} losses but {bc.size} B_crit values; pass one per level")
  if not (np.all(np.isfinite(l)) and np.all(np.isfinite(bc))) or np.any(l <= 0) or np.any(bc <= 0):
    raise BatchSweepError("losses and B_crit values must be positive and finite (no NaN)")
  weighted = False
  w = np.ones_like(l)
  if log_b_crit_se is not None:
    se = np.asarray(log_b_crit_se, float)
    if se.shape == l.shape and np.all(np.isfinite(se)) and np.all(se > 0):
      w, weighted = 1.0 / se**2, True
  needed = MIN_LEVELS_KNOWN_ERRORS if weighted else MIN_LEVELS
  if len(np.unique(l)) < needed:
    why = "" if weighted or log_b_crit_se is None else " (a level's error is not a positive number)"
    raise BatchSweepError(f"{len(np.unique(l))} distinct loss levels; the B_crit(L) power law "
                          f"needs >= {needed}{'' if weighted else ' (2 if each has an error)'}"
                          f"{why}: use more levels or a wider loss range")
  a, b, cov, dof, s2 = _wls_line(np.log(l), np.log(bc), w, scale_floor=1.0 if weighted else 0.0)
  if not b < 0:
    raise BatchSweepError(f"B_crit does not fall with the loss (slope {b:.3g} in log space); "
                          "the power law needs B_crit to grow as the loss drops")
  se_a, se_b = math.sqrt(max(cov[0, 0], 0.0)), math.sqrt(max(cov[1, 1], 0.0))
  # Where the levels' own errors set the scale (always for two levels, which leave no dof), they
  # are taken as known: the normal quantile, so a third level on the line narrows the interval.
  # Where the levels scatter more than those errors allow, the residual scale: Student's t.
  t = Z_975 if weighted and s2 <= 1.0 else t_quantile_975(dof)
  b_lo, b_hi = b - t * se_b, b + t * se_b  # slope interval; α = −1/slope
  return PowerLawFit(
      b_star=math.exp(a), b_star_lo=math.exp(a - t * se_a), b_star_hi=math.exp(a + t * se_a),
      alpha_b=-1.0 / b, alpha_b_lo=-1.0 / b_lo if b_hi < 0 else None,
      alpha_b_hi=-1.0 / b_hi if b_hi < 0 else None, slope=b, slope_se=se_b, log_b_star_se=se_a,
      n_levels=len(l), weighted=weighted)


def power_law_or_note(loss, b_crit, log_b_crit_error, name: str, what: str, notes: list[str],
                      source: str = "") -> PowerLawFit | None:
  """`fit_b_crit_power_law` of the levels one method (`source`) measured, or None with a note in
  `notes` saying why; a law through only two levels comes with a note that it is untested."""
  src = f" from {source}" if source else ""
  if len(loss) < MIN_LEVELS_KNOWN_ERRORS:
    notes.append(f"no {name} power law{src}: {len(loss)} {what}, it needs >= "
                 f"{MIN_LEVELS_KNOWN_ERRORS} (each with its error) or {MIN_LEVELS}")
    return None
  try:
    law = fit_b_crit_power_law(loss, b_crit, log_b_crit_error)
  except BatchSweepError as e:
    notes.append(f"no {name} power law{src}: {e}")
    return None
  if not law.tested:
    notes.append(f"{name}{src}: {law.n_levels} {what}, so the power law goes through them (its "
                 "interval from their errors alone) and is not tested by them")
  return law


# ---------------------------------------------------------------------------- the analysis


@dataclasses.dataclass
class BatchSweepResult:
  """Per-level S_min, E_min, B_crit, the B_crit(L) power law, and notes on what was skipped."""
  batch_tokens: list[float]  # of every curve, in input order
  names: list[str]
  levels: list[LevelFit]
  power_law: PowerLawFit | None
  notes: list[str]

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    _check_finite(d)
    return d

  def to_json(self, path: str | None = None) -> str:
    """JSON text (never NaN: allow_nan=False); written atomically to `path` if given."""
    d = self.to_dict()
    if path is not None:
      rundir.write_json_atomic(path, d)
    return json.dumps(d, indent=2, sort_keys=True, allow_nan=False)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "BatchSweepResult":
    return cls(batch_tokens=list(d["batch_tokens"]), names=list(d["names"]),
               levels=[LevelFit(**lv) for lv in d["levels"]],
               power_law=PowerLawFit(**d["power_law"]) if d.get("power_law") else None,
               notes=list(d["notes"]))


def _check_finite(obj: Any, where: str = "result") -> None:
  if isinstance(obj, float) and not math.isfinite(obj):
    raise AssertionError(f"non-finite value at {where}")  # a bug here, not bad input
  if isinstance(obj, dict):
    for k, v in obj.items():
      _check_finite(v, f"{where}.{k}")
  elif isinstance(obj, (list, tuple)):
    for i, v in enumerate(obj):
      _check_finite(v, f"{where}[{i}]")


def analyze_batch_sweep(curves: Iterable[Curve | Sequence[Any]], levels=None,
                        n_levels: int = 6) -> BatchSweepResult:
  """S_min, E_min, B_crit per loss level, and the B_crit(L) power law, from learning curves.

  `curves`: Curves or (batch_tokens, steps, loss) tuples of one model at several batch
  sizes (already smoothed; see `curves_from_runs`). `levels`: losses to analyse, default
  `default_levels`. A curve that never reaches a level is skipped there; a level with fewer
  than MIN_BATCH_SIZES distinct batch sizes, or an unphysical fit, is dropped with a note.
  Raises BatchSweepError if fewer than MIN_BATCH_SIZES batch sizes, or no level survives.
  """
  curves = as_curves(curves)
  n_b = len({c.batch_tokens for c in curves})
  if n_b < MIN_BATCH_SIZES:
    raise BatchSweepError(f"{n_b} distinct batch sizes; a critical-batch analysis needs "
                          f">= {MIN_BATCH_SIZES} runs of one model at different batch sizes")
  if levels is None:
    levels = default_levels(curves, n_levels)
    if len(levels) == 0:
      raise BatchSweepError(f"no loss is reached by >= {MIN_BATCH_SIZES} curves after their first "
                            "point; train longer or pass levels=")
  levels = np.asarray(levels, float).ravel()
  if len(levels) == 0 or not np.all(np.isfinite(levels)) or np.any(levels <= 0):
    raise BatchSweepError(f"levels={levels.tolist()} must be positive finite losses (nats/token)")
  names = [c.name or f"B={c.batch_tokens:g}" for c in curves]
  notes, fits = [], []
  for level in np.unique(levels)[::-1]:
    b, s = [], []
    for c, name in zip(curves, names):
      step = steps_to_loss(c.steps, c.loss, level)
      if step is None or step <= 0:
        notes.append(f"loss {level:.4g}: {name} does not cross it within its data; skipped")
      else:
        b.append(c.batch_tokens)
        s.append(step)
    try:
      fits.append(fit_level(b, s, level))
    except BatchSweepError as e:
      notes.append(f"loss {level:.4g} dropped: {e}")
  if not fits:
    raise BatchSweepError("no loss level could be fitted:\n  " + "\n  ".join(notes[-5:]))
  power_law = power_law_or_note([f.loss for f in fits], [f.b_crit for f in fits],
                                [f.log_b_crit_error for f in fits], "B_crit(L)", "fitted levels",
                                notes)
  return BatchSweepResult(batch_tokens=[c.batch_tokens for c in curves], names=names,
                          levels=fits, power_law=power_law, notes=notes)


# ---------------------------------------------------------------------------- run dirs


def _as_runs(runs: str | Sequence[Any]) -> list[runs_lib.Run]:
  """Runs from a root directory, a list of run directories, or Run records."""
  if isinstance(runs, str):
    return runs_lib.read_runs(runs)
  out = []
  for r in runs:
    run = r if isinstance(r, runs_lib.Run) else runs_lib.read_run(str(r))
    if run is not None:
      out.append(run)
  return out


def curves_from_runs(runs: str | Sequence[Any], key: str | None = None,
                     decay: float = 0.8) -> tuple[list[Curve], list[str]]:
  """(curves, notes) from runs (a root directory, run directories, or `runs.Run` records).

  Loss: the run's analysed loss (`Run.loss_key`: eval where logged, else the train loss,
  smoothed by `smooth_loss(decay)`). A curve is cut at its first NaN/inf; runs without two
  loss points are skipped with a note. All runs must be one model (same n_params): filter
  the runs first if a sweep mixes sizes.
  """
  curves, notes, n_params = [], [], {}
  for run in _as_runs(runs):
    k = key or run.loss_key
    steps, loss = (np.asarray(v, float) for v in metrics_lib.series(run.records, k))
    bad = np.nonzero(~np.isfinite(loss))[0]
    if bad.size:
      notes.append(f"{run.path}: {k} is non-finite from step {int(steps[bad[0]])}; curve cut "
                   "there")
      steps, loss = steps[:bad[0]], loss[:bad[0]]
    if steps.size < 2:
      notes.append(f"{run.path}: fewer than 2 finite {k!r} points; skipped")
      continue
    if k == keys.LOSS:
      loss = smooth_loss(loss, decay)
    n_params[run.path] = run.n_params
    curves.append(Curve(run.batch_tokens, steps, loss, name=str(run.path)))
  if len(set(n_params.values())) > 1:
    sizes = sorted(set(map(str, n_params.values())))
    raise BatchSweepError(f"runs of different models (n_params {sizes}); "
                          "a batch sweep compares one model: pass only its run dirs")
  return curves, notes
