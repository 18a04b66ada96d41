"""Do the fitter's intervals mean what they say? Coverage on synthetic learning curves.

`simulate_study` draws a study like the demo's: a few runs of different N, each a learning
curve L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S from a known law, times the noise
real curves have (a run-level offset, AR(1) noise along the curve; `NoiseModel`).
`measure_coverage` fits many such studies with a bootstrap mode and counts how often
  - the nominal interval of alpha_N (fit on all runs) holds the true alpha_N, and
  - the held-out band (fit without the largest run, prediction band at its points) holds
    that run's observed points (pointwise, averaged) -- what a report's band promises;
    also the fraction of held-out curves that lie wholly inside.
bench/bench_coverage.py runs it at 200+ replications; tests run a few.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from scaling_jax.scaling import fit as fit_lib
from scaling_jax.scaling.resample import NoiseModel

# The demo's own fit and residual model (`make demo`: 5 runs, 400 steps at B = 4096 tokens,
# eval every 20 steps; L(N, S_min = S) fitted to its curves, as printed by
# `python bench/bench_coverage.py --noise-from demo_out/runs`).
TRUTH = {"N_c": 4.05e20, "S_c": 102.5, "alpha_N": 0.0384, "alpha_S": 0.898}
NOISE = NoiseModel(sigma_run=0.012, phi=0.86, sigma_e=0.0081, dof=3, n_groups=5)
DEMO_N = (2.46e4, 5.53e4, 1.47e5, 4.42e5, 7.86e5)
DEMO_STEPS = tuple(np.geomspace(60, 400, 18).round())


def simulate_study(rng: np.random.Generator, truth: dict[str, float] = TRUTH,
                   noise: NoiseModel = NOISE, n_values=DEMO_N, steps=DEMO_STEPS
                   ) -> dict[str, np.ndarray]:
  """A table (run, N, S_min, L, L_true) of len(n_values) noisy learning curves."""
  steps = np.asarray(steps, float)
  cols: dict[str, list] = {k: [] for k in ("run", "N", "S_min", "L", "L_true")}
  for i, n in enumerate(n_values):
    true = (truth["N_c"] / n) ** truth["alpha_N"] + (truth["S_c"] / steps) ** truth["alpha_S"]
    offset = rng.standard_normal() * noise.sigma_run
    obs = true * np.exp(offset + noise.ar1(len(steps), 1, rng)[0])
    for col, v in (("run", [f"run{i}"] * len(steps)), ("N", [n] * len(steps)),
                   ("S_min", steps), ("L", obs), ("L_true", true)):
      cols[col].extend(np.asarray(v).tolist())
  return {k: np.asarray(v, dtype=object if k == "run" else float) for k, v in cols.items()}


@dataclasses.dataclass
class Coverage:
  """Coverage of one bootstrap mode over `replications` synthetic studies."""
  resample: str
  replications: int
  level: float
  alpha_n: float  # fraction of alpha_N intervals holding the truth
  heldout_points: float  # mean fraction of held-out observed points inside the band
  heldout_curves: float  # fraction of held-out curves wholly inside the band
  alpha_n_width: float  # median interval width of alpha_N
  failed: int  # replications whose fit or bootstrap failed (counted as not covering)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def measure_coverage(resample: str, replications: int, *, bootstrap: int = 200,
                     level: float = 0.95, seed: int = 0, grid: int = 256,
                     truth: dict[str, float] = TRUTH, noise: NoiseModel = NOISE) -> Coverage:
  """Fits `replications` synthetic studies with bootstrap mode `resample` (see module doc)."""
  rng = np.random.default_rng(seed)
  hits_a, in_pts, in_curves, widths, failed = [], [], [], [], 0
  for rep in range(replications):
    tab = simulate_study(rng, truth, noise)
    fit_kw = dict(bootstrap=bootstrap, level=level, grid=grid, seed=rep, resample=resample,
                  drop_invalid=True, require_convergence=False)
    try:
      full = fit_lib.fit_law("L_N_Smin", tab, **fit_kw)
      held = tab["N"] == tab["N"].max()
      part = fit_lib.fit_law("L_N_Smin", tab, weights=(~held).astype(float), **fit_kw)
      band = "prediction" if part.noise is not None else "confidence"
      pred = part.predict({"N": tab["N"][held], "S_min": tab["S_min"][held]}, band=band,
                          seed=rep)
    except fit_lib.FitError:
      failed += 1
      hits_a.append(False)
      in_pts.append(0.0)
      in_curves.append(False)
      continue
    lo, hi = (full.intervals or {}).get("alpha_N", (np.nan, np.nan))
    hits_a.append(bool(lo <= truth["alpha_N"] <= hi))
    widths.append(hi - lo)
    obs = tab["L"][held]
    inside = (obs >= pred.lo) & (obs <= pred.hi)
    in_pts.append(float(np.mean(inside)))
    in_curves.append(bool(inside.all()))
  return Coverage(resample=resample, replications=replications, level=level,
                  alpha_n=float(np.mean(hits_a)), heldout_points=float(np.mean(in_pts)),
                  heldout_curves=float(np.mean(in_curves)),
                  alpha_n_width=float(np.nanmedian(widths)) if widths else float("nan"),
                  failed=failed)
