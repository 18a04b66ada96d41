"""Experiment 1, L(N): final loss vs non-embedding N, and vs total parameters (Kaplan Fig. 6).

Fits L(N) = (N_c/N)^alpha_N twice, on N and on the total parameter count; the paper's
point is that the trend is clean only without the embeddings (models of one N but
different depth have different embedding counts). Prints the fit beside the paper's.
Usage: python experiments/01_l_of_n/analyze.py SWEEP_DIR [--out DIR] [--bootstrap 200]
"""

from __future__ import annotations

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402

NAME = "01_l_of_n"


def _rms_log_residual(res, x: np.ndarray, loss: np.ndarray) -> float:
  if res is None:
    return float("nan")
  pred = res.predict({"N": x}).value
  return float(np.sqrt(np.mean(np.log(pred / loss) ** 2)))


def analyze(run_dirs, out: str, bootstrap: int = 0) -> dict:
  runs = [r for r in common.load_runs(run_dirs) if r.arch == "transformer"]
  points = [{"run": r.name, "N": r.n_params, "N_total": r.n_total, "L": r.final()}
            for r in runs]
  points = [p for p in points if np.isfinite(p["L"])]
  if len({p["N"] for p in points}) < 3:
    raise common.ExperimentError("L(N) needs converged runs of >= 3 sizes; run "
                                 "experiments/01_l_of_n/sweep.py")
  tab = common.as_table(points)
  fit_n, note_n = common.try_fit("L_N", tab, bootstrap=bootstrap)
  fit_t, note_t = common.try_fit("L_N", {"N": tab["N_total"], "L": tab["L"]},
                                 bootstrap=bootstrap)
  rms_n = _rms_log_residual(fit_n, tab["N"], tab["L"])
  rms_t = _rms_log_residual(fit_t, tab["N_total"], tab["L"])
  pn, pt = common.fit_params(fit_n), common.fit_params(fit_t)
  print(common.comparison("L(N) = (N_c/N)^alpha_N, converged loss", [
      ("alpha_N (non-embedding N)", pn.get("alpha_N"),
       common.paper("single_variable_laws.L_N.alpha_N"), note_n),
      ("N_c (non-embedding N)", pn.get("N_c"), common.paper("single_variable_laws.L_N.N_c"),
       ""),
      ("alpha (total parameters)", pt.get("alpha_N"), None, note_t),
      ("rms log-residual, N", rms_n, None, "lower = cleaner trend"),
      ("rms log-residual, total", rms_t, None, "the paper: embeddings blur the trend"),
  ]))

  fig, (ax_n, ax_t) = common.figure(2)
  for ax, key, res, label in ((ax_n, "N", fit_n, "non-embedding parameters N"),
                              (ax_t, "N_total", fit_t, "total parameters")):
    depth = np.array([next(r for r in runs if r.name == p["run"]).model.get("n_layer", 0)
                      for p in points])
    sc = ax.scatter(tab[key], tab["L"], c=depth, cmap="viridis", gid=f"points:{key}")
    if res is not None:
      grid = np.geomspace(tab[key].min() / 1.5, tab[key].max() * 1.5, 100)
      ax.plot(grid, res.predict({"N": grid}).value, "--", color="gray", gid=f"fit:{key}",
              label=f"fit: alpha = {res.params['alpha_N']:.3g}")
      ax.legend(fontsize="small")
    common.style_axes(ax, label, "final eval loss (nats/token)", log=True)
  fig.colorbar(sc, ax=ax_t, label="n_layer")
  ax_n.set_title("Loss vs N (embeddings excluded)")
  ax_t.set_title("Loss vs total parameters")
  fig_path = common.save_figure(fig, out, "l_of_n.png")
  summary = {"points": points, "fit_N": pn, "fit_total": pt,
             "intervals_N": common.fit_intervals(fit_n),
             "intervals_total": common.fit_intervals(fit_t), "rms_log_residual_N": rms_n,
             "rms_log_residual_total": rms_t, "notes": [note_n, note_t], "figure": fig_path,
             "paper": {"alpha_N": common.paper("single_variable_laws.L_N.alpha_N"),
                       "N_c": common.paper("single_variable_laws.L_N.N_c")}}
  return common.finish(out, summary)


def main(argv=None) -> int:
  return common.run_analysis(argv, __doc__, NAME, analyze)


if __name__ == "__main__":
  sys.exit(main())
