"""Coverage of the fitter's bootstrap intervals on synthetic learning curves (issue: honest intervals).

    python bench/bench_coverage.py [--replications 200] [--bootstrap 200] [--modes ...]
    python bench/bench_coverage.py --noise-from demo_out/runs   # print the demo's noise model

Draws studies like the demo's (5 runs, 18 points per curve, a known L(N, S_min), run
offsets and AR(1) noise: scaling_jax.scaling.coverage) and reports, per bootstrap mode, how
often the nominal 95% interval of alpha_N holds the truth and how much of the held-out
run's curve falls inside its prediction band. Writes the "Interval coverage" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import time

import common  # noqa: F401  (puts the repo on sys.path)
from common import environment, publish

from scaling_jax.scaling import coverage, fit, resample, runs


def demo_noise(study: str) -> dict:
  """The residual model of L(N, S_min) fitted to a study's curves (S_min = S)."""
  tab = runs.learning_table(runs.read_runs(study), None)
  res = fit.fit_law("L_N_Smin", tab, drop_invalid=True, require_convergence=False)
  return {"params": res.params, "noise": res.noise.to_dict()}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--replications", type=int, default=200)
  p.add_argument("--bootstrap", type=int, default=200)
  p.add_argument("--modes", nargs="+", default=["parametric", "points", "runs", "blocks"],
                 choices=resample.MODES)
  p.add_argument("--noise-from", default=None, help="a study dir: print its noise model")
  p.add_argument("--no-write", action="store_true")
  args = p.parse_args()
  if args.noise_from:
    print(json.dumps(demo_noise(args.noise_from), indent=1))
    return
  lines = ["## Interval coverage", "",
           f"`python bench/bench_coverage.py --replications {args.replications} --bootstrap "
           f"{args.bootstrap}`; {environment()}.", "",
           f"Synthetic studies shaped like the demo: truth {coverage.TRUTH}, 5 runs "
           f"(N = {', '.join(f'{n:.3g}' for n in coverage.DEMO_N)}), 18 points per curve, noise "
           f"sigma_run = {coverage.NOISE.sigma_run}, AR(1) phi = {coverage.NOISE.phi}, "
           f"sigma_e = {coverage.NOISE.sigma_e} (log-residuals). Nominal level 95%.", "",
           "| bootstrap mode | alpha_N covered | median width | held-out points in band "
           "| held-out curves wholly in band | failed | s |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for mode in args.modes:
    t0 = time.time()
    c = coverage.measure_coverage(mode, args.replications, bootstrap=args.bootstrap)
    lines.append(f"| {mode} | {100 * c.alpha_n:.1f}% | {c.alpha_n_width:.3g} | "
                 f"{100 * c.heldout_points:.1f}% | {100 * c.heldout_curves:.1f}% | {c.failed} | "
                 f"{time.time() - t0:.0f} |")
    print(lines[-1], flush=True)
  publish(lines, "## Interval coverage", write=not args.no_write)


if __name__ == "__main__":
  main()
