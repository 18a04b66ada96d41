"""Experiment 4, B_crit(L): critical batch size from a batch-size sweep, beside the GNS.

For one model trained at several batch sizes, each loss level's steps S(B) follow
S = S_min + E_min/B (Kaplan Eq. 5.4), giving B_crit(L) = E_min/S_min per level
(scaling_jax.scaling.batch.analyze_batch_sweep). B_crit(L) = B_*/L^(1/alpha_B) then comes
from the project's one chooser (scaling_jax.scaling.bcrit) both ways: "sweep" (the levels)
and "gns" (the runs' pooled B_simple, at full learning rate); both print beside the
paper's B_* and alpha_B (Fig. 10).
If the runs hold several models, the one with the most batch sizes is analysed.
Usage: python experiments/04_critical_batch/analyze.py SWEEP_DIR [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from scaling_jax.scaling import batch as batch_lib, batch_plots, bcrit  # noqa: E402
from scaling_jax.scaling.laws import FitError  # noqa: E402

NAME = "04_critical_batch"


def analyze(run_dirs, out: str, bootstrap: int = 0) -> dict:
  runs = [r for r in common.load_runs(run_dirs) if r.arch == "transformer"]
  by_n = common.group_by(runs, lambda r: r.n_params)
  n, group = max(by_n.items(),
                 key=lambda kv: len({r.facts["batch_tokens"] for r in kv[1]}))
  curves, notes = batch_lib.curves_from_runs(group)
  result = batch_lib.analyze_batch_sweep(curves)
  gns = bcrit.gns_points(group)
  figures = batch_plots.save_batch_figures(result, out, gns)
  laws, why = {}, {}
  for spec in ("sweep", "gns"):  # the project's one B_crit(L) chooser, both ways
    try:
      laws[spec] = bcrit.choose_b_crit(spec, group, bootstrap=bootstrap or 200)
    except FitError as e:
      why[spec] = str(e)
  ps = laws["sweep"].to_dict() if "sweep" in laws else {}
  pg = laws["gns"].to_dict() if "gns" in laws else {}
  ref_b, ref_a = (common.paper("critical_batch_size.B_star_tokens"),
                  common.paper("critical_batch_size.alpha_B"))
  levels = np.array([lv.loss for lv in result.levels])
  ratio = float("nan")
  if "gns" in laws and len(levels):
    ratio = float(np.median(np.array([lv.b_crit for lv in result.levels]) / laws["gns"](levels)))
  print(common.comparison(
      f"B_crit(L) = B_*/L^(1/alpha_B), model N = {n:.4g}, "
      f"{len(result.batch_tokens)} batch sizes, {len(result.levels)} loss levels", [
          ("B_* (tokens), batch sweep", ps.get("B_star"), ref_b, why.get("sweep", "")[:80]),
          ("alpha_B, batch sweep", ps.get("alpha_B"), ref_a, ""),
          ("B_* (tokens), GNS B_simple", pg.get("B_star"), ref_b, why.get("gns", "")[:80]),
          ("alpha_B, GNS B_simple", pg.get("alpha_B"), ref_a, ""),
          ("median B_crit / B_simple", ratio, None, "paper: same order of magnitude"),
      ]))
  for lv in result.levels:
    print(f"  L = {lv.loss:.4g}: S_min = {lv.s_min:.4g}, E_min = {lv.e_min:.4g} tokens, "
          f"B_crit = {lv.b_crit:.4g} tokens")
  for note in notes + result.notes:
    print(f"  note: {note}")
  summary = {"n_params": n, "runs": [r.name for r in group], "sweep": result.to_dict(),
             "b_crit_sweep": ps, "b_crit_gns": pg, "b_crit_over_b_simple": ratio,
             "paper": {"B_star": ref_b, "alpha_B": ref_a}, "figures": figures,
             "notes": list(why.values())}
  return common.finish(out, summary)


def main(argv=None) -> int:
  return common.run_analysis(argv, __doc__, NAME, analyze)


if __name__ == "__main__":
  sys.exit(main())
