"""Experiment 10, compute-optimal allocation five ways on one IsoFLOP sweep.

Chinchilla's Approaches 1 (envelope of the learning curves), 2 (a parabola in ln N per
budget) and 3 (E + A/N^alpha + B/D^beta), the same surface by variable projection (VPNLS)
and Kaplan's frontier (L(N, S_min) and B_crit), all on the same runs
(`scaling_jax.scaling.isoflop`): the exponents a, b of N_opt ∝ C^a and D_opt ∝ C^b with
bootstrap intervals over runs, the compute wasted by following one method's allocation
where another is right, and Approach 2's off-centre / narrow-grid warnings. The same
Approaches 2, 3 and VPNLS on Porian et al.'s (2024) isoFLOP points ("Reproducing Kaplan et
al." and the fully corrected configuration, RefinedWeb) beside their published exponents.
Usage: python experiments/10_isoflop/analyze.py SWEEP_DIR [--flops 6N|6N+unembedding|exact]
       [--bootstrap 200] [--b-crit kaplan|gns]
"""

from __future__ import annotations

import json
import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from matplotlib.ticker import NullFormatter  # noqa: E402

from experiments import common  # noqa: E402
from scaling_jax import accounting, report_plots  # noqa: E402
from scaling_jax.scaling import bcrit, isoflop  # noqa: E402
from scaling_jax.scaling import runs as runs_lib  # noqa: E402
from scaling_jax.scaling.laws import FitError  # noqa: E402

NAME = "10_isoflop"
SWEEP = common.load_module(pathlib.Path(__file__).resolve().parent / "sweep.py")
PORIAN = (isoflop.PORIAN_KAPLAN, isoflop.PORIAN_CORRECTED)


def read_runs(run_dirs, convention: str) -> isoflop.IsoflopRuns:
  """The sweep's finished Transformer runs as IsoflopRuns (`isoflop.from_runs`)."""
  try:
    return isoflop.from_runs(common.load_runs(run_dirs, statuses=("finished",)), convention)
  except FitError as e:
    raise common.ExperimentError(f"{e}; run experiments/10_isoflop/sweep.py into {run_dirs}"
                                 ) from None


def _interval(a: isoflop.Allocation) -> str:
  return f"[{a.a_interval[0]:.3f}, {a.a_interval[1]:.3f}]" if a.a_interval else "-"


def markdown_table(ours: isoflop.IsoflopAnalysis, porian: dict) -> str:
  """The exponent table of the README: each method's a [95% interval] on each data set."""
  head = "| method | CPU sweep: a (N_opt ∝ C^a) | CPU sweep: b (D_opt ∝ C^b) | " + " | ".join(
      f"Porian et al. '{lab}': a" for lab in porian) + " |"
  lines = [head, "|" + " --- |" * (3 + len(porian))]
  for m in isoflop.METHODS:
    cells = ["not fitted (see its warnings)" if m in ours.errors else "-", "-"]
    if m in ours.allocations:
      a = ours.allocations[m]
      b_iv = f" [{a.b_interval[0]:.3f}, {a.b_interval[1]:.3f}]" if a.b_interval else ""
      cells = [f"{a.a:.3f} {_interval(a)}", f"{a.b:.3f}{b_iv}"]
    for lab, res in porian.items():
      al = res["analysis"].allocations.get(m)
      cells.append(f"{al.a:.3f} {_interval(al)}" if al else "- (needs learning curves)")
    lines.append(f"| {isoflop.LABELS[m]} | " + " | ".join(cells) + " |")
  pub = ["-", "-"] + [f"{res['published']['a']:.3f} [{res['published']['a_interval'][0]:.3f}, "
                      f"{res['published']['a_interval'][1]:.3f}]" for res in porian.values()]
  lines.append("| Porian et al. 2024, published (Akima interpolation, weighted) | "
               + " | ".join(pub) + " |")
  lines.append("| Kaplan et al. 2020, published | 0.73 | 0.27 |" + " |" * len(porian))
  lines.append("| Hoffmann et al. 2022 (Chinchilla), published | 0.50 | 0.50 |"
               + " |" * len(porian))
  return "\n".join(lines)


def draw(ours: isoflop.IsoflopAnalysis, porian: dict):
  """The README figure: the CPU sweep's profiles and frontiers, then Porian et al.'s
  frontiers beside their published power law (report_plots draws every panel)."""
  fig, axes = common.figure(2 + len(porian), width=3.8, height=3.4)
  report_plots.draw_isoflop_profiles(axes[0], ours, "CPU sweep: IsoFLOP profiles")
  report_plots.draw_frontiers(axes[1], ours, "CPU sweep: five frontiers")
  for ax, (lab, res) in zip(axes[2:], porian.items()):
    report_plots.draw_frontiers(ax, res["analysis"], f"Porian et al.: {lab[:28]}",
                                published=res["published"])
  for ax in [axes[0], *axes[2:]]:  # the CPU frontiers span < a decade: keep their labels
    ax.xaxis.set_minor_formatter(NullFormatter())
  return fig


def porian_fits(n_boot: int) -> dict:
  """Approaches 2, 3 and VPNLS on Porian et al.'s RefinedWeb isoFLOP points (final losses
  only: Approach 1 and Kaplan's need learning curves), per configuration."""
  out = {}
  for lab in PORIAN:
    data = isoflop.porian_runs(lab, "rw")
    out[lab] = {"analysis": isoflop.analyze(data, n_boot=n_boot,
                                            methods=("approach2", "approach3", "vpnls")),
                "published": isoflop.porian_published(lab, "rw")}
  return out


def record(data: isoflop.IsoflopRuns, path: str) -> dict:
  """Writes the runs (6 significant digits) and the exponents the analysis finds on exactly
  that record (no bootstrap): the regression data of tests/test_isoflop.py."""
  def rounded(x):
    return [float(f"{v:.6g}") for v in x]
  d = data.to_dict()
  runs = {**{k: rounded(d[k]) for k in ("N", "D", "loss", "budget", "batch")},
          "run": d["run"], "curves": [[rounded(t), rounded(v)] for t, v in d["curves"]]}
  res = isoflop.analyze(isoflop.IsoflopRuns.from_dict(runs), n_boot=0)
  out = {"source": "python experiments/10_isoflop/analyze.py runs/10 --record " + path,
         "runs": runs, "a": {m: a.a for m, a in res.allocations.items()},
         "n_budgets": len(res.profiles)}
  with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
  return out


def analyze(run_dirs, out: str, bootstrap: int = 0, flops: str | None = None,
            record_path: str | None = None, b_crit: str = "kaplan") -> dict:
  convention = SWEEP.resolve_convention(flops)
  data = read_runs(run_dirs, convention)
  if record_path:
    record(data, record_path)
  try:
    law = bcrit.choose_b_crit(b_crit, runs_lib.read_runs(run_dirs) if b_crit == "gns" else None)
    ours = isoflop.analyze(data, n_boot=bootstrap, b_crit=law)
  except FitError as e:
    raise common.ExperimentError(str(e)) from None
  porian = porian_fits(bootstrap)
  print(f"IsoFLOP sweep ({len(data)} runs, {len(ours.profiles)} budgets, FLOPs: {convention}; "
        f"{bootstrap} bootstrap resamples of whole runs)")
  print(ours.table())
  for w in ours.warnings + [w for p in ours.profiles for w in p.warnings]:
    print(f"warning: {w}")
  if ours.waste:
    print(f"compute wasted following X where Y is right, at C = {ours.compute_ref:.3g} "
          "(rows X, columns Y; Approach 3's surface re-centred on Y):")
    ms = list(ours.waste)
    print("  " + " ".join(f"{m:>10}" for m in [""] + ms))
    for x in ms:
      print("  " + f"{x:>10} " + " ".join(f"{ours.waste[x][y]:>10.1%}" for y in ms))
  for lab, res in porian.items():
    lo, hi = res["published"]["a_interval"]
    print(f"\nPorian et al. (RefinedWeb) '{lab}': published a = {res['published']['a']:.3f} "
          f"[{lo:.3f}, {hi:.3f}]")
    print(res["analysis"].table())
  table = markdown_table(ours, porian)
  print("\n" + table)
  summary = {"flop_convention": convention, "b_crit": law.params, "n_runs": len(data),
             "bootstrap": bootstrap,
             "ours": ours.to_dict(), "markdown_table": table,
             "porian": {lab: {"analysis": res["analysis"].to_dict(),
                              "published": res["published"]} for lab, res in porian.items()}}
  return common.finish(out, summary, draw(ours, porian), report_plots.ISOFLOP_FIGURE)


def main(argv=None) -> int:
  return common.run_analysis(
      argv, __doc__, NAME, analyze,
      {"--flops": dict(default=None, choices=accounting.FLOP_CONVENTIONS,
                       help="the FLOP convention the sweep used (default: $SCALING_JAX_FLOPS "
                            f"or {SWEEP.DEFAULT_CONVENTION})"),
       "--record": dict(default=None, help="also write the runs and their exponents to this "
                                           "JSON (the regression data of tests/test_isoflop.py)"),
       "--b-crit": dict(default="kaplan", choices=("kaplan", "gns"),
                        help="B_crit(L) of Kaplan's frontier (scaling.bcrit.choose_b_crit)")},
      lambda args: {"bootstrap": args.bootstrap, "flops": args.flops, "record_path": args.record,
                    "b_crit": args.b_crit})


if __name__ == "__main__":
  sys.exit(main())
