"""Bootstrap resamples for the fitter: which rows, with which weights or noise, per resample.

Points of one learning curve are not independent: a run sits above or below the law by its
own offset (seed, data order), and its residuals along the curve are autocorrelated (the
loss moves slowly; eval losses share their batches). Resampling points as if independent
therefore gives intervals far too narrow (bench/bench_coverage.py: ~25-45% coverage of a
nominal 95%). The modes:

  points      rows drawn with replacement (for tables of independent points, e.g. the
              final losses of many runs, or Chinchilla's 240 points);
  runs        whole runs drawn with replacement (the rows of run g weigh its draw count);
  blocks      moving blocks of consecutive rows within each run (block length ~ n^(1/3));
  parametric  the fitted law plus simulated residuals: a run-level offset u_g ~ N(0, s_u^2)
              and AR(1) noise along each run (phi, s_e), both estimated from the fit's
              residuals. s_u is estimated from the G run means with G - k degrees of
              freedom (k = 2 for each input constant within runs, whose power-law term
              absorbs between-run differences), and each resample draws its own
              s_u*^2 = dof s_u^2 / chi2_dof, so that the few-run uncertainty of s_u is
              carried into the intervals instead of being ignored.

Every function takes a numpy Generator and returns arrays of shape [n_boot, n_rows].
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MODES = ("points", "runs", "blocks", "parametric")


def group_index(groups: np.ndarray) -> tuple[np.ndarray, int]:
  """(index of each row's group in 0..G-1, G), in order of first appearance."""
  _, first, inverse = np.unique(np.asarray(groups).astype(str), return_index=True,
                                return_inverse=True)
  order = np.argsort(np.argsort(first))  # renumber groups by first appearance
  return order[inverse], len(first)


def point_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
  """Multinomial counts of n rows drawn with replacement."""
  idx = rng.integers(0, n, size=(n_boot, n))
  return np.apply_along_axis(np.bincount, 1, idx, minlength=n).astype(float)


def run_weights(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
  """Each row weighs the number of times its run was drawn (G runs drawn with replacement)."""
  g, n_groups = group_index(groups)
  counts = np.apply_along_axis(np.bincount, 1, rng.integers(0, n_groups, (n_boot, n_groups)),
                               minlength=n_groups).astype(float)
  return counts[:, g]


def block_weights(groups: np.ndarray, n_boot: int, rng: np.random.Generator,
                  block: int | None = None) -> np.ndarray:
  """Moving-block bootstrap within each run: ceil(n_g / l) blocks of l consecutive rows,
  start drawn uniformly, per run and resample; weights count how often a row was drawn."""
  g, n_groups = group_index(groups)
  w = np.zeros((n_boot, len(g)))
  for k in range(n_groups):
    rows = np.flatnonzero(g == k)
    n = len(rows)
    length = block or max(1, round(n ** (1 / 3)))
    length = min(length, n)
    n_blocks = math.ceil(n / length)
    starts = rng.integers(0, n - length + 1, size=(n_boot, n_blocks))
    for j in range(length):
      np.add.at(w, (np.arange(n_boot)[:, None], rows[starts + j]), 1.0)
  return w


@dataclasses.dataclass
class NoiseModel:
  """log-residual model: offset u_g per run plus AR(1) noise along each run."""
  sigma_run: float
  phi: float
  sigma_e: float  # innovation sd of the AR(1) noise
  dof: int  # degrees of freedom of sigma_run
  n_groups: int

  def to_dict(self) -> dict[str, float]:
    return dataclasses.asdict(self)

  @classmethod
  def estimate(cls, resid: np.ndarray, groups: np.ndarray, between_params: int) -> "NoiseModel":
    """From a fit's log-residuals (rows of each run in curve order)."""
    g, n_groups = group_index(groups)
    means = np.array([resid[g == k].mean() for k in range(n_groups)])
    dof = max(n_groups - between_params, 1)
    sigma_run = float(np.sqrt(np.sum(means**2) / dof))
    d = resid - means[g]
    num = den = 0.0
    for k in range(n_groups):
      dk = d[g == k]
      num += float(np.sum(dk[1:] * dk[:-1]))
      den += float(np.sum(dk**2))
    phi = num / den if den > 0 else 0.0
    # The lag-1 autocorrelation of short demeaned series is biased low by ~(1 + 3 phi)/n
    # (Marriott & Pope 1954); curves have ~20 points, so correct it.
    phi = float(np.clip(phi + (1 + 3 * phi) / (len(d) / n_groups), -0.95, 0.95))
    var_d = den / max(len(d) - n_groups, 1)
    return cls(sigma_run=sigma_run, phi=phi, sigma_e=float(np.sqrt(var_d * (1 - phi**2))),
               dof=dof, n_groups=n_groups)

  def draw(self, groups: np.ndarray, n_boot: int, rng: np.random.Generator,
           sample_sigma: bool = True) -> np.ndarray:
    """Simulated log-residuals [n_boot, rows]: a fresh offset per run and AR(1) along it.
    sample_sigma: draw sigma_run*^2 = dof sigma_run^2 / chi2_dof per resample."""
    g, n_groups = group_index(groups)
    scale = self.run_scales(n_boot, rng) if sample_sigma else np.full(n_boot, self.sigma_run)
    u = rng.standard_normal((n_boot, n_groups)) * scale[:, None]
    out = u[:, g]
    for k in range(n_groups):
      rows = np.flatnonzero(g == k)
      out[:, rows] += self.ar1(len(rows), n_boot, rng)
    return out

  def run_scales(self, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot] draws of sigma_run* = sigma_run sqrt(dof / chi2_dof): its few-run uncertainty."""
    return self.sigma_run * np.sqrt(self.dof / rng.chisquare(self.dof, n_boot))

  def ar1(self, n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] stationary AR(1) paths."""
    e = np.empty((n_boot, n))
    sd0 = self.sigma_e / math.sqrt(max(1 - self.phi**2, 1e-6))
    e[:, 0] = rng.standard_normal(n_boot) * sd0
    for t in range(1, n):
      e[:, t] = self.phi * e[:, t - 1] + rng.standard_normal(n_boot) * self.sigma_e
    return e

  def new_run(self, n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] log-noise of an unseen run (offset + AR(1)): for prediction bands."""
    scale = self.run_scales(n_boot, rng)
    return (rng.standard_normal(n_boot) * scale)[:, None] + self.ar1(n, n_boot, rng)
