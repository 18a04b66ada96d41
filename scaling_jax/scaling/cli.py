"""`scaling-jax fit RUNS_OR_TABLE --law L_N_Smin`: fit a law, print it, write report + plots."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from scaling_jax import rundir
from scaling_jax.scaling import fit as fit_lib
from scaling_jax.scaling import frontier as frontier_lib
from scaling_jax.scaling import laws, runs
from scaling_jax.scaling.laws import FitError


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="scaling-jax fit",
      description="Fit a scaling law to run directories or a CSV/JSON table "
                  "(columns run, N, B, S, D, C, L).")
  p.add_argument("source", help="a sweep/run directory, or a .csv/.json table")
  p.add_argument("--law", default="L_N_Smin", help=f"one of {sorted(laws.LAWS)}")
  p.add_argument("--out", default=None, help="output directory (default: SOURCE_fit/)")
  p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (0: none)")
  p.add_argument("--holdout", action="store_true",
                 help="also fit without the largest N and report the extrapolation error")
  p.add_argument("--b-crit", choices=("gns", "kaplan", "none"), default="gns",
                 help="B_crit(L) for S_min/C_min: the runs' GNS, Kaplan's fit, or no adjustment")
  p.add_argument("--delta", type=float, default=fit_lib.DEFAULT_DELTA, help="Huber delta")
  p.add_argument("--grid", type=int, default=1000, help="number of start points")
  p.add_argument("--points", type=int, default=32, help="points kept per learning curve")
  p.add_argument("--last-only", action="store_true", help="one point per run (its last)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-plots", action="store_true")
  return p


def load(source: str, b_crit: str, points: int, last_only: bool, warnings: list[str]):
  """The table from a CSV/JSON file or from run directories."""
  if os.path.isfile(source):
    return runs.read_table(source)
  if not os.path.isdir(source):
    raise FitError(f"{source!r} is neither a table file nor a directory")
  return runs.runs_table(source, b_crit=b_crit, points=points, last_only=last_only,
                         warnings=warnings)


def _frontier_report(result, table, b_crit: str, out: str, plots: bool) -> dict | None:
  """For L_N_Smin: fit B_crit(L) to the GNS points (or use Kaplan's) and trace the frontier."""
  bc_rows = {"L": np.asarray(table.get("L", [])), "B_crit": np.asarray(table.get("B_crit", []))}
  bc_fit, source = frontier_lib.KAPLAN_B_CRIT, "kaplan (Eq. 5.3)"
  if b_crit == "gns" and len(bc_rows["L"]) and np.isfinite(bc_rows["B_crit"]).sum() > 3:
    try:
      bc_fit = fit_lib.fit_law("B_crit", bc_rows, drop_invalid=True, delta=0.1, grid=256)
      source = "B_crit law fitted to the runs' gns/b_simple_tokens"
    except FitError as e:
      source = f"kaplan (Eq. 5.3); fitting the GNS points failed: {e}"
  c = np.geomspace(1e15, 1e24, 19)
  front = frontier_lib.frontier(result, bc_fit, c)
  closed = frontier_lib.closed_form_at(result, bc_fit, c)
  if plots:
    from scaling_jax.scaling import plots as plots_lib
    plots_lib.plot_frontier(front, os.path.join(out, "frontier.png"), closed)
  bc_params = bc_fit.params if hasattr(bc_fit, "params") else bc_fit
  return {"b_crit_source": source, "b_crit_params": bc_params,
          "closed_form": frontier_lib.closed_form(result, bc_fit),
          "fitted_exponents": frontier_lib.fitted_exponents(front),
          "numerical": {k: np.asarray(v).tolist() for k, v in front.items()}}


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  warnings: list[str] = []
  try:
    law = laws.get_law(args.law)
    table = load(args.source, args.b_crit, args.points, args.last_only, warnings)
    out = args.out or os.path.normpath(args.source).rstrip(os.sep) + "_fit"
    os.makedirs(out, exist_ok=True)
    kw = dict(bootstrap=args.bootstrap, delta=args.delta, grid=args.grid, seed=args.seed,
              drop_invalid=True)
    result = fit_lib.fit_law(law, table, **kw)
    holdout = fit_lib.holdout_error(law, table, **kw) if args.holdout else None
    report = result.to_dict()
    report["source"] = os.path.abspath(args.source)
    report["b_crit"] = args.b_crit
    report["input_warnings"] = warnings
    if holdout:
      report["holdout"] = {k: v for k, v in holdout.items() if k != "fit"}
      report["holdout"]["fit_params"] = holdout["fit"].params
    if law.name == "L_N_Smin":
      try:
        report["frontier"] = _frontier_report(result, table, args.b_crit, out, not args.no_plots)
      except (FitError, OverflowError, FloatingPointError, ValueError) as e:
        warnings.append(f"frontier not computed from this fit ({type(e).__name__}: {e}); the "
                        "fitted exponents are too far from a usable regime, see the table")
    if not args.no_plots:
      from scaling_jax.scaling import plots as plots_lib
      report["plots"] = [plots_lib.plot_fit(result, table, os.path.join(out, f"fit_{law.name}.png"),
                                            holdout=holdout)]
      if "frontier" in report:
        report["plots"].append(os.path.join(out, "frontier.png"))
    rundir.write_json_atomic(os.path.join(out, "fit_report.json"), report)
  except FitError as e:
    print(f"scaling-jax fit: {e}", file=sys.stderr)
    return 2
  print(result.table())
  for w in warnings:
    print(f"input: {w}")
  if holdout:
    print(f"holdout (largest {holdout['column']}={holdout['held_out_value']:.4g}): mean |rel "
          f"error| {holdout['mean_abs_rel_error']:.3%}, max {holdout['max_abs_rel_error']:.3%} "
          f"over {holdout['n_test']} points")
  if "frontier" in report:
    cf = report["frontier"]["closed_form"]
    print(f"frontier ({report['frontier']['b_crit_source']}): alpha_C_min={cf['alpha_C_min']:.4f}, "
          f"N_opt ~ C^{cf['p_N']:.3f}, S_min ~ C^{cf['p_S']:.3f}, B ~ C^{cf['p_B']:.3f}, "
          f"loss ratio {cf['loss_ratio']:.3f}")
  print(f"report: {os.path.join(out, 'fit_report.json')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
