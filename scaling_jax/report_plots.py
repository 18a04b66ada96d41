"""The report's figures, built from `report.analyze` output on `matplotlib.figure.Figure`.

No pyplot (no global state; saving renders with Agg). Every data artist has a gid
("curve:<run>", "fit_data:<run>", "fit:<run>", "heldout:observed", "heldout:predicted",
"final", "L_N_fit", "converged", "gns:<run>", "batch", "gns_points", "b_crit_fit", "kaplan",
"run_compute:<run>", "frontier_L", "frontier_N", "run_N") so tests can read back exactly
what is plotted.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

CMAP = "viridis"


def _norm(runs):
  ns = [r["N"] for r in runs]
  lo, hi = min(ns), max(ns)
  return LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 1.01)


def _colors(runs):
  norm, cmap = _norm(runs), matplotlib.colormaps[CMAP]
  return {r["name"]: cmap(0.9 * norm(r["N"])) for r in runs}, norm


def _colorbar(fig, ax, norm):
  sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=matplotlib.colors.ListedColormap(
      matplotlib.colormaps[CMAP](np.linspace(0, 0.9, 256))))
  fig.colorbar(sm, ax=ax, label="N (non-embedding parameters)")


def plot_learning_curves(a: dict[str, Any]) -> Figure:
  """Loss vs step for every run (log-log), coloured by N."""
  runs = a["_runs"]
  colors, norm = _colors(runs)
  fig = Figure(figsize=(7, 4.5))
  ax = fig.add_subplot(1, 1, 1)
  for r in runs:
    ax.plot(r["steps"], r["loss"], "-", color=colors[r["name"]], lw=1.5, gid=f"curve:{r['name']}",
            label=f"{r['name']} (N={r['N']:.3g})")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  key = runs[0]["loss_key"]
  ax.set_ylabel(f"{'validation' if key != 'loss' else 'train'} loss (nats/token)")
  ax.set_title("Learning curves")
  ax.legend(fontsize="x-small")
  _colorbar(fig, ax, norm)
  return fig


def plot_fit(a: dict[str, Any]) -> Figure:
  """Left: L vs S_min with the held-out L(N, S_min) fit and its extrapolation (band).
  Right: final loss vs N, the L(N) fit (band) and the converged term (N_c/N)^alpha_N."""
  runs, table = a["_runs"], a["_table"]
  colors, norm = _colors(runs)
  fits = a["_fits"]
  fig = Figure(figsize=(12, 4.5))
  ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  fit = fits["heldout"] or fits["full"]
  held = a.get("heldout", {}).get("run")
  for r in runs:
    m = table["run"] == r["name"]
    if not m.any():
      continue
    s, l = np.asarray(table["S_min"][m], float), np.asarray(table["L"][m], float)
    if r["name"] == held:
      continue
    ax.plot(s, l, "o", ms=3, color=colors[r["name"]], gid=f"fit_data:{r['name']}")
    if fit is not None:
      grid = np.geomspace(s.min(), s.max(), 100)
      pred = fit.predict({"N": np.full_like(grid, r["N"]), "S_min": grid}).value
      ax.plot(grid, pred, "-", color=colors[r["name"]], lw=1, gid=f"fit:{r['name']}")
  hc = a.get("_heldout_curve")
  if hc is not None:
    ax.plot(hc["S_min"], hc["L"], "-", color="k", lw=1.5, gid="heldout:observed",
            label=f"{held}: observed (held out)")
    ax.plot(hc["S_min"], hc["pred"], "--", color="C3", lw=1.5, gid="heldout:predicted",
            label="predicted from the smaller models")
    if np.isfinite(hc["lo"]).any():
      ax.fill_between(hc["S_min"], hc["lo"], hc["hi"], color="C3", alpha=0.2,
                      gid="heldout:band", label=f"{100 * a['level']:g}% band")
    h = a["heldout"]
    ax.text(0.02, 0.03, f"held-out error: {100 * h['rms_rel_error']:.2f}% RMS, "
            f"{100 * h['final_rel_error']:+.2f}% at the end", transform=ax.transAxes,
            fontsize="small")
    ax.legend(fontsize="x-small")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(f"S_min (steps; B_crit for S_min: {a.get('s_min_b_crit', 'none')})")
  ax.set_ylabel("loss (nats/token)")
  title = "L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S"
  if fit is not None:
    p = fit.params
    title += f"\nα_N={p['alpha_N']:.3g}, α_S={p['alpha_S']:.3g}" + (
        " (fit without the largest model)" if fits["heldout"] is not None else "")
  ax.set_title(title, fontsize="medium")

  n = np.array([r["N"] for r in runs])
  final = np.array([r["loss"][-1] for r in runs])
  bx.plot(n, final, "o", color="k", gid="final", label="final loss of each run")
  grid = np.geomspace(n.min() / 2, n.max() * 4, 100)
  if fits["L_N"] is not None:
    pred = fits["L_N"].predict({"N": grid})
    bx.plot(grid, pred.value, "-", color="C0", gid="L_N_fit",
            label=f"L(N) fit: α_N={fits['L_N'].params['alpha_N']:.3g}")
    if np.isfinite(pred.lo).any():
      bx.fill_between(grid, pred.lo, pred.hi, color="C0", alpha=0.2, gid="L_N_band")
  full = fits["full"] or fits["heldout"]
  if full is not None:
    conv = (full.params["N_c"] / grid) ** full.params["alpha_N"]
    bx.plot(grid, conv, "--", color="C2", gid="converged",
            label=f"(N_c/N)^α_N from L(N,S_min): α_N={full.params['alpha_N']:.3g}")
  bx.set_xscale("log")
  bx.set_yscale("log")
  bx.set_xlabel("N (non-embedding parameters)")
  bx.set_ylabel("loss (nats/token)")
  bx.set_title("Loss vs model size")
  bx.legend(fontsize="x-small")
  fig.tight_layout()
  return fig


def plot_b_simple(a: dict[str, Any]) -> Figure:
  """Left: B_simple (tokens) vs step per run, with the batch size. Right: vs loss, with the
  fitted B_crit(L) and Kaplan's."""
  from scaling_jax.scaling.batch import b_crit_kaplan
  runs = a["_runs"]
  colors, norm = _colors(runs)
  fig = Figure(figsize=(12, 4.5))
  ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  for r in runs:
    ok = np.isfinite(r["b_simple"]) & (r["b_simple"] > 0)
    if ok.any():
      ax.plot(r["gns_steps"][ok], r["b_simple"][ok], "-", color=colors[r["name"]], lw=1,
              gid=f"gns:{r['name']}", label=r["name"])
  b = sorted({r["B"] for r in runs})
  for i, bb in enumerate(b):
    ax.axhline(bb, color="gray", ls=":", gid="batch" if i == 0 else f"batch:{bb:g}",
               label="batch size B" if i == 0 else None)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("B_simple = tr(Σ)/|G|² (tokens)")
  ax.set_title("Gradient noise scale over training")
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize="x-small")
  g = a["_gns"]
  if len(g["loss"]):
    cols = [colors[runs[i]["name"]] for i in g["run"]]
    bx.scatter(g["loss"], g["b_simple"], s=6, c=cols, gid="gns_points")
    grid = np.geomspace(g["loss"].min(), g["loss"].max(), 100)
    bc = a["_fits"]["B_crit"]
    if bc:
      flat = a["B_crit"]["alpha_B"] is None
      bx.plot(grid, bc["B_star"] * grid ** (-1 / bc["alpha_B"]), "-", color="C3",
              gid="b_crit_fit", label=f"median B_simple: {bc['B_star']:.3g}" if flat else
              f"fit: {bc['B_star']:.3g} / L^(1/{bc['alpha_B']:.3g})")
    bx.plot(grid, b_crit_kaplan(grid), "--", color="gray", gid="kaplan",
            label="Kaplan: 2e8 / L^(1/0.21)")
    bx.legend(fontsize="x-small")
  bx.set_xscale("log")
  bx.set_yscale("log")
  bx.set_xlabel("loss (nats/token)")
  bx.set_ylabel("B_simple (tokens)")
  bx.set_title("B_simple vs loss (B_crit(L))")
  fig.tight_layout()
  return fig


def plot_frontier(a: dict[str, Any]) -> Figure:
  """Left: loss vs C (the runs) and the frontier L(C_min). Right: N_opt(C_min) and the runs' N."""
  runs = a["_runs"]
  colors, norm = _colors(runs)
  fig = Figure(figsize=(12, 4.5))
  ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  for r in runs:
    c = r["steps"] * r["B"] * r["flops_per_token"]
    ax.plot(c, r["loss"], "-", color=colors[r["name"]], lw=1, alpha=0.8,
            gid=f"run_compute:{r['name']}", label=r["name"])
  fr = a.get("frontier")
  if fr:
    p = fr["points"]
    c, l, n = (np.asarray(p[k], float) for k in ("C_min", "L", "N_opt"))
    ax.plot(c, l, "-", color="C3", lw=2, gid="frontier_L",
            label=f"frontier L(C_min), α_C={fr['closed_form']['alpha_C_min']:.3g}")
    bx.plot(c, n, "-", color="C3", lw=2, gid="frontier_N",
            label=f"N_opt ∝ C_min^{fr['closed_form']['p_N']:.2f}")
    total = np.array([r["steps"][-1] * r["B"] * r["flops_per_token"] for r in runs])
    bx.plot(total, [r["N"] for r in runs], "o", color="k", gid="run_N",
            label="the runs (N, total C)")
    bx.legend(fontsize="x-small")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("compute C = 6NBS (FLOPs)")
  ax.set_ylabel("loss (nats/token)")
  ax.set_title("Compute-efficient frontier\n(B_crit: "
               f"{fr['b_crit_source'] if fr else '–'})", fontsize="medium")
  ax.legend(fontsize="x-small")
  bx.set_xscale("log")
  bx.set_yscale("log")
  bx.set_xlabel("C_min (FLOPs)")
  bx.set_ylabel("optimal N")
  bx.set_title("Optimal model size vs compute")
  fig.tight_layout()
  return fig


FIGURES = {
    "learning_curves.png": plot_learning_curves,
    "fit_extrapolation.png": plot_fit,
    "b_simple.png": plot_b_simple,
    "frontier.png": plot_frontier,
}


def make_figures(a: dict[str, Any]) -> dict[str, Figure]:
  return {name: fn(a) for name, fn in FIGURES.items()}


def save_figures(a: dict[str, Any], out_dir: str, dpi: int = 100) -> dict[str, str]:
  """Writes every figure as PNG into `out_dir`; returns {name: path}."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {}
  for name, fig in make_figures(a).items():
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    paths[name] = path
  return paths
