"""Experiment 9, learning-rate schedule and the LR(N) rule (Kaplan App. D.6, Fig. 22).

Per size: the final loss of every (schedule, peak LR) run, with each schedule's summed
learning rate (the paper: schedules matter little at equal summed LR); the best peak LR
per N (a parabola in log LR through the best three when the scan brackets it; at the
scan's edge it is only a bound, and flagged), fitted as LR(N) = a + b log N beside the
paper's 0.003239 - 0.0001395 log N; the loss of the
Kaplan-rule runs relative to each size's best; and L(N) fitted on the best losses.
Usage: python experiments/09_lr_schedule/analyze.py SWEEP_DIR [--out DIR]
"""

from __future__ import annotations

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from experiments import common  # noqa: E402
import types  # noqa: E402

from scaling_jax import optim  # noqa: E402

NAME = "09_lr_schedule"
PAPER_LR = (0.003239, -0.0001395)  # LR(N) = a + b log N


def run_lr(run) -> dict:
  """Peak LR, schedule and summed LR of a run (from its config, as the trainer built it)."""
  o = run.config.get("optim", {})
  cfg = types.SimpleNamespace(lr=o.get("lr", 0.0), lr_rule=o.get("lr_rule", "fixed"),
                              schedule=o.get("schedule", "cosine"),
                              warmup_steps=o.get("warmup_steps", 0))
  steps = int(run.facts.get("num_steps") or run.config["train"]["num_steps"])
  sched = optim.schedule(cfg, steps, int(run.n_params))
  lrs = np.asarray([float(sched(i)) for i in range(steps)])
  return {"peak_lr": optim.peak_lr(cfg, int(run.n_params)), "schedule": cfg.schedule,
          "rule": cfg.lr_rule, "summed_lr": float(lrs.sum())}


def best_lr(lr: np.ndarray, loss: np.ndarray) -> tuple[float, bool]:
  """(argmin over a LR scan, whether the scan brackets it); a bracketed minimum is refined
  by a parabola in log LR, one at the scan's lowest or highest LR is only a bound."""
  order = np.argsort(lr)
  lr, loss = lr[order], loss[order]
  i = int(np.argmin(loss))
  if 0 < i < len(lr) - 1:
    x, y = np.log(lr[i - 1:i + 2]), loss[i - 1:i + 2]
    a, b, _ = np.polyfit(x, y, 2)
    if a > 0:
      return float(np.exp(np.clip(-b / (2 * a), x[0], x[-1]))), True
    return float(lr[i]), True
  return float(lr[i]), False


def analyze(run_dirs, out: str, bootstrap: int = 0) -> dict:
  runs = [r for r in common.load_runs(run_dirs) if r.arch == "transformer"]
  pts = [{"run": r.name, "N": r.n_params, "L": r.final(), **run_lr(r)} for r in runs]
  pts = [p for p in pts if np.isfinite(p["L"])]
  per_n = []
  for n, grp in sorted(common.group_by(pts, lambda p: p["N"]).items()):
    lr = np.array([p["peak_lr"] for p in grp])
    loss = np.array([p["L"] for p in grp])
    kaplan = [p["L"] for p in grp if p["rule"] == "kaplan"]
    best, bracketed = best_lr(lr, loss)
    per_n.append({"N": n, "best_lr": best, "bracketed": bracketed, "best_L": float(loss.min()),
                  "n_lrs": len(np.unique(lr)), "kaplan_lr": optim.kaplan_lr(int(n)),
                  "kaplan_gap": (min(kaplan) / loss.min() - 1) if kaplan else float("nan"),
                  "schedules": {s: min(p["L"] for p in grp if p["schedule"] == s)
                                for s in sorted({p["schedule"] for p in grp})}})
  rows = []
  for e in per_n:
    edge = "" if e["bracketed"] else "; not bracketed: a bound (scan's edge)"
    rows.append((f"best peak LR, N={e['N']:.3g}", e["best_lr"], e["kaplan_lr"],
                 f"{e['n_lrs']} LRs scanned; paper column: Kaplan's LR(N){edge}"))
    if np.isfinite(e["kaplan_gap"]):
      rows.append(("  Kaplan-rule loss / best - 1", e["kaplan_gap"], 0.0, ""))
    if len(e["schedules"]) > 1:
      ls = list(e["schedules"].values())
      rows.append(("  schedule spread (rel.)", max(ls) / min(ls) - 1, None,
                   ", ".join(f"{k} {v:.4g}" for k, v in e["schedules"].items())))
  summary: dict = {"points": pts, "per_N": per_n, "paper_lr_rule": PAPER_LR}
  if len(per_n) >= 2:
    b, a = np.polyfit(np.log([e["N"] for e in per_n]), [e["best_lr"] for e in per_n], 1)
    bounds = sum(not e["bracketed"] for e in per_n)
    note = f"{bounds} of {len(per_n)} best LRs are bounds" if bounds else ""
    summary["lr_rule_fit"] = {"a": float(a), "b": float(b), "n_bounds": bounds}
    rows += [("LR(N) = a + b log N: a", a, PAPER_LR[0], note),
             ("LR(N) = a + b log N: b", b, PAPER_LR[1], note)]
  if len(per_n) >= 3:
    res, note = common.try_fit("L_N", {"N": np.array([e["N"] for e in per_n]),
                                       "L": np.array([e["best_L"] for e in per_n])},
                               bootstrap=bootstrap)
    summary["fit_L_N"] = common.fit_params(res)
    summary["intervals_L_N"] = common.fit_intervals(res)
    rows.append(("alpha_N (best LR per N)", summary["fit_L_N"].get("alpha_N"),
                 common.paper("single_variable_laws.L_N.alpha_N"), note))
  print(common.comparison("Learning rate and schedule", rows))

  fig, (ax_lr, ax_s, ax_rule) = common.figure(3)
  for j, e in enumerate(per_n):
    grp = sorted((p for p in pts if p["N"] == e["N"]), key=lambda p: p["peak_lr"])
    for s, marker in (("cosine", "o"), ("constant", "s")):
      sel = [p for p in grp if p["schedule"] == s]
      if sel:
        ax_lr.plot([p["peak_lr"] for p in sel], [p["L"] for p in sel], marker + "-",
                   color=f"C{j}", label=f"N={e['N']:.3g} {s}", gid=f"lr:{e['N']:g}:{s}")
        ax_s.plot([p["summed_lr"] for p in sel], [p["L"] for p in sel], marker, color=f"C{j}")
    ax_lr.axvline(e["kaplan_lr"], color=f"C{j}", ls=":", alpha=0.6)
  common.style_axes(ax_lr, "peak learning rate (dotted: Kaplan's LR(N))", "final eval loss",
                    "Loss vs peak LR", legend="x-small", log=True)
  common.style_axes(ax_s, "summed learning rate over training",
                    title="Schedules: loss vs summed LR", log=True)
  ns = np.array([e["N"] for e in per_n])
  for bracketed, marker, label in ((True, "o", "best LR (ours)"),
                                   (False, "^", "best LR at the scan's edge (a bound)")):
    sel = [e for e in per_n if e["bracketed"] == bracketed]
    if sel:
      ax_rule.plot([e["N"] for e in sel], [e["best_lr"] for e in sel], marker, color="C0",
                   label=label, gid=f"best_lr:{'bracketed' if bracketed else 'bound'}")
  grid = np.geomspace(ns.min() / 2, ns.max() * 2, 50)
  ax_rule.plot(grid, [optim.kaplan_lr(int(g)) for g in grid], "--", color="gray",
               label="Kaplan LR(N)")
  if "lr_rule_fit" in summary:
    f = summary["lr_rule_fit"]
    ax_rule.plot(grid, f["a"] + f["b"] * np.log(grid), "-", label="fit a + b log N")
  common.style_axes(ax_rule, "non-embedding parameters N", "peak learning rate", "LR(N) rule",
                    legend="small", log="x")
  return common.finish(out, summary, fig, "lr_schedule.png")


def main(argv=None) -> int:
  return common.run_analysis(argv, __doc__, NAME, analyze)


if __name__ == "__main__":
  sys.exit(main())
