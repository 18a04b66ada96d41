"""The report's figures, drawn from a typed `scaling.study.StudyAnalysis` on
`matplotlib.figure.Figure` (no analysis here: only rendering).

No pyplot (no global state; saving renders with Agg). Every data artist has a gid
("curve:<run>", "fit_data:<run>", "fit:<run>", "heldout:observed", "heldout:predicted",
"final", "L_N_fit", "converged", "gns:<run>", "batch", "gns_points", "gns_excluded",
"b_crit_fit", "kaplan", "run_compute:<run>", "frontier_L", "frontier_N", "run_N"; for an
IsoFLOP sweep "profile:<C>", "parabola:<C>", "vertex:<C>", "frontier:<method>",
"frontier_points:<method>", "slope:<p>", "published") so tests can read back exactly what
is plotted.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from scaling_jax import rundir
from scaling_jax.scaling import isoflop, plots
from scaling_jax.scaling.bcrit import GNS_MIN_LR_FRACTION, kaplan_law
from scaling_jax.scaling.study import StudyAnalysis

CMAP = "viridis"


def _norm(runs):
  ns = [r.n_params for r in runs]
  lo, hi = min(ns), max(ns)
  return LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 1.01)


def _colors(runs):
  norm, cmap = _norm(runs), matplotlib.colormaps[CMAP]
  return {r.name: cmap(0.9 * norm(r.n_params)) for r in runs}, norm


def _colorbar(fig, ax, norm):
  sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=matplotlib.colors.ListedColormap(
      matplotlib.colormaps[CMAP](np.linspace(0, 0.9, 256))))
  fig.colorbar(sm, ax=ax, label="N (non-embedding parameters)")


def plot_learning_curves(a: StudyAnalysis) -> Figure:
  """Loss vs step for every run (log-log), coloured by N."""
  runs = a.runs
  colors, norm = _colors(runs)
  fig = Figure(figsize=(7, 4.5))
  ax = fig.add_subplot(1, 1, 1)
  for r in runs:
    steps, loss = r.loss
    ax.plot(steps, loss, "-", color=colors[r.name], lw=1.5, gid=f"curve:{r.name}",
            label=f"{r.name} (N={r.n_params:.3g})")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  key = runs[0].loss_key
  ax.set_ylabel(f"{'validation' if key != 'loss' else 'train'} loss (nats/token)")
  ax.set_title("Learning curves")
  ax.legend(fontsize="x-small")
  _colorbar(fig, ax, norm)
  return fig


def plot_fit(a: StudyAnalysis) -> Figure:
  """Left: L vs S_min with the held-out L(N, S_min) fit and its extrapolation (band).
  Right: final loss vs N, the L(N) fit (band) and the converged term (N_c/N)^alpha_N."""
  runs, table = a.runs, a.table
  colors, norm = _colors(runs)
  fig = Figure(figsize=(12, 4.5))
  ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  h = a.main_heldout
  fit = h.fit if h is not None else a.fit
  for r in runs:
    m = table["run"] == r.name
    if not m.any() or (h is not None and r.name == h.run):
      continue
    s, l = np.asarray(table["S_min"][m], float), np.asarray(table["L"][m], float)
    ax.plot(s, l, "o", ms=3, color=colors[r.name], gid=f"fit_data:{r.name}")
    if fit is not None:
      grid = np.geomspace(s.min(), s.max(), 100)
      pred = fit.predict({"N": np.full_like(grid, r.n_params), "S_min": grid}).value
      ax.plot(grid, pred, "-", color=colors[r.name], lw=1, gid=f"fit:{r.name}")
  if h is not None:
    ax.plot(h.s_min, h.observed, "-", color="k", lw=1.5, gid="heldout:observed",
            label=f"{h.run}: observed (held out)")
    ax.plot(h.s_min, h.predicted, "--", color="C3", lw=1.5, gid="heldout:predicted",
            label="predicted from the smaller models")
    if np.isfinite(h.lo).any():
      ax.fill_between(h.s_min, h.lo, h.hi, color="C3", alpha=0.2, gid="heldout:band",
                      label=f"{100 * a.level:g}% prediction band")
    d = h.to_dict()
    ax.text(0.02, 0.03, f"held-out error: {100 * d['rms_rel_error']:.2f}% RMS, "
            f"{100 * d['final_rel_error']:+.2f}% at the end; "
            f"{100 * (d['fraction_in_band'] or 0):.0f}% of its points in the band",
            transform=ax.transAxes, fontsize="small")
    ax.legend(fontsize="x-small")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(f"S_min (steps; B_crit(L): {a.b_crit.source})")
  ax.set_ylabel("loss (nats/token)")
  title = "L(N, S_min) = (N_c/N)^α_N + (S_c/S_min)^α_S"
  if fit is not None:
    p = fit.params
    title += f"\nα_N={p['alpha_N']:.3g}, α_S={p['alpha_S']:.3g}" + (
        " (fit without the largest model)" if h is not None else "")
  ax.set_title(title, fontsize="medium")

  n = np.array([r.n_params for r in runs])
  final = np.array([r.final() for r in runs])
  bx.plot(n, final, "o", color="k", gid="final", label="final loss of each run")
  grid = np.geomspace(n.min() / 2, n.max() * 4, 100)
  if a.fit_final is not None:
    pred = a.fit_final.predict({"N": grid})
    bx.plot(grid, pred.value, "-", color="C0", gid="L_N_fit",
            label=f"L(N) fit: α_N={a.fit_final.params['alpha_N']:.3g}")
    if np.isfinite(pred.lo).any():
      bx.fill_between(grid, pred.lo, pred.hi, color="C0", alpha=0.2, gid="L_N_band")
  full = a.fit or (h.fit if h is not None else None)
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


def plot_b_simple(a: StudyAnalysis) -> Figure:
  """Left: B_simple (tokens) vs step per run, with the batch size. Right: vs loss, the
  readings the B_crit(L) fit kept and those it left out (late, annealed LR), the law chosen
  for the study and Kaplan's."""
  runs = a.runs
  colors, norm = _colors(runs)
  fig = Figure(figsize=(12, 4.5))
  ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  for r in runs:
    steps, b = r.b_simple
    if len(steps):
      ax.plot(steps, b, "-", color=colors[r.name], lw=1, gid=f"gns:{r.name}", label=r.name)
  for i, bb in enumerate(sorted({r.batch_tokens for r in runs})):
    ax.axhline(bb, color="gray", ls=":", gid="batch" if i == 0 else f"batch:{bb:g}",
               label="batch size B" if i == 0 else None)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("B_simple = tr(Σ)/|G|² (tokens)")
  ax.set_title("Gradient noise scale over training")
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize="x-small")
  law = a.b_crit
  pts = law.points
  if pts is not None and len(pts.loss):
    cols = np.array([colors.get(n, "k") for n in pts.run], dtype=object)
    k = pts.kept
    bx.scatter(pts.loss[k], pts.b_simple[k], s=8, c=list(cols[k]), gid="gns_points",
               label=f"GNS readings used (LR >= {GNS_MIN_LR_FRACTION:g} x peak)")
    if (~k).any():
      bx.scatter(pts.loss[~k], pts.b_simple[~k], s=10, facecolors="none",
                 edgecolors=list(cols[~k]), gid="gns_excluded",
                 label="left out (warmup, or LR annealed)")
    grid = np.geomspace(pts.loss.min(), pts.loss.max(), 100)
  else:
    grid = np.geomspace(min(r.final() for r in runs), max(r.loss[1][0] for r in runs), 100)
  if law.adjusts:
    at_peak = (f" at the peak LR (readings ∝ (LR/peak)^-{law.lr_exponent:.2f})"
               if law.lr_exponent is not None else "")
    label = law.description if law.params is None else (
        f"{law.source}: {law.b_star:.3g} / L^(1/{law.alpha_b:.3g}){at_peak}")
    bx.plot(grid, law(grid), "-", color="C3", gid="b_crit_fit", label=label)
  bx.plot(grid, kaplan_law()(grid), "--", color="gray",
          gid="kaplan", label="Kaplan: 2e8 / L^(1/0.21)")
  bx.legend(fontsize="x-small")
  bx.set_xscale("log")
  bx.set_yscale("log")
  bx.set_xlabel("loss (nats/token)")
  bx.set_ylabel("B_simple (tokens)")
  bx.set_title("B_simple vs loss: the study's B_crit(L)")
  fig.tight_layout()
  return fig


def plot_frontier(a: StudyAnalysis) -> Figure:
  """Left: loss vs C (the runs) and the frontier L(C_min). Right: N_opt(C_min) and the runs' N."""
  runs = a.runs
  colors, norm = _colors(runs)
  fig = Figure(figsize=(12, 4.5))
  ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  for r in runs:
    steps, loss = r.loss
    ax.plot(r.flops_at(steps), loss, "-", color=colors[r.name], lw=1, alpha=0.8,
            gid=f"run_compute:{r.name}", label=r.name)
  fr = a.frontier
  if fr:
    p = fr["points"]
    c, l, n = (np.asarray(p[k], float) for k in ("C_min", "L", "N_opt"))
    ex = fr.get("closed_form") or fr["exponents"]
    ax.plot(c, l, "-", color="C3", lw=2, gid="frontier_L",
            label=f"frontier L(C_min), α_C={ex['alpha_C_min']:.3g}")
    bx.plot(c, n, "-", color="C3", lw=2, gid="frontier_N",
            label=f"N_opt ∝ C_min^{ex['p_N']:.2f}")
    total = np.array([float(r.flops_at(r.loss[0][-1:])[0]) for r in runs])
    bx.plot(total, [r.n_params for r in runs], "o", color="k", gid="run_N",
            label="the runs (N, total C)")
    bx.legend(fontsize="x-small")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("compute C (FLOPs)")
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


def make_figures(a: StudyAnalysis) -> dict[str, Figure]:
  return {name: fn(a) for name, fn in FIGURES.items()}


# ---------------------------------------------------------------------------- IsoFLOP

ISOFLOP_COLORS = {"approach1": "C0", "approach2": "C1", "approach3": "C2", "vpnls": "C4",
                  "kaplan": "C3"}
ISOFLOP_FIGURE = "isoflop_frontiers.png"


def _interval(al: isoflop.Allocation) -> str:
  return f" [{al.a_interval[0]:.2f}, {al.a_interval[1]:.2f}]" if al.a_interval else ""


def draw_isoflop_profiles(ax, analysis: isoflop.IsoflopAnalysis, title: str) -> None:
  """Approach 2's view: final loss vs N per budget, its parabola and the vertex."""
  cmap = matplotlib.colormaps[CMAP]
  for i, p in enumerate(analysis.profiles):
    color = cmap(0.85 * i / max(len(analysis.profiles) - 1, 1))
    ax.plot(p.N, p.L, "o", color=color, ms=4, label=f"C = {p.C:.2g}", gid=f"profile:{p.C:g}")
    if np.isfinite(p.coef[2]):
      u = np.linspace(np.log(p.N[p.used]).min(), np.log(p.N[p.used]).max(), 50)
      ax.plot(np.exp(u), p.coef[0] + p.coef[1] * u + p.coef[2] * u * u, "-", color=color,
              gid=f"parabola:{p.C:g}")
    if p.usable:
      ax.plot(p.N_opt, p.L_opt, "k*", ms=8, gid=f"vertex:{p.C:g}")
  ax.set_xscale("log")
  ax.set_xlabel("N (FLOP convention)")
  ax.set_ylabel("final eval loss")
  ax.set_title(title, fontsize="medium")
  ax.legend(fontsize="x-small")


def draw_frontiers(ax, analysis: isoflop.IsoflopAnalysis, title: str,
                   published: dict | None = None) -> None:
  """N_opt(C) of every fitted method (its points and power law, the exponent and interval
  in the legend), slopes 0.73 (Kaplan) and 0.50 (Chinchilla) through the methods' median
  at mid-range, and a published power law n_coef C^a if given."""
  c_all = np.concatenate([a.C for a in analysis.allocations.values()])
  c = np.geomspace(c_all.min(), c_all.max(), 50)
  for m, al in analysis.allocations.items():
    color = ISOFLOP_COLORS.get(m, "k")
    ax.plot(al.C, al.N_opt, "o", color=color, ms=3, alpha=0.6, gid=f"frontier_points:{m}")
    ax.plot(c, al.n_opt(c), "-", color=color, gid=f"frontier:{m}",
            label=f"{isoflop.LABELS.get(m, m).split(' (')[0]}: a = {al.a:.2f}{_interval(al)}")
  mid = math.sqrt(c[0] * c[-1])
  n_mid = float(np.median([al.n_opt(mid) for al in analysis.allocations.values()]))
  for (key, p), style in zip(isoflop.PUBLISHED_A.items(), (":", "--")):
    ax.plot(c, n_mid * (c / mid) ** p, style, color="gray", lw=1, gid=f"slope:{p:g}",
            label=f"slope {p:.2f} ({isoflop.PUBLISHED_LABELS[key]})")
  if published is not None:
    ax.plot(c, published["n_coef"] * c ** published["a"], "k--", lw=1, gid="published",
            label=f"published: a = {published['a']:.3f}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("compute C (FLOPs)")
  ax.set_ylabel("N_opt")
  ax.set_title(title, fontsize="medium")
  ax.legend(fontsize="xx-small")


def plot_isoflop(sweep: isoflop.IsoflopSweep) -> Figure:
  """Left: the IsoFLOP profiles. Right: the compute-optimal frontiers of every method."""
  fig = Figure(figsize=(12, 4.5))
  ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  draw_isoflop_profiles(ax, sweep.analysis, f"IsoFLOP profiles (FLOPs: {sweep.convention})")
  draw_frontiers(bx, sweep.analysis, "Compute-optimal N_opt(C), each method")
  fig.tight_layout()
  return fig


def save_figures(a: StudyAnalysis, out_dir: str, dpi: int = 100,
                 sweep: isoflop.IsoflopSweep | None = None) -> dict[str, str]:
  """Writes every figure (and the IsoFLOP one for an IsoFLOP `sweep`) as PNG into `out_dir`;
  returns {name: path}."""
  rundir.makedirs(out_dir)
  figs = make_figures(a)
  if sweep is not None:
    figs[ISOFLOP_FIGURE] = plot_isoflop(sweep)
  paths = {}
  for name, fig in figs.items():
    path = f"{str(out_dir).rstrip('/')}/{name}"
    plots.save(fig, path, dpi=dpi, bbox_inches="tight")
    paths[name] = path
  return paths
