"""Experiment 8, architectures: Transformer vs LSTM vs recurrent ("Universal") Transformer.

Per parameter: final loss vs non-embedding N with L(N) fitted per architecture (Fig. 7
left: LSTMs fall behind as N grows; parameter-shared Transformers do slightly better per
parameter). Per FLOP: learning curves against training compute C (a Universal Transformer
pays every application of its shared block). Per token: the loss at each context
position of each run's final checkpoint (Fig. 7 right / Fig. 20: LSTMs match Transformers
only on the first tokens of the context).
Usage: python experiments/08_architectures/analyze.py SWEEP_DIR [--out DIR] [--no-positions]
"""

from __future__ import annotations

import pathlib
import sys
from typing import Mapping

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402

NAME = "08_architectures"
ARCHS = ("transformer", "universal", "lstm")


def position_gap(loss_a: np.ndarray, loss_b: np.ndarray, early: float = 0.1) -> tuple[float, float]:
  """Mean loss difference a - b over the first `early` of the context and over its last half."""
  t = len(loss_a)
  k = max(1, int(round(early * t)))
  return float(np.mean(loss_a[:k] - loss_b[:k])), float(np.mean(loss_a[t // 2:] - loss_b[t // 2:]))


def analyze(run_dirs, out: str, bootstrap: int = 0,
            positions: bool | Mapping[str, np.ndarray] = True) -> dict:
  """`positions`: evaluate each run's final checkpoint by context position (True), skip it
  (False), or use these losses by position {run name: [n_ctx]} (recorded runs, which keep
  no checkpoints: `experiments.recorded --positions`)."""
  runs = [r for r in common.load_runs(run_dirs) if r.arch in ARCHS]
  by_arch = common.group_by(runs, lambda r: r.arch)
  rows, per_arch = [], {}
  alpha_ref = common.paper("single_variable_laws.L_N.alpha_N")
  for arch in ARCHS:
    rs = by_arch.get(arch, [])
    if not rs:
      continue
    entry: dict = {"runs": [r.name for r in rs], "N": [r.n_params for r in rs],
                   "L": [r.final() for r in rs],
                   "C": [r.final("flops") for r in rs]}
    if len(set(entry["N"])) >= 3:
      res, note = common.try_fit("L_N", {"N": np.array(entry["N"]), "L": np.array(entry["L"])},
                                 bootstrap=bootstrap)
      entry["fit"] = common.fit_params(res)
      entry["intervals"] = common.fit_intervals(res)
      rows.append((f"alpha_N, {arch}", entry["fit"].get("alpha_N"),
                   alpha_ref if arch == "transformer" else None, note))
    per_arch[arch] = entry
  if "transformer" in per_arch:
    t = per_arch["transformer"]
    for arch in ("universal", "lstm"):
      if arch in per_arch:
        # Loss relative to the Transformer trend at the same N and at the same compute.
        for label, key in (("per parameter", "N"), ("per FLOP", "C")):
          x_t, l_t = np.log(t[key]), np.log(t["L"])
          order = np.argsort(x_t)
          ratio = [float(np.exp(np.log(l) - np.interp(np.log(x), x_t[order], l_t[order])))
                   for x, l in zip(per_arch[arch][key], per_arch[arch]["L"])]
          per_arch[arch][f"ratio_{key}"] = ratio
          rows.append((f"{arch}/transformer loss, {label}", float(np.median(ratio)), None,
                       "paper: universal <1 per param, >1 per FLOP; lstm >1"))
  pos: dict[str, np.ndarray] = {}
  if isinstance(positions, Mapping):
    pos = {r.name: np.asarray(positions[r.name], float) for r in runs if r.name in positions}
  elif positions:
    for r in runs:
      try:
        pos[r.name] = common.loss_by_position(r.path)
      except common.ExperimentError as e:
        print(f"  note: {e}")
  gaps = {}
  if "lstm" in per_arch and "transformer" in per_arch and pos:
    lstm = max((r for r in by_arch["lstm"] if r.name in pos), key=lambda r: r.n_params,
               default=None)
    if lstm is not None:
      tr = min((r for r in by_arch["transformer"] if r.name in pos),
               key=lambda r: abs(np.log(r.n_params / lstm.n_params)), default=None)
      if tr is not None:
        early, late = position_gap(pos[lstm.name], pos[tr.name])
        gaps = {"lstm": lstm.name, "transformer": tr.name, "early": early, "late": late}
        rows.append(("lstm - transformer, first 10% tokens", early, None,
                     f"{lstm.name} vs {tr.name}; paper: ~0"))
        rows.append(("lstm - transformer, last half", late, None, "paper: > 0 (LSTM worse)"))
  print(common.comparison("Architectures", rows))

  fig, (ax_n, ax_c, ax_p) = common.figure(3)
  for j, arch in enumerate(a for a in ARCHS if a in per_arch):
    e, color = per_arch[arch], f"C{j}"
    ax_n.plot(e["N"], e["L"], "o", color=color, label=arch, gid=f"params:{arch}")
    if e.get("fit"):
      grid = np.geomspace(min(e["N"]) / 1.5, max(e["N"]) * 1.5, 50)
      ax_n.plot(grid, (e["fit"]["N_c"] / grid) ** e["fit"]["alpha_N"], "-", color=color,
                alpha=0.6)
    for i, r in enumerate(by_arch[arch]):
      s, loss = r.series()
      c = [r.value_at("flops", x) for x in s]
      ax_c.plot(c, loss, "-", color=color, alpha=0.7, label=arch if i == 0 else None,
                gid=f"flops:{r.name}")
      if r.name in pos:
        ax_p.plot(np.arange(1, len(pos[r.name]) + 1), pos[r.name], "-", color=color,
                  alpha=0.7, label=f"{arch} N={r.n_params:.2g}", gid=f"position:{r.name}")
  for ax, x in ((ax_n, "non-embedding parameters N"), (ax_c, "training compute C (FLOPs)"),
                (ax_p, "token position in context")):
    common.style_axes(ax, x, "eval loss (nats/token)", log=True)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize="x-small")
  ax_n.set_title("Per parameter")
  ax_c.set_title("Per FLOP")
  ax_p.set_title("Per token position (final checkpoints)" if pos else
                 "Per token position: not evaluated")
  summary = {"per_arch": per_arch, "loss_by_position": pos, "position_gap": gaps}
  return common.finish(out, summary, fig, "architectures.png")


def main(argv=None) -> int:
  return common.run_analysis(
      argv, __doc__, NAME, analyze,
      {"--no-positions": dict(action="store_true",
                              help="skip the per-position evaluation of the checkpoints")},
      lambda args: {"bootstrap": args.bootstrap, "positions": not args.no_positions})


if __name__ == "__main__":
  sys.exit(main())
