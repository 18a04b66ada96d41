"""Experiment 5, the compute-efficient frontier (Kaplan §6, Figs. 13-14 and 12 left).

From the size ladder's learning curves: (a) the envelope min over sizes of L(C), with
C = 6 N B S the training FLOPs, its L(C) = (C_c/C)^alpha_C fit and the size N_opt(C) on the
envelope, fitted as N_opt = k C^p; (b) the frontier App. B derives from the fitted
L(N, S_min) and B_crit(L) (the project's one chooser, scaling_jax.scaling.bcrit: the
runs' pooled GNS law by default, Kaplan's where no GNS was logged), with its exponents; (c) the
extra compute of training k x the optimal size to the same loss, 0.6x .. 2.2x, from our
L(N, S_min) and from the paper's (which costs ~20% extra at the ends).
Usage: python experiments/05_compute_frontier/analyze.py SWEEP_DIR [--b-crit gns|kaplan]
"""

from __future__ import annotations

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from scaling_jax.scaling import bcrit, frontier as frontier_lib, isoflop  # noqa: E402
from scaling_jax.scaling.laws import FitError  # noqa: E402

NAME = "05_compute_frontier"
SIZE_FACTORS = (0.6, 0.8, 1.0, 1.25, 1.6, 2.2)


def excess_compute(p: dict[str, float], k) -> np.ndarray:
  """C_min(k N_opt) / C_min(N_opt) - 1 to reach the same loss under
  L = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S with C_min = 6 N B_crit(L) S_min.

  At fixed L, B_crit is fixed and N S_min(N) is smallest where the N term is
  alpha_S/(alpha_N + alpha_S) of L; the ratio depends on k and the exponents only.
  """
  a_n, a_s = p["alpha_N"], p["alpha_S"]
  u = a_s / (a_n + a_s)  # (N_c/N_opt)^alpha_N / L
  k = np.asarray(k, float)
  rest = 1 - u * k ** (-a_n)
  with np.errstate(invalid="ignore", divide="ignore"):
    ratio = np.where(rest > 0, k * (rest / (1 - u)) ** (-1 / a_s), np.inf)
  return ratio - 1


def envelope(runs, n_grid: int = 60) -> dict[str, np.ndarray]:
  """min over runs of L at each compute C (log-interpolated eval-loss curves)."""
  curves = []
  for r in runs:
    s, loss = r.series()
    c = np.array([r.value_at("flops", x) for x in s])
    ok = np.isfinite(c) & (c > 0)
    if ok.sum() >= 2:
      curves.append((r.n_params, np.log(c[ok]), loss[ok]))
  if not curves:
    raise common.ExperimentError("no run logged both flops and an eval loss; run the sweep")
  lo = min(c[1].min() for c in curves)
  hi = max(c[1].max() for c in curves)
  grid = np.linspace(lo, hi, n_grid)
  loss_G, best_G = isoflop.lower_envelope([c[1] for c in curves], [c[2] for c in curves], grid)
  covered = np.isfinite(loss_G)  # a gap between curves that do not overlap
  n_arr = np.array([c[0] for c in curves])
  return {"C": np.exp(grid[covered]), "L": loss_G[covered], "N_opt": n_arr[best_G[covered]]}


def analyze(run_dirs, out: str, bootstrap: int = 0, b_crit: str = "gns") -> dict:
  exp2 = common.load_module(pathlib.Path(__file__).resolve().parents[1] / "02_l_of_n_steps" /
                            "analyze.py")
  runs = [r for r in common.load_runs(run_dirs) if r.arch == "transformer"]
  env = envelope(runs)
  fit_c, note_c = common.try_fit("L_C", {"C": env["C"], "L": env["L"]}, bootstrap=bootstrap)
  fit_n, note_n = (common.try_fit(common.POWER_LAW, {"x": env["C"], "y": env["N_opt"]},
                                  bootstrap=bootstrap)
                   if len(np.unique(env["N_opt"])) >= 2 else (None, "one size on the envelope"))
  try:
    law = bcrit.choose_b_crit(b_crit, runs)
    note_b = law.description
  except FitError as e:  # e.g. no GNS logged: say so, use Kaplan's law
    law, note_b = bcrit.kaplan_law(), f"Kaplan's B_crit(L) ({e})"[:120]
  try:
    tab = exp2.learning_table(runs, law)
  except common.ExperimentError as e:  # e.g. curves that never leave the warmup
    tab, why = None, str(e)
  if tab is not None:
    fit_ls, note_ls = common.try_fit("L_N_Smin", tab, bootstrap=bootstrap)
  else:
    fit_ls, note_ls = None, why
  b_params = law.params or dict(frontier_lib.KAPLAN_B_CRIT)
  ref_cf = "compute_efficient_frontier."
  paper_ls = {k: common.paper(f"L_N_S.fit_table3.{k}") for k in ("alpha_N", "alpha_S", "N_c",
                                                                  "S_c")}
  rows = [("alpha_C (envelope, fixed B)", common.fit_params(fit_c).get("alpha_C"),
           common.paper("single_variable_laws.L_C_naive_fixed_batch.alpha_C"), note_c),
          ("p_N, N_opt ~ C^p (envelope)", common.fit_params(fit_n).get("p"),
           common.paper(ref_cf + "N_opt.p_N"), note_n)]
  summary: dict = {"envelope": env, "fit_L_C": common.fit_params(fit_c),
                   "fit_N_opt": common.fit_params(fit_n), "fit_L_N_Smin": common.fit_params(fit_ls),
                   "intervals": {"L_C": common.fit_intervals(fit_c),
                                 "N_opt": common.fit_intervals(fit_n),
                                 "L_N_Smin": common.fit_intervals(fit_ls)},
                   "fit_B_crit": b_params, "b_crit_source": law.source,
                   "notes": [note_c, note_n, note_ls, note_b]}
  if fit_ls is not None:
    cf = frontier_lib.closed_form(fit_ls, b_params)
    rows += [("alpha_C_min (App. B)", cf["alpha_C_min"],
              common.paper("single_variable_laws.L_Cmin.alpha_C_min"), note_ls),
             ("p_N (App. B)", cf["p_N"], common.paper(ref_cf + "N_opt.p_N"), "paper: 0.73 meas."),
             ("p_B (App. B)", cf["p_B"], common.paper(ref_cf + "B.p_B"), note_b),
             ("p_S (App. B)", cf["p_S"], common.paper(ref_cf + "S_min.p_S"), ""),
             ("L / L(N_opt, inf)", cf["loss_ratio"], 1 + paper_ls["alpha_N"] / paper_ls[
                 "alpha_S"], "")]
    summary["closed_form"] = cf
  else:
    rows.append(("L(N, S_min) fit (App. B frontier)", None, None, f"skipped: {note_ls}"[:120]))
  ours_x = excess_compute(common.fit_params(fit_ls), SIZE_FACTORS) if fit_ls else None
  paper_x = excess_compute(paper_ls, SIZE_FACTORS)
  for k, px, i in zip(SIZE_FACTORS, paper_x, range(len(SIZE_FACTORS))):
    if k != 1.0:
      rows.append((f"extra compute at {k:g} x N_opt",
                   None if ours_x is None else float(ours_x[i]), float(px), ""))
  summary.update({"size_factors": SIZE_FACTORS, "excess_compute": ours_x,
                  "excess_compute_paper": paper_x})
  print(common.comparison("Compute-efficient frontier", rows))

  fig, (ax_l, ax_n, ax_x) = common.figure(3)
  cmap = __import__("matplotlib").colormaps["viridis"]
  ns = sorted({r.n_params for r in runs})
  for r in runs:
    s, loss = r.series()
    c = np.array([r.value_at("flops", x) for x in s])
    ax_l.plot(c, loss, "-", color=cmap(0.9 * ns.index(r.n_params) / max(len(ns) - 1, 1)),
              alpha=0.8, label=f"N = {r.n_params:.3g}")
  ax_l.plot(env["C"], env["L"], "k--", lw=1.5, gid="envelope", label="envelope")
  common.style_axes(ax_l, "training compute C (FLOPs, 6NBS)", "eval loss", "Loss vs compute",
                    legend="x-small", log=True)
  ax_n.plot(env["C"], env["N_opt"], "o", ms=3, gid="n_opt")
  if fit_n is not None:
    ax_n.plot(env["C"], fit_n.predict({"x": env["C"]}).value, "-", gid="n_opt_fit",
              label=f"fit: C^{fit_n.params['p']:.2f}")
  c0 = env["C"][len(env["C"]) // 2]
  n0 = np.interp(np.log(c0), np.log(env["C"]), env["N_opt"])
  ax_n.plot(env["C"], n0 * (env["C"] / c0) ** 0.73, ":", color="gray", label="paper: C^0.73")
  common.style_axes(ax_n, "compute C (FLOPs)", "N_opt (on the envelope)",
                    "Optimal size vs compute", legend="small", log=True)
  ks = np.geomspace(0.5, 2.5, 100)
  ax_x.plot(ks, excess_compute(paper_ls, ks), "--", color="gray", label="paper's L(N, S)",
            gid="excess_paper")
  if fit_ls is not None:
    ax_x.plot(ks, excess_compute(common.fit_params(fit_ls), ks), "-", label="our fit",
              gid="excess_ours")
  ax_x.axvspan(0.6, 2.2, color="C2", alpha=0.1)
  ax_x.set_ylim(0, 1)
  common.style_axes(ax_x, "N / N_opt", "extra compute to reach the same loss",
                    "Cost of a non-optimal size", legend="small", log="x")
  return common.finish(out, summary, fig, "compute_frontier.png")


def main(argv=None) -> int:
  return common.run_analysis(
      argv, __doc__, NAME, analyze,
      {"--b-crit": dict(default="gns", choices=("gns", "kaplan"),
                        help="B_crit(L) for S_min and the frontier")},
      lambda args: {"bootstrap": args.bootstrap, "b_crit": args.b_crit})


if __name__ == "__main__":
  sys.exit(main())
