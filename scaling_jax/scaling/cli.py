"""`scaling-jax fit RUNS_OR_TABLE --law L_N_Smin`: fit a law, print it, write report + plots.

On a directory with the default law L_N_Smin this runs the study analysis
(`scaling.study.analyze_study`), the same one `scaling-jax report` renders, so the two print
identical fitted values and frontier. Other laws and table files fit the table that
`study.study_table` builds, with S_min and C_min from the same B_crit(L) chooser.
"""

from __future__ import annotations

import os
import sys

from scaling_jax import errors, preflight, rundir
from scaling_jax.scaling import bcrit as bcrit_lib
from scaling_jax.scaling import fit as fit_lib
from scaling_jax.scaling import laws, resample, study
from scaling_jax.scaling.laws import FitError


def parser() -> errors.ArgumentParser:
  p = errors.ArgumentParser(
      prog="scaling-jax fit",
      description="Fit a scaling law to run directories or a CSV/JSON table with columns "
                  "run, N, B, S, D, C, L (S_min and C_min are derived by --b-crit; "
                  "--b-crit gns on a table also needs a B_simple column).")
  p.add_argument("source", help="a sweep/run directory, or a .csv/.json table")
  p.add_argument("--law", default="L_N_Smin", help=f"one of {sorted(laws.LAWS)}")
  p.add_argument("--out", default=None, help="output directory (default: SOURCE_fit/)")
  p.add_argument("--bootstrap", type=errors.non_negative_int, default=200,
                 help="bootstrap resamples (0: none)")
  p.add_argument("--resample", default="auto", choices=("auto",) + resample.MODES,
                 help="bootstrap resampling: auto = parametric (run offsets + AR(1) noise) "
                      "for learning curves, points for tables of independent points")
  p.add_argument("--holdout", action="store_true",
                 help="also fit without the largest N and report the extrapolation error")
  p.add_argument("--b-crit", default="gns", metavar="{gns,sweep,kaplan,none,NUMBER}",
                 help="B_crit(L) for S_min, C_min and the frontier: the law fitted to the "
                      "runs' pooled GNS (default; tables: their B_simple column), a "
                      "batch-size sweep, Kaplan's, no adjustment, or a constant in tokens")
  p.add_argument("--delta", type=errors.positive_float, default=fit_lib.DEFAULT_DELTA,
                 help="Huber delta")
  p.add_argument("--grid", type=errors.positive_int, default=1000, help="number of start points")
  p.add_argument("--points", type=errors.non_negative_int, default=32,
                 help="points kept per learning curve (0: all)")
  p.add_argument("--last-only", action="store_true", help="one point per run (its last)")
  p.add_argument("--seed", type=errors.non_negative_int, default=0)
  p.add_argument("--no-plots", action="store_true")
  return p


@errors.boundary("fit")
def main(argv: list[str]) -> int:
  args = parser().parse_args(argv)
  warnings: list[str] = []
  holdout = None
  law = laws.get_law(args.law)
  spec = bcrit_lib.parse_spec(args.b_crit)
  if not rundir.exists(args.source):
    raise FitError(f"{args.source} does not exist; pass a sweep/run directory or a .csv/.json "
                   "table")
  out = (args.out or str(args.source).rstrip("/") + "_fit").rstrip("/")
  preflight.check_output_dir(out, "--out")
  fit_kw = dict(delta=args.delta, grid=args.grid, resample=args.resample)
  front = None
  if law.name == "L_N_Smin" and rundir.is_dir(args.source) and not args.last_only:
    a = study.analyze_study(args.source, b_crit=spec, bootstrap=args.bootstrap,
                            seed=args.seed, points=args.points, heldout=args.holdout,
                            compare=(), **fit_kw)
    if a.fit is None:
      raise FitError("; ".join(a.notes[-2:]))
    result, table, b_law, front = a.fit, a.table, a.b_crit, a.frontier
    warnings += a.notes
    if a.main_heldout is not None:
      holdout = a.main_heldout.to_dict()
  else:
    adjust = bool({"S_min", "C_min"} & set(law.inputs))
    table, b_law = study.study_table(args.source, spec, points=args.points,
                                     last_only=args.last_only, bootstrap=args.bootstrap,
                                     seed=args.seed, adjust=adjust, warnings=warnings)
    result = fit_lib.fit_law(law, table, bootstrap=args.bootstrap, seed=args.seed,
                             drop_invalid=True, **fit_kw)
    if law.name == "L_N_Smin" and b_law.adjusts and "C_min" in table:
      try:
        front = study.compute_frontier(result, b_law, study.frontier_budgets(table))
      except (FitError, OverflowError, FloatingPointError, ValueError) as e:
        warnings.append(f"frontier not computed from this fit ({type(e).__name__}: {e})")
    if args.holdout:
      h = fit_lib.holdout_error(law, table, bootstrap=args.bootstrap, seed=args.seed,
                                drop_invalid=True, **fit_kw)
      holdout = {k: v for k, v in h.items() if k != "fit"}
  report = result.to_dict()
  source = args.source if rundir.is_remote(args.source) else os.path.abspath(args.source)
  report.update({"source": source, "b_crit": b_law.to_dict(),
                 "input_warnings": warnings})
  if holdout:
    report["holdout"] = holdout
  if front:
    report["frontier"] = front
  with errors.writing(out, "--out"):
    rundir.makedirs(out)
    if not args.no_plots:
      from scaling_jax.scaling import plots as plots_lib
      report["plots"] = [plots_lib.plot_fit(result, table, f"{out}/fit_{law.name}.png")]
      if front:
        path = f"{out}/frontier.png"
        plots_lib.plot_frontier(front["points"], path, front.get("closed_form_points"))
        report["plots"].append(path)
    rundir.write_json_atomic(f"{out}/fit_report.json", report)
  print(f"B_crit(L): {b_law.description}")
  print(result.table())
  for w in warnings:
    print(f"input: {w}")
  if holdout and "rms_rel_error" in holdout:
    print(f"holdout ({holdout['run']}, N={holdout['N']:.4g}): {100 * holdout['rms_rel_error']:.2f}% "
          f"RMS over {holdout['n_points']} points, {100 * holdout['final_rel_error']:+.2f}% at "
          f"the end")
  elif holdout:
    print(f"holdout (largest {holdout['column']}={holdout['held_out_value']:.4g}): mean |rel "
          f"error| {holdout['mean_abs_rel_error']:.3%}, max {holdout['max_abs_rel_error']:.3%} "
          f"over {holdout['n_test']} points")
  if front:
    ex = front.get("closed_form") or front["exponents"]
    print(f"frontier ({front['b_crit_source']}): alpha_C_min={ex['alpha_C_min']:.4f}, "
          f"N_opt ~ C^{ex['p_N']:.3f}, S_min ~ C^{ex['p_S']:.3f}, B ~ C^{ex['p_B']:.3f}"
          + (f", loss ratio {ex['loss_ratio']:.3f}" if "loss_ratio" in ex else ""))
  print(f"report: {out}/fit_report.json")
  return 0


if __name__ == "__main__":
  sys.exit(main())
