"""Benchmark: the JAX fitter vs scipy L-BFGS-B on the Chinchilla refit.

The task: 240 points (Besiroglu et al.'s Chinchilla data), the 5-parameter law
E + A/N^alpha + B/D^beta, Huber(1e-3) on log-residuals, a 4000-point start grid, then 1000
bootstrap refits. JAX: grid scored with vmap, best 8 refined with optax L-BFGS, bootstrap
vmapped (warm start at the fit). scipy: the same objective, L-BFGS-B (numerical gradient,
as Epoch did) in a Python loop; the loop over starts/resamples is timed on a subset and
scaled to the full count (stated in the output).

    .venv/bin/python bench/bench_fitter.py [--scipy-starts 40] [--scipy-boot 40]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "scaling_jax", "scaling", "reference", "chinchilla_epoch.csv")


def load():
  with open(DATA, newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["epoch_excluded"] == "0"]
  return {"N": np.array([float(r["Model Size"]) for r in rows]),
          "D": np.array([float(r["Training Tokens"]) for r in rows]),
          "L": np.array([float(r["loss"]) for r in rows])}


def bench_jax(tab, grid, boot):
  from scaling_jax.scaling import fit
  t0 = time.perf_counter()
  res = fit.fit_law("chinchilla", tab, grid=grid, bootstrap=0)
  t_fit = time.perf_counter() - t0
  t0 = time.perf_counter()
  res_b = fit.fit_law("chinchilla", tab, grid=grid, bootstrap=boot)
  t_total = time.perf_counter() - t0
  t0 = time.perf_counter()
  fit.fit_law("chinchilla", tab, grid=grid, bootstrap=boot, seed=1)
  t_warm = time.perf_counter() - t0
  return res_b, t_fit, t_total, t_warm


def bench_scipy(tab, grid_size, boot, n_starts, n_boot, x_start):
  from scipy.optimize import minimize
  from scipy.special import logsumexp

  from scaling_jax.scaling import fit
  log_n, log_d, log_l = np.log(tab["N"]), np.log(tab["D"]), np.log(tab["L"])

  def make_obj(w):
    def obj(p):  # p = log E, log A, log B, log alpha, log beta (the same parametrisation)
      e, a, b, al, be = p
      pred = logsumexp([a - np.exp(al) * log_n, b - np.exp(be) * log_d,
                        np.full_like(log_n, e)], axis=0)
      r = pred - log_l
      return np.sum(w * np.where(np.abs(r) <= 1e-3, 0.5 * r * r,
                                 1e-3 * (np.abs(r) - 0.5e-3)))
    return obj

  starts = fit.start_grid("chinchilla", grid_size)
  obj = make_obj(np.ones(len(log_l)))
  t0 = time.perf_counter()
  fs = [obj(s) for s in starts]
  t_grid = time.perf_counter() - t0
  sel = np.argsort(fs)[:n_starts]  # the most promising starts (scipy from all: ~x more)
  t0 = time.perf_counter()
  best = min((minimize(obj, starts[i], method="L-BFGS-B") for i in sel), key=lambda r: r.fun)
  t_starts = (time.perf_counter() - t0) / n_starts
  rng = np.random.default_rng(0)
  t0 = time.perf_counter()
  for _ in range(n_boot):
    w = np.bincount(rng.integers(0, len(log_l), len(log_l)), minlength=len(log_l))
    minimize(make_obj(w), x_start, method="L-BFGS-B")
  t_boot = (time.perf_counter() - t0) / n_boot
  return best, t_grid, t_starts, t_boot


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--grid", type=int, default=4000)
  ap.add_argument("--bootstrap", type=int, default=1000)
  ap.add_argument("--scipy-starts", type=int, default=40)
  ap.add_argument("--scipy-boot", type=int, default=40)
  args = ap.parse_args()
  import jax
  import optax
  import scipy
  tab = load()
  res, t_fit, t_total, t_warm = bench_jax(tab, args.grid, args.bootstrap)
  print(f"device: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"jax {jax.__version__}, optax {optax.__version__}, scipy {scipy.__version__}")
  print(f"JAX fit ({len(tab['L'])} points, {args.grid} starts, first call incl. compile): "
        f"{t_fit:.2f} s")
  print(f"JAX fit + {args.bootstrap} bootstrap refits (fit compiled, bootstrap compile incl.): "
        f"{t_total:.2f} s;  again, all compiled: {t_warm:.2f} s;  first-ever total "
        f"{t_fit + t_total:.2f} s")
  print(f"  params {({k: round(v, 4) for k, v in res.params.items()})}, objective "
        f"{res.objective:.6e}, bootstrap converged {res.bootstrap_converged}/{res.bootstrap}")
  x_star = np.log([res.params[k] for k in ("E", "A", "B", "alpha", "beta")])
  best, t_grid, t_start, t_boot = bench_scipy(tab, args.grid, args.bootstrap, args.scipy_starts,
                                              args.scipy_boot, x_star)
  print(f"scipy L-BFGS-B: grid scoring {t_grid:.2f} s, {t_start * 1e3:.0f} ms per start "
        f"(best of {args.scipy_starts}: objective {best.fun:.6e}), {t_boot * 1e3:.0f} ms per "
        f"bootstrap refit (warm start, mean of {args.scipy_boot})")
  est_all = t_grid + args.grid * t_start + args.bootstrap * t_boot
  est_top = t_grid + 8 * t_start + args.bootstrap * t_boot
  print(f"scipy loop, extrapolated: {est_top:.1f} s refining the best 8 starts (as JAX), "
        f"{est_all:.0f} s from all {args.grid} starts (Epoch's procedure); + "
        f"{args.bootstrap} bootstraps included in both")


if __name__ == "__main__":
  main()
