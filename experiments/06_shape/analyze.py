"""Experiment 6, shape at fixed N: loss vs depth, aspect ratio, d_ff/d_model and heads (Fig. 5).

Runs are grouped by N (within a factor `--tolerance`); inside a group, each loss is moved
to the group's reference N with L(N)'s exponent (fitted over the groups when >= 3 sizes
exist, else the paper's alpha_N = 0.076), and shown as the increase over the group's best
shape. The paper: at fixed N the loss changes only a few percent over a wide range of
shapes (aspect ratio 20-200 within ~3%); very shallow models do worse.
Usage: python experiments/06_shape/analyze.py SWEEP_DIR [--out DIR] [--tolerance 1.3]
"""

from __future__ import annotations

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402

NAME = "06_shape"
VARIABLES = (("aspect", "aspect ratio d_model / n_layer"), ("n_layer", "n_layer"),
             ("ff_ratio", "d_ff / d_model"), ("n_heads", "n_heads"))


def _family(name: str) -> str:
  """The sweep family a run belongs to (the name's prefix: depth, ffn, heads)."""
  return name.split("_")[0] if "_" in name else "runs"


def n_groups(ns: np.ndarray, tolerance: float) -> np.ndarray:
  """Group ids: sorted N values closer than a factor `tolerance` to the group's first."""
  order = np.argsort(ns)
  ids = np.empty(len(ns), int)
  gid, start = -1, None
  for i in order:
    if start is None or ns[i] > start * tolerance:
      gid, start = gid + 1, ns[i]
    ids[i] = gid
  return ids


def analyze(run_dirs, out: str, bootstrap: int = 0, tolerance: float = 1.3) -> dict:
  runs = [r for r in common.load_runs(run_dirs) if r.arch == "transformer"]
  pts = []
  for r in runs:
    m = r.model
    pts.append({"run": r.name, "family": _family(r.name), "N": r.n_params, "L": r.final(),
                "n_layer": m["n_layer"], "aspect": m["d_model"] / m["n_layer"],
                "ff_ratio": m["d_ff"] / m["d_model"], "n_heads": m["n_heads"]})
  pts = [p for p in pts if np.isfinite(p["L"])]
  ns = np.array([p["N"] for p in pts])
  gid = n_groups(ns, tolerance)
  alpha, source = common.paper("single_variable_laws.L_N.alpha_N"), "paper"
  if len(np.unique(gid)) >= 3:
    best = [min(p["L"] for p, g in zip(pts, gid) if g == k) for k in np.unique(gid)]
    n_best = [np.exp(np.mean(np.log(ns[gid == k]))) for k in np.unique(gid)]
    res, _ = common.try_fit("L_N", {"N": np.array(n_best), "L": np.array(best)})
    if res is not None and res.converged:
      alpha, source = res.params["alpha_N"], "fit over the groups"
  groups = []
  for k in np.unique(gid):
    members = [p for p, g in zip(pts, gid) if g == k]
    if len(members) < 2:
      continue
    n_ref = float(np.exp(np.mean(np.log([p["N"] for p in members]))))
    for p in members:
      p["L_at_ref"] = p["L"] * (p["N"] / n_ref) ** alpha
    l_best = min(p["L_at_ref"] for p in members)
    for p in members:
      p["increase"] = p["L_at_ref"] / l_best - 1
    groups.append({"N_ref": n_ref, "runs": [p["run"] for p in members],
                   "max_increase": max(p["increase"] for p in members),
                   "best": min(members, key=lambda p: p["increase"])["run"]})
  if not groups:
    raise common.ExperimentError(f"no two runs have N within a factor {tolerance}; run "
                                 "experiments/06_shape/sweep.py (shapes at one N)")
  rows = [("alpha_N used to align N", alpha, common.paper("single_variable_laws.L_N.alpha_N"),
           source)]
  for g in groups:
    rows.append((f"max loss increase, N~{g['N_ref']:.3g}", g["max_increase"], None,
                 f"{len(g['runs'])} shapes; best {g['best']}; paper: a few %"))
    for fam in sorted({p["family"] for p in pts if p["run"] in g["runs"]}):
      inc = [p["increase"] for p in pts if p["run"] in g["runs"] and p["family"] == fam]
      rows.append((f"  family {fam}: spread", max(inc) - min(inc), None, f"{len(inc)} runs"))
  print(common.comparison("Shape at fixed N (relative loss increase over the best shape)",
                          rows))

  fig, axes = common.figure(4, width=4.0)
  fams = sorted({p["family"] for p in pts})
  for ax, (key, label) in zip(axes, VARIABLES):
    for j, fam in enumerate(fams):
      sel = [p for p in pts if "increase" in p and p["family"] == fam]
      if sel:
        ax.plot([p[key] for p in sel], [100 * p["increase"] for p in sel], "o",
                color=f"C{j}", label=fam, gid=f"{key}:{fam}")
    common.style_axes(ax, label, "loss increase over best shape (%)", log="x")
  axes[0].legend(fontsize="small")
  axes[0].set_title(f"alpha_N = {alpha:.3g} ({source})")
  summary = {"points": pts, "groups": groups, "alpha_N": alpha, "alpha_source": source,
             "tolerance": tolerance}
  return common.finish(out, summary, fig, "shape.png")


def main(argv=None) -> int:
  return common.run_analysis(
      argv, __doc__, NAME, analyze,
      {"--tolerance": dict(type=float, default=1.3,
                           help="runs whose N differ by less than this factor are one group")},
      lambda args: {"tolerance": args.tolerance})


if __name__ == "__main__":
  sys.exit(main())
