"""The one B_crit(L) chooser: every command's S_min, C_min and frontier use its answer.

`choose_b_crit(spec, runs)` returns a `BCritLaw`, a callable B_crit(L) in tokens with its
parameters, intervals and provenance. `spec` is one of:

  "gns"     B_crit(L) = B_*/L^(1/alpha_B) fitted to the pooled gradient noise scale
            (`gns/b_simple_tokens`) of all the study's runs against their loss, with the
            LR schedule's effect on it taken out (below); intervals from a bootstrap over
            runs.
  "sweep"   the same law fitted to the per-level B_crit = E_min/S_min of a batch-size sweep
            (runs of one model at >= 3 batch sizes; Kaplan Eq. 5.4, `batch.analyze_batch_sweep`).
  "kaplan"  Kaplan et al.'s fit, B_* = 2e8 tokens, alpha_B = 0.21 (Eq. 5.3).
  "none"    no adjustment: S_min = S, C_min = C; no frontier.
  a number  a constant B_crit in tokens.
  a callable loss -> B_crit (tokens), e.g. another study's law.

Which GNS readings measure B_crit(L). B_simple = tr(Sigma)/|G|^2 depends on where the
optimizer holds the parameters, not only on the loss: at learning rate eta, noisy steps keep
the iterate ~eta away from the floor of the valley it is in, and |G|^2 is dominated by that
displacement. When a schedule anneals eta, |G|^2 falls with it while tr(Sigma) stays, so
B_simple climbs although the loss barely moves. Measured on the demo (5 runs, cosine to
zero over 400 steps; `bench/bench_gns_rule.py`, BENCHMARKS.md "GNS and the LR schedule"):
  - there is no stretch where B_simple follows the loss alone: at a matched loss, the other
    runs' B_simple over the largest run's at full LR is 1.3x at LR 0.8-1.0 x peak, 1.8x at
    0.6-0.8, 2.1x at 0.4-0.6, 2.7x at 0.2-0.4, 3.0x at 0.1-0.2 and 4.7x below 0.1;
  - below 0.2 x peak B_simple grows 6x while the loss falls 1%.
So the law is fitted as B_simple = B_*/L^(1/alpha_B) x (LR/peak LR)^(-gamma), pooled over
the study's runs (which reach each loss at different points of their schedules, so L and
LR separate), and B_crit(L) is the law at the peak LR. It keeps readings (a) after the
warmup and one EMA horizon (1/(1 - gns.ema) steps), and (b) at LR >= GNS_MIN_LR_FRACTION =
0.1 x the run's peak: the power law in LR cannot reach LR = 0, and the readings of the
last tenth of the schedule inform gamma only. On the demo the result hardly depends on that
floor (alpha_B = 0.131, 0.127, 0.132, 0.137 for floors 0.5, 0.2, 0.1, 0.05; gamma ~0.5),
whereas a fit of B_simple against L alone gives alpha_B ~0.10 whatever the floor. The
readings left out are returned (`GnsPoints.kept`) and drawn open in the report's figure.
Runs that logged no LR (or a constant one) are fitted without the LR term.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

from scaling_jax import metric_keys as keys
from scaling_jax.scaling import batch as batch_lib
from scaling_jax.scaling import reference
from scaling_jax.scaling import runs as runs_lib
from scaling_jax.scaling.laws import FitError, c_min, s_min

KAPLAN = reference.KAPLAN_B_CRIT  # Eq. 5.3: B_* = 2e8 tokens, alpha_B = 0.21
GNS_MIN_LR_FRACTION = 0.1  # keep GNS readings taken at >= this fraction of the peak LR
SPECS = ("gns", "sweep", "kaplan", "none")
Spec = str | float | int | Callable[[np.ndarray], np.ndarray] | None  # or a BCritLaw


@dataclasses.dataclass
class GnsPoints:
  """Pooled GNS readings of a study: one entry per reading, with whether the fit kept it."""
  run: np.ndarray  # run name of each reading (object)
  step: np.ndarray
  loss: np.ndarray  # the run's analysed loss interpolated at the reading's step
  b_simple: np.ndarray  # tokens
  lr_fraction: np.ndarray  # LR / the run's peak LR (NaN if the run logged no LR)
  kept: np.ndarray  # bool: used by the fit


@dataclasses.dataclass
class BCritLaw:
  """B_crit(L) in tokens as chosen for a study, with where it came from."""
  source: str  # gns | sweep | kaplan | none | constant | callable
  description: str
  b_star: float | None = None  # B_crit = B_*/L^(1/alpha_B); alpha_B = inf for a constant
  alpha_b: float | None = None
  b_star_interval: tuple[float, float] | None = None
  alpha_b_interval: tuple[float, float] | None = None
  lr_exponent: float | None = None  # gamma of B_simple ∝ (LR/peak)^-gamma (gns only)
  lr_exponent_interval: tuple[float, float] | None = None
  level: float = 0.95
  n_points: int = 0
  n_runs: int = 0
  points: GnsPoints | None = None
  fn: Callable[[np.ndarray], np.ndarray] | None = dataclasses.field(default=None, repr=False)
  notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def adjusts(self) -> bool:
    """False for 'none': S_min = S and C_min = C."""
    return self.source != "none"

  @property
  def params(self) -> dict[str, float] | None:
    """{'B_star', 'alpha_B'} for the frontier; None for 'none' and callables."""
    if self.b_star is None or self.alpha_b is None:
      return None
    return {"B_star": self.b_star, "alpha_B": self.alpha_b}

  def __call__(self, loss) -> np.ndarray:
    loss = np.asarray(loss, float)
    if self.fn is not None:
      return np.asarray(self.fn(loss), float) * np.ones_like(loss)
    if self.params is None:
      return np.full(loss.shape, np.nan)
    return self.b_star * np.exp(-np.log(loss) / self.alpha_b)

  @property
  def table_fn(self) -> Callable[[np.ndarray], np.ndarray] | None:
    """What `runs.learning_table` takes: self, or None for no adjustment."""
    return self if self.adjusts else None

  def to_dict(self) -> dict[str, Any]:
    """Strict JSON: alpha_B of a constant B_crit (infinite) and other non-finite values are
    null."""
    def finite(v):
      return v if v is not None and math.isfinite(v) else None

    def interval(iv):
      return [finite(iv[0]), finite(iv[1])] if iv else None

    return {"source": self.source, "description": self.description,
            "B_star": finite(self.b_star), "alpha_B": finite(self.alpha_b),
            "constant": self.alpha_b is not None and not math.isfinite(self.alpha_b),
            "B_star_interval": interval(self.b_star_interval),
            "alpha_B_interval": interval(self.alpha_b_interval),
            "lr_exponent": self.lr_exponent,
            "lr_exponent_interval": interval(self.lr_exponent_interval),
            "level": self.level, "n_points": self.n_points, "n_runs": self.n_runs,
            "notes": list(self.notes)}


def parse_spec(text: str) -> Spec:
  """A command-line --b-crit value: one of SPECS, or a positive number of tokens."""
  if text in SPECS:
    return text
  try:
    value = float(text)
  except ValueError:
    raise FitError(f"--b-crit {text!r} is not one of {', '.join(SPECS)} or a number of "
                   "tokens (e.g. --b-crit 2e5)") from None
  if not (math.isfinite(value) and value > 0):
    raise FitError(f"--b-crit {text!r}: a constant B_crit must be a positive number of tokens")
  return value


# ------------------------------------------------------------------------------ GNS


def ema_horizon(run: runs_lib.Run) -> int:
  """Steps the run's GNS EMAs need to forget their start: 1/(1 - gns.ema)."""
  decay = float(run.config.get("gns", {}).get("ema", 0.95) or 0.0)
  return int(round(1.0 / (1.0 - decay))) if 0 <= decay < 1 else 0


def gns_points(runs: Sequence[runs_lib.Run], *,
               min_lr_fraction: float = GNS_MIN_LR_FRACTION) -> GnsPoints:
  """Every positive GNS reading of the runs, against the loss at its step, each marked kept
  (used by the B_crit(L) fit) or not by the rule in the module docstring."""
  cols: dict[str, list] = {k: [] for k in ("run", "step", "loss", "b_simple", "lr_fraction",
                                           "kept")}
  for run in runs:
    gs, gv = run.b_simple
    ls, lv = run.loss
    if not len(gs) or len(ls) < 2:
      continue
    inside = (gs >= ls[0]) & (gs <= ls[-1])
    gs, gv = gs[inside], gv[inside]
    lr = run.lr_at(gs)
    _, lr_all = run.series(keys.LR)
    frac = lr / lr_all.max() if len(lr_all) and lr_all.max() > 0 else np.full(len(gs), np.nan)
    kept = gs >= run.warmup_steps + ema_horizon(run)
    kept &= np.where(np.isfinite(frac), frac >= min_lr_fraction, True)
    for col, v in (("run", [run.name] * len(gs)), ("step", gs), ("loss", np.interp(gs, ls, lv)),
                   ("b_simple", gv), ("lr_fraction", frac), ("kept", kept)):
      cols[col].extend(np.asarray(v).tolist())
  return GnsPoints(run=np.asarray(cols["run"], dtype=object),
                   step=np.asarray(cols["step"], float), loss=np.asarray(cols["loss"], float),
                   b_simple=np.asarray(cols["b_simple"], float),
                   lr_fraction=np.asarray(cols["lr_fraction"], float),
                   kept=np.asarray(cols["kept"], bool))


def _regress(loss: np.ndarray, b: np.ndarray, lr_fraction: np.ndarray | None
             ) -> tuple[float, float, float]:
  """(B_*, alpha_B, gamma) of log B = log B_* - (1/alpha_B) log L - gamma log(LR/peak),
  least squares in log space (gamma = 0 without LR). alpha_B = inf when B does not fall
  with L (no trend: a constant B_crit)."""
  cols = [np.ones_like(loss), np.log(loss)]
  if lr_fraction is not None:
    cols.append(np.log(lr_fraction))
  coef = np.linalg.lstsq(np.stack(cols, axis=1), np.log(b), rcond=None)[0]
  gamma = float(-coef[2]) if lr_fraction is not None else 0.0
  if not coef[1] < 0:
    return float(np.exp(np.mean(np.log(b)))), math.inf, gamma
  return float(np.exp(coef[0])), float(-1.0 / coef[1]), gamma


def fit_gns_law(points: GnsPoints, *, bootstrap: int = 200, level: float = 0.95,
                seed: int = 0) -> BCritLaw:
  """B_crit(L) = B_*/L^(1/alpha_B) from the kept GNS readings, intervals by resampling runs.

  Where the runs logged their LR, the readings are fitted as
  B_simple = B_*/L^(1/alpha_B) x (LR/peak LR)^(-gamma): at a matched loss, B_simple is larger
  the further the schedule has annealed (module docstring), so the LR term takes that out
  and B_crit(L) is the law at the peak LR. Readings of one run are strongly correlated (an
  EMA, and the run's own offset), so the bootstrap draws whole runs with replacement; with
  few runs its percentile intervals are rough.
  """
  kept = points.kept
  runs_kept = np.unique(points.run[kept])
  if kept.sum() < 3 or len(np.unique(points.loss[kept])) < 3:
    raise FitError(f"{int(kept.sum())} usable GNS readings (of {len(kept)}); the B_crit(L) "
                   "fit needs >= 3 at distinct losses: log the GNS (gns.enabled=True) and "
                   "train past the warmup for longer, or pass --b-crit kaplan, none or a "
                   "number of tokens")
  loss, b, frac = points.loss[kept], points.b_simple[kept], points.lr_fraction[kept]
  with_lr = bool(np.all(np.isfinite(frac)) and np.ptp(np.log(frac)) > 0.5)
  frac = frac if with_lr else None
  b_star, alpha_b, gamma = _regress(loss, b, frac)
  notes = []
  b_iv = a_iv = g_iv = None
  if bootstrap and len(runs_kept) >= 2:
    rng = np.random.default_rng(seed)
    by_run = {r: np.flatnonzero(points.run[kept] == r) for r in runs_kept}
    draws = []
    for _ in range(bootstrap):
      pick = rng.choice(runs_kept, len(runs_kept), replace=True)
      idx = np.concatenate([by_run[r] for r in pick])
      if len(np.unique(loss[idx])) >= 3:
        draws.append(_regress(loss[idx], b[idx], None if frac is None else frac[idx]))
    if draws:
      d = np.asarray(draws)
      q = 100 * (1 - level) / 2
      with np.errstate(invalid="ignore"):  # alpha_B = inf (no trend) in some resamples
        b_iv, a_iv, g_iv = (tuple(float(x) for x in np.percentile(
            d[:, j], [q, 100 - q], method="inverted_cdf")) for j in range(3))
  if len(runs_kept) < 4:
    notes.append(f"GNS law from {len(runs_kept)} runs: its run-bootstrap intervals are rough")
  if not math.isfinite(alpha_b):
    notes.append("B_simple does not fall with the loss over the kept readings: B_crit is "
                 f"taken as constant, {b_star:.3g} tokens")
  lr_text = (f", corrected to the peak LR: B_simple ∝ (LR/peak)^-{gamma:.2f}" if with_lr
             else "")
  return BCritLaw(
      source="gns", b_star=b_star, alpha_b=alpha_b, b_star_interval=b_iv, alpha_b_interval=a_iv,
      lr_exponent=gamma if with_lr else None, lr_exponent_interval=g_iv if with_lr else None,
      level=level, n_points=int(kept.sum()), n_runs=len(runs_kept), points=points, notes=notes,
      description=(f"B_*/L^(1/alpha_B) fitted to {int(kept.sum())} GNS readings of "
                   f"{len(runs_kept)} runs (LR >= {GNS_MIN_LR_FRACTION:g} x peak){lr_text}"))


# ------------------------------------------------------------------------------ sweep


def fit_sweep_law(runs: Sequence[runs_lib.Run]) -> BCritLaw:
  """B_crit(L) from the runs of one model at >= 3 batch sizes (the model with the most)."""
  by_n: dict[float, list[runs_lib.Run]] = {}
  for r in runs:
    by_n.setdefault(r.n_params, []).append(r)
  n, group = max(by_n.items(), key=lambda kv: len({r.batch_tokens for r in kv[1]}))
  try:
    curves, notes = batch_lib.curves_from_runs(group)
    result = batch_lib.analyze_batch_sweep(curves)
  except batch_lib.BatchSweepError as e:
    raise FitError(f"--b-crit sweep: {e}") from None
  pl = result.power_law
  if pl is None:
    raise FitError("--b-crit sweep: no B_crit(L) power law from the batch sweep ("
                   + "; ".join(result.notes[-2:]) + ")")
  a_iv = (pl.alpha_b_lo, pl.alpha_b_hi) if pl.alpha_b_lo is not None else None
  return BCritLaw(
      source="sweep", b_star=pl.b_star, alpha_b=pl.alpha_b,
      b_star_interval=(pl.b_star_lo, pl.b_star_hi), alpha_b_interval=a_iv,
      n_points=pl.n_levels, n_runs=len(group), notes=notes + result.notes,
      description=(f"B_*/L^(1/alpha_B) from a batch-size sweep of N = {n:.3g} "
                   f"({len(group)} runs, {pl.n_levels} loss levels)"))


# ------------------------------------------------------------------------------ chooser


def kaplan_law() -> BCritLaw:
  return BCritLaw(source="kaplan", b_star=KAPLAN["B_star"], alpha_b=KAPLAN["alpha_B"],
                  description="Kaplan et al. 2020 Eq. 5.3: B_* = 2e8 tokens, alpha_B = 0.21")


def choose_b_crit(spec: Spec, runs: Sequence[runs_lib.Run] | None = None, *,
                  gns: GnsPoints | None = None, bootstrap: int = 200, level: float = 0.95,
                  seed: int = 0) -> BCritLaw:
  """The B_crit(L) law `spec` names (see the module docstring), fitted to `runs` (or to
  `gns`, GNS readings from a table) where it is measured. A BCritLaw passes through."""
  if isinstance(spec, BCritLaw):
    return spec
  if spec is None or spec == "none":
    return BCritLaw(source="none", description="no adjustment (S_min = S, C_min = C)")
  if spec == "kaplan":
    return kaplan_law()
  if isinstance(spec, (int, float)) and not isinstance(spec, bool):
    if not (math.isfinite(spec) and spec > 0):
      raise FitError(f"a constant B_crit must be a positive number of tokens, got {spec!r}")
    return BCritLaw(source="constant", b_star=float(spec), alpha_b=math.inf,
                    description=f"constant B_crit = {float(spec):.4g} tokens")
  if callable(spec):
    return BCritLaw(source="callable", fn=spec, description="a B_crit(L) function given by "
                    f"the caller ({getattr(spec, '__name__', type(spec).__name__)})")
  if spec == "gns":
    if gns is None:
      if not runs:
        raise FitError("--b-crit gns needs run directories with GNS logged, or a table with "
                       "a B_simple column")
      gns = gns_points(runs)
    return fit_gns_law(gns, bootstrap=bootstrap, level=level, seed=seed)
  if spec == "sweep":
    if not runs:
      raise FitError("--b-crit sweep needs the run directories of a batch-size sweep")
    return fit_sweep_law(runs)
  raise FitError(f"b_crit must be one of {SPECS}, a positive number of tokens or a callable "
                 f"B_crit(L); got {spec!r}")


def table_gns_points(table: dict[str, np.ndarray]) -> GnsPoints:
  """GNS readings from a table's B_simple column (and lr_fraction, if it has one)."""
  if "B_simple" not in table:
    raise FitError("--b-crit gns on a table needs a B_simple column (tokens, the GNS at each "
                   "row); add it, or pass --b-crit kaplan, --b-crit none or --b-crit NUMBER")
  b = np.asarray(table["B_simple"], float)
  loss = np.asarray(table["L"], float)
  frac = np.asarray(table.get("lr_fraction", np.full(len(b), np.nan)), float)
  ok = np.isfinite(b) & (b > 0) & np.isfinite(loss) & (loss > 0)
  kept = ok & np.where(np.isfinite(frac), frac >= GNS_MIN_LR_FRACTION, True)
  run = np.asarray(table.get("run", np.arange(len(b)).astype(str)), dtype=object)
  return GnsPoints(run=run, step=np.asarray(table.get("S", np.full(len(b), np.nan)), float),
                   loss=loss, b_simple=b, lr_fraction=frac, kept=kept)


def adjust_table(table: dict[str, np.ndarray], law: BCritLaw) -> dict[str, np.ndarray]:
  """The table with B_crit, S_min and C_min derived from its S, B, C, L columns by `law`
  (columns it already has are kept when the law is 'none')."""
  missing = [c for c in ("S", "B", "L") if c not in table]
  if missing:
    raise FitError(f"deriving S_min needs columns S, B and L; the table lacks {missing}")
  out = dict(table)
  loss = np.asarray(table["L"], float)
  b = np.asarray(table["B"], float)
  steps = np.asarray(table["S"], float)
  flops = np.asarray(table["C"], float) if "C" in table else np.full(len(loss), np.nan)
  if not law.adjusts:
    out.setdefault("B_crit", np.full(len(loss), np.nan))
    out.setdefault("S_min", steps)
    out.setdefault("C_min", flops)
    return out
  bc = law(loss)
  out["B_crit"], out["S_min"], out["C_min"] = bc, s_min(steps, b, bc), c_min(flops, b, bc)
  return out


__all__ = ["BCritLaw", "GnsPoints", "choose_b_crit", "gns_points", "fit_gns_law",
           "fit_sweep_law", "kaplan_law", "parse_spec", "table_gns_points", "adjust_table",
           "KAPLAN", "SPECS", "GNS_MIN_LR_FRACTION"]
