"""Plots of a fit: data, fitted curves, bootstrap band, extrapolation beyond the data."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from scaling_jax import rundir
from scaling_jax.scaling.fit import FitResult, as_table


def save(fig, path: str, dpi: int = 110, **kw) -> None:
  """Writes a figure as PNG to a local or remote path (through `rundir`)."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi, **kw)
  rundir.write_bytes(path, buf.getvalue())


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _band(ax, x, pred, color, label=None, style="-"):
  ax.plot(x, pred.value, style, color=color, label=label, lw=1.5)
  if np.all(np.isfinite(pred.lo)):
    ax.fill_between(x, pred.lo, pred.hi, color=color, alpha=0.2, lw=0)


def plot_fit(result: FitResult, table: Any, path: str, *, extrapolate: float = 10.0,
             holdout: dict | None = None) -> str:
  """Writes a PNG: output vs the law's last input, one curve per value of its first input
  (two-input laws) with the interval band, extended `extrapolate` x past the data (dashed);
  a second panel shows predicted vs observed. Returns the path."""
  plt = _pyplot()
  law = result.law_obj
  cols = as_table(table)
  y = np.asarray(cols[law.output], float)
  ok = np.isfinite(y) & (y > 0)
  for c in law.inputs:
    v = np.asarray(cols[c], float)
    ok &= np.isfinite(v) & (v > 0)
  x_main = np.asarray(cols[law.inputs[-1]], float)[ok]
  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
  cmap = plt.get_cmap("viridis")
  if len(law.inputs) == 1:
    ax.scatter(x_main, y[ok], s=12, color="k", label="data", zorder=3)
    grid = np.geomspace(x_main.min(), x_main.max(), 100)
    _band(ax, grid, result.predict({law.inputs[0]: grid}), "C0", "fit")
    ext = np.geomspace(x_main.max(), x_main.max() * extrapolate, 50)
    _band(ax, ext, result.predict({law.inputs[0]: ext}), "C3", f"extrapolation x{extrapolate:g}",
          "--")
  else:
    group = np.asarray(cols[law.inputs[0]], float)[ok]
    levels = np.unique(group)
    if len(levels) > 8:  # continuous first input (e.g. Chinchilla N): 8 log bins
      edges = np.geomspace(levels.min(), levels.max() * 1.0001, 9)
      group = np.sqrt(edges[:-1] * edges[1:])[np.clip(np.digitize(group, edges) - 1, 0, 7)]
      levels = np.unique(group)
    others = {c: np.asarray(cols[c], float)[ok] for c in law.inputs[1:-1]}
    for i, g in enumerate(levels):
      m = group == g
      color = cmap(i / max(len(levels) - 1, 1))
      ax.scatter(x_main[m], y[ok][m], s=8, color=color, alpha=0.7)
      grid = np.geomspace(x_main[m].min(), x_main[m].max() * extrapolate, 80)
      inputs = {law.inputs[0]: np.full_like(grid, g), law.inputs[-1]: grid}
      inputs.update({c: np.full_like(grid, np.median(v[m])) for c, v in others.items()})
      _band(ax, grid, result.predict(inputs), color, f"{law.inputs[0]}={g:.3g}")
    big = levels.max() * extrapolate
    grid = np.geomspace(x_main.min(), x_main.max() * extrapolate, 80)
    inputs = {law.inputs[0]: np.full_like(grid, big), law.inputs[-1]: grid}
    inputs.update({c: np.full_like(grid, np.median(v)) for c, v in others.items()})
    _band(ax, grid, result.predict(inputs), "C3", f"extrapolation {law.inputs[0]}={big:.3g}",
          "--")
  if holdout:
    ax.set_title(f"held-out {holdout['column']}={holdout['held_out_value']:.3g}: "
                 f"mean |rel err| {holdout['mean_abs_rel_error']:.3%}", fontsize=9)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(law.inputs[-1])
  ax.set_ylabel(law.output)
  ax.legend(fontsize=7)
  pred = result.predict({c: np.asarray(cols[c], float)[ok] for c in law.inputs}).value
  ax2.scatter(y[ok], pred, s=8)
  lim = [min(y[ok].min(), pred.min()), max(y[ok].max(), pred.max())]
  ax2.plot(lim, lim, "k--", lw=1)
  ax2.set_xlabel(f"observed {law.output}")
  ax2.set_ylabel(f"fitted {law.output}")
  ax2.set_title(f"{law.name}: objective {result.objective:.4g}", fontsize=9)
  fig.suptitle(law.doc, fontsize=9)
  fig.tight_layout()
  save(fig, path)
  plt.close(fig)
  return path


def plot_frontier(front: dict, path: str, closed: dict | None = None) -> str:
  """Writes a PNG of N_opt, S_min, B and D against C_min (numerical; closed form dashed)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for i, k in enumerate(("N_opt", "S_min", "B", "D")):
    ax.plot(front["C_min"], front[k], "-", color=f"C{i}", label=k)
    if closed is not None:
      ax.plot(closed["C_min"], closed[k], "--", color=f"C{i}", lw=1)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("C_min (FLOPs)")
  ax.legend(fontsize=8)
  ax.set_title("compute-efficient frontier (dashed: App. B closed form)", fontsize=9)
  fig.tight_layout()
  save(fig, path)
  plt.close(fig)
  return path
