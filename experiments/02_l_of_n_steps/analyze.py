"""Experiment 2, L(N, S_min): learning curves of the size ladder, adjusted to the critical batch.

Each eval-loss point at step S becomes S_min = S / (1 + B_crit(L)/B) (Kaplan §5.1), with
B_crit(L) from the study's one law (`scaling.bcrit`): fitted to the runs' pooled gradient
noise scale (default), Kaplan's B_*/L^(1/alpha_B), or none; then L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S is fitted (Kaplan Fig. 4
right, Table 3) and printed beside the paper's.
Usage: python experiments/02_l_of_n_steps/analyze.py SWEEP_DIR [--b-crit gns|kaplan|none]
"""

from __future__ import annotations

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from scaling_jax.scaling import bcrit, runs as runs_lib  # noqa: E402
from scaling_jax.scaling.laws import FitError  # noqa: E402

NAME = "02_l_of_n_steps"


def learning_table(runs, b_crit="gns", points: int = 32) -> dict[str, np.ndarray]:
  """The fitter's table (N, S, S_min, C, C_min, L, B_crit per point) of the runs' curves,
  S_min from the study's one B_crit(L) law (`scaling.bcrit.choose_b_crit`)."""
  try:
    law = bcrit.choose_b_crit(b_crit, runs)
    return runs_lib.learning_table(runs, law.table_fn, points=points)
  except FitError as e:
    raise common.ExperimentError(f"no usable learning-curve table: {e}") from None


def analyze(run_dirs, out: str, bootstrap: int = 0, b_crit: str = "gns") -> dict:
  runs = [r for r in common.load_runs(run_dirs) if r.arch == "transformer"]
  tab = learning_table(runs, b_crit)
  if len(np.unique(tab["N"])) < 2:
    raise common.ExperimentError("L(N, S_min) needs learning curves of >= 2 sizes; run "
                                 "experiments/02_l_of_n_steps/sweep.py")
  res, note = common.try_fit("L_N_Smin", tab, bootstrap=bootstrap)
  p = common.fit_params(res)
  ref = "L_N_S.fit_table3."
  print(common.comparison(f"L(N, S_min), B_crit from {b_crit} ({len(tab['L'])} points)", [
      ("alpha_N", p.get("alpha_N"), common.paper(ref + "alpha_N"), note),
      ("alpha_S", p.get("alpha_S"), common.paper(ref + "alpha_S"), ""),
      ("N_c", p.get("N_c"), common.paper(ref + "N_c"), ""),
      ("S_c (steps)", p.get("S_c"), common.paper(ref + "S_c"), ""),
      ("median B_crit / B", float(np.nanmedian(tab["B_crit"] / tab["B"])), None,
       "S_min = S / (1 + B_crit/B)"),
  ]))

  fig, (ax_s, ax_m) = common.figure(2)
  cmap = __import__("matplotlib").colormaps["viridis"]
  ns = np.unique(tab["N"])
  colors = {n: cmap(0.9 * i / max(len(ns) - 1, 1)) for i, n in enumerate(ns)}
  for run in dict.fromkeys(tab["run"]):
    m = tab["run"] == run
    n = tab["N"][m][0]
    ax_s.plot(tab["S"][m], tab["L"][m], "o-", ms=3, color=colors[n], label=f"{run}: N = {n:.3g}")
    ax_m.plot(tab["S_min"][m], tab["L"][m], "o", ms=3, color=colors[n], gid=f"points:{run}")
  for n in ns if res is not None else ():
    m = tab["N"] == n
    s = np.geomspace(tab["S_min"][m].min(), tab["S_min"][m].max() * 10, 100)
    ax_m.plot(s, res.predict({"N": np.full_like(s, n), "S_min": s}).value, "-",
              color=colors[n], alpha=0.7, gid=f"fit:{n:g}")
  for ax, x in ((ax_s, "steps S"), (ax_m, f"S_min (B_crit: {b_crit})")):
    common.style_axes(ax, x, "eval loss (nats/token)", log=True)
  ax_s.legend(fontsize="small")
  ax_s.set_title("Learning curves")
  ax_m.set_title("L(N, S_min) fit" if res is not None else "L(N, S_min): fit failed")
  summary = {"b_crit": b_crit, "n_points": int(len(tab["L"])), "fit": p,
             "intervals": common.fit_intervals(res), "note": note,
             "paper": {k: common.paper(ref + k) for k in ("alpha_N", "alpha_S", "N_c", "S_c")}}
  return common.finish(out, summary, fig, "l_of_n_s_min.png")


def main(argv=None) -> int:
  return common.run_analysis(
      argv, __doc__, NAME, analyze,
      {"--b-crit": dict(default="gns", choices=("gns", "kaplan", "none"),
                        help="B_crit(L) for the S_min adjustment")},
      lambda args: {"bootstrap": args.bootstrap, "b_crit": args.b_crit})


if __name__ == "__main__":
  sys.exit(main())
