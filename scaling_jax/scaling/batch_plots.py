"""Figures of a batch-size sweep: S vs E hyperbolas (Kaplan Fig. 11) and B_crit vs loss (Fig. 10).

Built on `matplotlib.figure.Figure` (no pyplot, no global backend state; saving renders with
Agg). Every data artist has a gid ("measured:<loss>", "fit:<loss>", "b_crit", "power_law",
"kaplan", "gns:<name>") so tests and callers can find it.
"""

from __future__ import annotations

import os

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, ScalarFormatter

from scaling_jax.scaling import batch as batch_lib
from scaling_jax.scaling import bcrit as bcrit_lib


def _new_axes(ax):
  if ax is not None:
    return ax.figure, ax
  fig = Figure(figsize=(6, 4.5))
  return fig, fig.add_subplot(1, 1, 1)


def _finish(ax, xlabel: str, ylabel: str, title: str, loss_axis: bool = False) -> None:
  """Log-log axes with labels, title and a legend if anything is labelled; a loss x axis
  (spanning < 1 decade) gets plain-number ticks."""
  ax.set_xscale("log")
  ax.set_yscale("log")
  if loss_axis:
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize="small")


def plot_steps_vs_examples(result: batch_lib.BatchSweepResult, ax=None, n_points: int = 200):
  """Per loss level: measured (E, S) points and the fitted S = S_min + E_min/B, log-log.

  The fit is drawn parametrically in B over 1/30× the smallest to 30× the largest batch
  measured, so both asymptotes (S → S_min, E → E_min) show.
  """
  fig, ax = _new_axes(ax)
  cmap = matplotlib.colormaps["viridis"]
  for i, lv in enumerate(result.levels):
    color = cmap(0.9 * i / max(len(result.levels) - 1, 1))
    ax.plot(lv.examples, lv.steps, "o", color=color, gid=f"measured:{lv.loss:.6g}",
            label=f"L = {lv.loss:.3g}")
    b = np.geomspace(min(lv.batch_tokens) / 30, max(lv.batch_tokens) * 30, n_points)
    s = lv.steps_at(b)
    ax.plot(b * s, s, "-", color=color, alpha=0.8, gid=f"fit:{lv.loss:.6g}")
    ax.plot([lv.e_min], [lv.s_min], "x", color=color, gid=f"min:{lv.loss:.6g}")
  _finish(ax, "examples to reach L, E = B·S (tokens)", "steps to reach L, S",
          "Steps vs examples per loss level; x = (E_min, S_min)")
  return fig


def plot_b_crit_vs_loss(result: batch_lib.BatchSweepResult,
                        gns: bcrit_lib.GnsPoints | None = None, ax=None, kaplan: bool = True):
  """B_crit per level (95% bars) from the sweep, the fitted power law, each run's GNS
  B_simple against its loss (the readings `bcrit` keeps), and Kaplan's B_*=2e8, α_B=0.21
  for reference; log-log."""
  fig, ax = _new_axes(ax)
  loss = np.array([lv.loss for lv in result.levels])
  bc = np.array([lv.b_crit for lv in result.levels])
  lo = np.array([lv.b_crit_lo for lv in result.levels])
  hi = np.array([lv.b_crit_hi for lv in result.levels])
  losses = list(loss)
  if len(loss):
    cont = ax.errorbar(loss, bc, yerr=[bc - lo, hi - bc], fmt="o", color="C0", capsize=3,
                       label="B_crit from batch sweep")
    cont.lines[0].set_gid("b_crit")
  cmap = matplotlib.colormaps["plasma"]
  names = [] if gns is None else list(dict.fromkeys(gns.run[gns.kept]))
  for i, name in enumerate(names):
    m = (gns.run == name) & gns.kept
    ax.plot(gns.loss[m], gns.b_simple[m], "-",
            color=cmap(0.15 + 0.7 * i / max(len(names) - 1, 1)), alpha=0.7, lw=1,
            gid=f"gns:{name}", label="B_simple (GNS) per run" if i == 0 else None)
    losses.extend(gns.loss[m].tolist())
  if losses:
    grid = np.geomspace(min(losses), max(losses), 100)
    if result.power_law is not None:
      pl = result.power_law
      untested = not pl.tested
      ax.plot(grid, pl.predict(grid), "--" if untested else "-", color="C0", gid="power_law",
              label=f"fit: {pl.b_star:.3g} / L^(1/{pl.alpha_b:.3g})"
                    + (f" (through {pl.n_levels} levels, untested)" if untested else ""))
    if kaplan:
      ax.plot(grid, batch_lib.b_crit_kaplan(grid), "--", color="gray", gid="kaplan",
              label="Kaplan: 2e8 / L^(1/0.21)")
  _finish(ax, "loss (nats/token)", "batch size (tokens)", "Critical batch size vs loss",
          loss_axis=True)
  return fig


def save_batch_figures(result: batch_lib.BatchSweepResult, out_dir: str,
                       gns: bcrit_lib.GnsPoints | None = None) -> list[str]:
  """Writes steps_vs_examples.png and b_crit_vs_loss.png to `out_dir`; returns the paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for name, fig in (("steps_vs_examples.png", plot_steps_vs_examples(result)),
                    ("b_crit_vs_loss.png", plot_b_crit_vs_loss(result, gns))):
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    paths.append(path)
  return paths


# ---------------------------------------------------------------------------- three methods

METHOD_STYLE = {  # report key -> (label, colour, marker)
    "gns": ("GNS B_simple (geometric mean over runs)", "C3", "o"),
    "sweep": ("batch sweep: E_min/S_min", "C0", "s"),
    "probe": ("branched probes: E_min/S_min", "C2", "D"),
    "probe_20": ("branched probes: 20% over perfect scaling", "C1", "v"),
}


def plot_three_methods(report: dict, ax=None):
  """B_crit(L) from the GNS, the batch sweep and the branched probes (both definitions) at
  the study's loss levels, 95% bars, and each method's B_*/L^(1/α_B) line; log-log. The
  points of one level are spread slightly in loss so their bars do not hide each other.
  `report` is `critical_batch.analyze`'s dict (tokens)."""
  fig, ax = _new_axes(ax)
  rows = report["levels"]
  losses = [r["loss"] for r in rows]
  untested_drawn = False
  for k, (key, (label, color, marker)) in enumerate(METHOD_STYLE.items()):
    src, b, lo, hi = ("probe", "b_20", "b_20_lo", "b_20_hi") if key == "probe_20" else (
        key, "b", "lo", "hi")
    pts = [(r["loss"], r[src][b], r[src].get(lo), r[src].get(hi)) for r in rows
           if r.get(src) and r[src].get(b) is not None]
    if not pts:
      continue
    x, y, ylo, yhi = (np.array([p[i] if p[i] is not None else np.nan for p in pts], float)
                      for i in range(4))
    x = x * (1 + 0.004 * (k - 1.5))
    ylo, yhi = np.where(np.isfinite(ylo), ylo, y), np.where(np.isfinite(yhi), yhi, y)
    cont = ax.errorbar(x, y, yerr=[y - ylo, np.minimum(yhi, 1e3 * y) - y], fmt=marker,
                       color=color, capsize=3, label=label)
    cont.lines[0].set_gid(f"method:{key}")
    law = report["laws"].get(key)
    if law and law.get("alpha_B") and len(losses) > 1:
      grid = np.geomspace(min(losses), max(losses), 50)
      untested = law.get("tested") is False  # a line through two levels: dashed
      untested_drawn = untested_drawn or untested
      ax.plot(grid, law["B_star"] * grid ** (-1.0 / law["alpha_B"]), "--" if untested else "-",
              color=color, alpha=0.5, lw=1, gid=f"law:{key}")
  if untested_drawn:
    ax.plot([], [], "--", color="gray", lw=1, label="dashed: a B_*/L^(1/α_B) law through 2 "
            "levels (untested)")
  _finish(ax, "loss (nats/token)", "critical batch (tokens)",
          f"Critical batch three ways, N = {report['model']['n_params']:.3g}", loss_axis=True)
  if ax.get_legend() is not None:  # below the axes: inside, it hides a method's point
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
  return fig


def plot_probe_ladders(report: dict, ax=None):
  """Steps to the target against batch size for each branch point, with the fitted
  S = S_min + E_min/B and the perfect-scaling line from the smallest batch; log-log."""
  fig, ax = _new_axes(ax)
  cmap = matplotlib.colormaps["viridis"]
  probes_by_step = {r["branch_step"]: r for r in report["levels"]}
  ladders = report.get("ladders", {})
  for i, (step, lad) in enumerate(sorted(ladders.items(), key=lambda kv: int(kv[0]))):
    b, s = np.asarray(lad["batch_tokens"], float), np.asarray(lad["steps"], float)
    if not len(b):
      continue
    color = cmap(0.9 * i / max(len(ladders) - 1, 1))
    row = probes_by_step.get(int(step), {})
    ax.plot(b, s, "o", color=color, gid=f"ladder:{step}",
            label=f"from step {step} (L {row.get('start_loss', float('nan')):.3f} -> "
                  f"{row.get('target_loss', float('nan')):.3f})")
    ax.plot(b, s[0] * b[0] / b, ":", color=color, alpha=0.6, gid=f"perfect:{step}")
    probe = row.get("probe")
    if probe:
      grid = np.geomspace(b.min(), b.max(), 50)
      ax.plot(grid, probe["s_min"] + probe["e_min"] / grid, "-", color=color, alpha=0.8,
              gid=f"fit:{step}")
  _finish(ax, "batch size (tokens)", "steps to the target loss",
          "Branches: steps vs batch (dotted: perfect scaling)")
  return fig
