"""Branched probes: the critical batch at one point of training (Merrill et al. 2025).

From a checkpoint of a base run at loss L_0, short branches at a ladder of batch sizes B
each train until the loss falls to a target L_1 < L_0; S(B) is the steps each needed. Two
definitions of the critical batch are read from the ladder:

- Kaplan / McCandlish: S = S_min + E_min/B (`batch.fit_level`, the same fit as a batch
  sweep's loss level), B_crit = E_min/S_min.
- Zhang et al. 2024: the batch at which the steps exceed perfect linear scaling by 20%.
  Perfect scaling is anchored at the smallest batch of the ladder, B_0: S_lin(B) =
  S(B_0) B_0/B, and B_20 is where S(B)/S_lin(B) = B S(B) / (B_0 S(B_0)) first reaches 1.2,
  interpolated in log B between the two rungs around the crossing (model-free). On an exact
  hyperbola this is B_20 = 0.2 B_crit + 1.2 B_0: the two definitions differ by about 5x by
  construction, so they are compared with each other only through that relation.

Intervals: a parametric bootstrap that multiplies every S by exp(sigma z), sigma the
relative noise of the steps: the rms relative residual of the hyperbola fit (scaled by
n/dof) combined with the resolution the steps were read at (evaluations every `resolution`
steps: a uniform error, sd resolution/sqrt(12)/S). Both estimators are recomputed on every
draw; 95% percentile intervals. The probe's loss level, where B_crit(L) is compared with the
other methods, is the middle of its drop, (L_0 + L_1)/2.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from scaling_jax.scaling import batch as batch_lib

EXCESS = 0.2  # Zhang et al. 2024: steps 20% above perfect linear scaling


class ProbeError(batch_lib.BatchSweepError):
  """A probe ladder that cannot be analysed; the message says what to change."""


def batch_at_excess(batch_tokens, steps, excess: float = EXCESS) -> float | None:
  """The batch at which B S(B) / (B_0 S(B_0)) first reaches 1 + excess, B_0 the smallest
  batch; log-linear between the rungs around the crossing. None if no rung reaches it."""
  b, s = np.asarray(batch_tokens, float), np.asarray(steps, float)
  order = np.argsort(b)
  b, s = b[order], s[order]
  ratio = b * s / (b[0] * s[0])
  above = np.nonzero(ratio >= 1 + excess)[0]
  if above.size == 0:
    return None
  i = above[0]
  r0, r1 = ratio[i - 1], ratio[i]
  f = (1 + excess - r0) / (r1 - r0)
  return float(np.exp(np.log(b[i - 1]) + f * (np.log(b[i]) - np.log(b[i - 1]))))


@dataclasses.dataclass
class ProbeFit:
  """The critical batch at one branch point, both ways, with 95% intervals (tokens)."""
  start_step: int  # the base run's step the branches started from
  start_loss: float  # L_0 (the base run's eval loss there)
  target_loss: float  # L_1
  loss: float  # the level it is compared at: (L_0 + L_1)/2
  batch_tokens: list[float]
  steps: list[float]  # S(B) to reach the target
  s_min: float
  e_min: float
  b_crit: float  # E_min / S_min
  b_crit_lo: float
  b_crit_hi: float
  b_excess: float | None  # B_20; None: no rung exceeded perfect scaling by `excess`
  b_excess_lo: float | None
  b_excess_hi: float | None
  excess: float
  rel_noise: float  # sigma of the bootstrap
  rms_rel_resid: float
  notes: list[str]

  @property
  def log_b_crit_error(self) -> float:
    return batch_lib.error_of_interval(self.b_crit_lo, self.b_crit_hi)

  @property
  def log_b_excess_error(self) -> float:
    return batch_lib.error_of_interval(self.b_excess_lo, self.b_excess_hi)


def analyze_probe(batch_tokens: Sequence[float], steps: Sequence[float], *, start_loss: float,
                  target_loss: float, start_step: int = 0, resolution: float = 0.0,
                  excess: float = EXCESS, bootstrap: int = 1000, seed: int = 0) -> ProbeFit:
  """Both critical batches of one ladder (module docstring). Needs >= 3 distinct batches;
  raises ProbeError when the hyperbola fit is unphysical (steps do not fall with B)."""
  b, s = np.asarray(batch_tokens, float), np.asarray(steps, float)
  if not (math.isfinite(start_loss) and math.isfinite(target_loss)
          and 0 < target_loss < start_loss):
    raise ProbeError(f"target loss {target_loss} must be below the start loss {start_loss} "
                     "and positive")
  if not excess > 0:
    raise ProbeError(f"excess={excess} must be > 0 (Zhang et al.: 0.2)")
  level = 0.5 * (start_loss + target_loss)
  try:
    fit = batch_lib.fit_level(b, s, level)
  except batch_lib.BatchSweepError as e:
    raise ProbeError(f"branch point at step {start_step}: {e}") from None
  n = len(b)
  sigma = math.hypot(fit.rms_rel_resid * math.sqrt(n / max(fit.dof, 1)),
                     float(np.max(resolution / math.sqrt(12) / s)))
  b_ex = batch_at_excess(b, s, excess)
  notes = []
  if b_ex is None:
    notes.append(f"step {start_step}: no batch up to {b.max():g} tokens needs {excess:.0%} more "
                 "steps than perfect scaling; B_20 is above the ladder: add larger batches")
  rng = np.random.default_rng(seed)
  crit, ex = [], []
  for _ in range(bootstrap):
    s_draw = s * np.exp(sigma * rng.standard_normal(n))
    try:
      f = batch_lib.fit_level(b, s_draw, level)
    except batch_lib.BatchSweepError:
      crit.append(np.inf)  # steps no longer fall with B: B_crit beyond the ladder
    else:
      crit.append(f.b_crit)
    e = batch_at_excess(b, s_draw, excess)
    ex.append(np.inf if e is None else e)
  crit_iv = _percentiles(crit) if bootstrap else (fit.b_crit_lo, fit.b_crit_hi)
  ex_iv = _percentiles(ex) if bootstrap and b_ex is not None else (None, None)
  return ProbeFit(
      start_step=int(start_step), start_loss=float(start_loss), target_loss=float(target_loss),
      loss=level, batch_tokens=b.tolist(), steps=s.tolist(), s_min=fit.s_min, e_min=fit.e_min,
      b_crit=fit.b_crit, b_crit_lo=crit_iv[0], b_crit_hi=crit_iv[1], b_excess=b_ex,
      b_excess_lo=ex_iv[0], b_excess_hi=ex_iv[1], excess=excess, rel_noise=sigma,
      rms_rel_resid=fit.rms_rel_resid, notes=notes)


def _percentiles(draws) -> tuple[float, float]:
  """95% percentile interval; an infinite upper end (beyond the ladder) is capped at 1e30
  so the result stays strict JSON."""
  lo, hi = np.percentile(np.minimum(np.asarray(draws, float), 1e30), [2.5, 97.5])
  return float(lo), float(min(hi, 1e30))


@dataclasses.dataclass
class ProbesResult:
  """Every branch point's ProbeFit, and B_crit(L) = B_*/L^(1/alpha_B) over them both ways."""
  probes: list[ProbeFit]
  b_crit_law: batch_lib.PowerLawFit | None
  b_excess_law: batch_lib.PowerLawFit | None
  notes: list[str]

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def analyze_probes(probes: Sequence[ProbeFit]) -> ProbesResult:
  """The B_crit(L) power law of each definition over the branch points (>= 2, each with its
  error; with 2 the law is determined, not tested: a note says so)."""
  probes = sorted(probes, key=lambda p: -p.loss)
  notes = [n for p in probes for n in p.notes]
  laws = []
  for name, value, error in (
      ("B_crit", lambda p: p.b_crit, lambda p: p.log_b_crit_error),
      (f"B_{int(round(100 * EXCESS))}", lambda p: p.b_excess, lambda p: p.log_b_excess_error)):
    ok = [p for p in probes if value(p) is not None]
    laws.append(batch_lib.power_law_or_note([p.loss for p in ok], [value(p) for p in ok],
                                            [error(p) for p in ok], f"{name}(L)",
                                            "branch points", notes, source="the probes"))
  return ProbesResult(probes=list(probes), b_crit_law=laws[0], b_excess_law=laws[1], notes=notes)
