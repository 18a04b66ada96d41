"""Experiment 3, L(N, D): early-stopped loss over sizes x dataset sizes, and overfitting.

Each run's loss is its lowest eval loss (early stopping); D is its dataset size
(config.data.max_tokens, facts.dataset_tokens). Fits L(N, D) = [(N_c/N)^(alpha_N/alpha_D) +
D_c/D]^alpha_D (Kaplan Eq. 1.5, Table 2), draws the overfitting penalty
L(N, D)/L(N, inf) - 1 against N^(alpha_N/alpha_D)/D (Fig. 9 right), and checks the paper's
rule D >~ 5e3 N^0.74: the penalty of our runs that satisfy it, and the rule our fit gives
(the D at which the predicted penalty is 2%, the paper's threshold behind 5e3 N^0.74).
Usage: python experiments/03_l_of_n_d/analyze.py SWEEP_DIR [--out DIR] [--bootstrap 200]
"""

from __future__ import annotations

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402

NAME = "03_l_of_n_d"
PENALTY = 0.02  # the predicted overfitting penalty behind the paper's 5e3 N^0.74 rule
PAPER_RULE = (5e3, 0.74)


def overfitting_rule(p: dict[str, float], penalty: float = PENALTY) -> tuple[float, float]:
  """(coefficient k, exponent e) of D >= k N^e, where L(N, D) of Eq. 1.5 with params `p`
  exceeds the converged L(N, inf) = (N_c/N)^alpha_N by at most `penalty` (relative)."""
  e = p["alpha_N"] / p["alpha_D"]
  k = p["D_c"] * p["N_c"] ** (-e) / ((1 + penalty) ** (1 / p["alpha_D"]) - 1)
  return float(k), float(e)


def penalty_curve(p: dict[str, float], x: np.ndarray) -> np.ndarray:
  """Predicted L(N, D)/L(N, inf) - 1 as a function of x = N^(alpha_N/alpha_D) / D."""
  e = p["alpha_N"] / p["alpha_D"]
  return (1 + x * p["D_c"] / p["N_c"] ** e) ** p["alpha_D"] - 1


def analyze(run_dirs, out: str, bootstrap: int = 0) -> dict:
  runs = [r for r in common.load_runs(run_dirs) if r.arch == "transformer"]
  points = [{"run": r.name, "N": r.n_params, "D": float(r.facts["dataset_tokens"]),
             "L": r.best(), "epochs": float(r.records[-1].get("epoch", float("nan")))}
            for r in runs]
  points = [q for q in points if np.isfinite(q["L"])]
  tab = common.as_table(points)
  if len(points) < 5 or len(np.unique(tab["N"])) < 2 or len(np.unique(tab["D"])) < 2:
    raise common.ExperimentError("L(N, D) needs >= 5 early-stopped runs over >= 2 sizes and "
                                 ">= 2 dataset sizes; run experiments/03_l_of_n_d/sweep.py")
  res, note = common.try_fit("L_N_D", tab, bootstrap=bootstrap)
  ref = {k: common.paper(f"L_N_D.fit_table2.{k}") for k in ("alpha_N", "alpha_D", "N_c", "D_c")}
  p = common.fit_params(res)
  paper_rule = overfitting_rule(ref)
  rows = [("alpha_N", p.get("alpha_N"), ref["alpha_N"], note),
          ("alpha_D", p.get("alpha_D"), ref["alpha_D"], ""),
          ("N_c", p.get("N_c"), ref["N_c"], ""), ("D_c", p.get("D_c"), ref["D_c"], "")]
  summary: dict = {"points": points, "fit": p, "intervals": common.fit_intervals(res),
                   "note": note, "paper": ref,
                   "paper_rule": {"k": PAPER_RULE[0], "exponent": PAPER_RULE[1],
                                  "from_table2_fit": paper_rule}}
  if res is not None:
    ours_rule = overfitting_rule(p)
    l_inf = (p["N_c"] / tab["N"]) ** p["alpha_N"]
    pen = tab["L"] / l_inf - 1
    x = tab["N"] ** (p["alpha_N"] / p["alpha_D"]) / tab["D"]
    ok = tab["D"] >= PAPER_RULE[0] * tab["N"] ** PAPER_RULE[1]
    worst = float(pen[ok].max()) if ok.any() else float("nan")
    rows += [("rule exponent alpha_N/alpha_D", ours_rule[1], PAPER_RULE[1],
              f"Table 2 values give {paper_rule[1]:.3g}"),
             ("rule coefficient (2% penalty)", ours_rule[0], PAPER_RULE[0],
              f"Table 2 values give {paper_rule[0]:.3g}"),
             ("max penalty, runs obeying rule", worst, PENALTY,
              f"{int(ok.sum())} of {len(ok)} runs have D >= 5e3 N^0.74")]
    summary.update({"penalty": pen, "x": x, "obeys_paper_rule": ok,
                    "max_penalty_obeying_rule": worst,
                    "our_rule": {"k": ours_rule[0], "exponent": ours_rule[1]}})
  print(common.comparison("L(N, D), early-stopped", rows))

  fig, (ax_d, ax_p) = common.figure(2)
  cmap = __import__("matplotlib").colormaps["viridis"]
  ns = np.unique(tab["N"])
  for i, n in enumerate(ns):
    m = tab["N"] == n
    color = cmap(0.9 * i / max(len(ns) - 1, 1))
    order = np.argsort(tab["D"][m])
    ax_d.plot(tab["D"][m][order], tab["L"][m][order], "o", color=color, label=f"N = {n:.3g}",
              gid=f"points:{n:g}")
    if res is not None:
      d = np.geomspace(tab["D"].min() / 2, tab["D"].max() * 2, 100)
      ax_d.plot(d, res.predict({"N": np.full_like(d, n), "D": d}).value, "-", color=color,
                alpha=0.7, gid=f"fit:{n:g}")
      ax_p.plot(summary["x"][m], summary["penalty"][m], "o", color=color, gid=f"penalty:{n:g}")
  if res is not None:
    xs = np.geomspace(max(summary["x"].min() / 3, 1e-30), summary["x"].max() * 3, 100)
    ax_p.plot(xs, penalty_curve(p, xs), "-", color="gray", label="fit", gid="penalty_fit")
    ax_p.axhline(PENALTY, ls=":", color="gray")
    common.style_axes(ax_p, "N^(alpha_N/alpha_D) / D", "L(N, D) / L(N, inf) - 1",
                      "Overfitting penalty", legend="small", log="x")
  common.style_axes(ax_d, "dataset size D (tokens)", "early-stopped eval loss", "L(N, D)",
                    legend="small", log=True)
  return common.finish(out, summary, fig, "l_of_n_d.png")


def main(argv=None) -> int:
  return common.run_analysis(argv, __doc__, NAME, analyze)


if __name__ == "__main__":
  sys.exit(main())
