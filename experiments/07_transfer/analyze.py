"""Experiment 7, transfer: loss on other distributions vs the training distribution (Fig. 8).

For every eval set a run logged (`eval/<set>/loss`, e.g. ood_prose and ood_numpy beside
validation): the final loss against the validation loss, the mean offset and the slope
of that line (the paper: a roughly constant offset, slope ~1), and L(N) fitted per set
(the paper: parallel power laws, alpha_N ~0.076 on WebText2).
Usage: python experiments/07_transfer/analyze.py SWEEP_DIR [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
from scaling_jax import metric_keys  # noqa: E402

NAME = "07_transfer"
BASE = "validation"


def eval_sets(runs) -> list[str]:
  keys = {k for r in runs for rec in r.records for k in rec if k.startswith("eval/")}
  sets = sorted(k.split("/")[1] for k in keys if k.endswith("/loss"))
  return [BASE] + [s for s in sets if s != BASE] if BASE in sets else sets


def analyze(run_dirs, out: str, bootstrap: int = 0) -> dict:
  runs = [r for r in common.load_runs(run_dirs) if r.arch == "transformer"]
  sets = eval_sets(runs)
  if BASE not in sets or len(sets) < 2:
    raise common.ExperimentError(
        f"the runs logged eval sets {sets}; transfer needs '{BASE}' and at least one more: "
        "train with config.data.eval_sets=('validation', 'ood_prose', 'ood_numpy')")
  final = {s: np.array([r.final(metric_keys.eval_loss(s)) for r in runs]) for s in sets}
  ns = np.array([r.n_params for r in runs])
  base = final[BASE]
  per_set, rows = {}, []
  alpha_ref = common.paper("single_variable_laws.L_N.alpha_N")
  for s in sets:
    ok = np.isfinite(final[s]) & np.isfinite(base)
    entry: dict = {"final": final[s]}
    if len(np.unique(ns[ok])) >= 3:
      res, note = common.try_fit("L_N", {"N": ns[ok], "L": final[s][ok]}, bootstrap=bootstrap)
      entry["fit"] = common.fit_params(res)
      entry["intervals"] = common.fit_intervals(res)
      rows.append((f"alpha_N on {s}", entry["fit"].get("alpha_N"), alpha_ref, note))
    if s != BASE and ok.sum() >= 1:
      entry["offset"] = float(np.mean(final[s][ok] - base[ok]))
      entry["slope"] = (float(np.polyfit(base[ok], final[s][ok], 1)[0])
                        if len(np.unique(base[ok])) >= 2 else float("nan"))
      rows.append((f"offset {s} - {BASE} (nats)", entry["offset"], None,
                   "paper: roughly constant"))
      rows.append((f"slope d{s}/d{BASE}", entry["slope"], 1.0, "paper: ~1"))
    per_set[s] = entry
  print(common.comparison(f"Transfer across distributions ({len(runs)} runs)", rows))

  fig, (ax_t, ax_n) = common.figure(2)
  for j, s in enumerate(sets):
    color = f"C{j}"
    order = np.argsort(ns)
    ax_n.plot(ns[order], final[s][order], "o", color=color, label=s, gid=f"points:{s}")
    fit = per_set[s].get("fit")
    if fit:
      grid = np.geomspace(ns.min() / 1.5, ns.max() * 1.5, 50)
      ax_n.plot(grid, (fit["N_c"] / grid) ** fit["alpha_N"], "-", color=color, alpha=0.6)
    if s != BASE:
      ax_t.plot(base, final[s], "o", color=color, label=s, gid=f"transfer:{s}")
      x = np.linspace(np.nanmin(base), np.nanmax(base), 10)
      ax_t.plot(x, x + per_set[s]["offset"], "--", color=color, alpha=0.6)
  x = np.linspace(np.nanmin(base), np.nanmax(base), 10)
  ax_t.plot(x, x, ":", color="gray", label="y = x")
  common.style_axes(ax_t, f"{BASE} loss", "loss on the other distribution",
                    "Transfer (dashed: constant offset)", legend="small")
  common.style_axes(ax_n, "non-embedding parameters N", "final eval loss", "L(N) per eval set",
                    legend="small", log=True)
  summary = {"sets": sets, "runs": [r.name for r in runs], "N": ns, "per_set": per_set}
  return common.finish(out, summary, fig, "transfer.png")


def main(argv=None) -> int:
  return common.run_analysis(argv, __doc__, NAME, analyze)


if __name__ == "__main__":
  sys.exit(main())
