"""Run directories -> the fitter's table (columns run, N, B, S, D, C, L, B_crit, S_min, C_min).

One row per kept point of each run's learning curve: warmup steps dropped, the curve
subsampled evenly in log-steps. The loss is the eval loss `eval/validation/loss` where
the run logged it, else the train `loss`. S_min and C_min adjust each point to the
critical batch (Kaplan §5.1): B_crit(L) from the run's GNS (`gns/b_simple_tokens`),
from Kaplan's fit B_* / L^(1/alpha_B), or from a callable the user gives.
Tables also read from / write to CSV or JSON (`read_table`, `write_table`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Callable

import numpy as np

from scaling_jax import metrics as metrics_lib
from scaling_jax import rundir
from scaling_jax.scaling.batch import b_crit_kaplan, c_min, s_min
from scaling_jax.scaling.laws import FitError

COLUMNS = ("run", "N", "B", "S", "D", "C", "L", "B_crit", "S_min", "C_min")
EVAL_KEY = "eval/validation/loss"
TRAIN_KEY = "loss"
GNS_KEY = "gns/b_simple_tokens"
BCritSpec = str | Callable[[np.ndarray], np.ndarray] | None


def _log_subsample(steps: np.ndarray, n: int) -> np.ndarray:
  """Indices of about n points spread evenly in log(step) (always keeps first and last)."""
  if n <= 0 or len(steps) <= n:
    return np.arange(len(steps))
  targets = np.geomspace(max(steps[0], 1), steps[-1], n)
  idx = np.unique(np.searchsorted(steps, targets).clip(0, len(steps) - 1))
  return np.unique(np.concatenate([[0], idx, [len(steps) - 1]]))


def _nearest(steps_src: list[int], values: list[float], steps: np.ndarray) -> np.ndarray:
  """The value logged at the nearest step (GNS is an EMA, logged less often than loss)."""
  if not steps_src:
    return np.full(len(steps), np.nan)
  s = np.asarray(steps_src, float)
  idx = np.abs(s[None, :] - steps[:, None]).argmin(axis=1)
  return np.asarray(values, float)[idx]


def run_rows(run: str, *, b_crit: BCritSpec = "gns", points: int = 32, warmup: bool = True,
             last_only: bool = False, warnings: list[str] | None = None) -> dict[str, list]:
  """The table rows (as columns) of one run directory; an empty dict if unusable."""
  warnings = [] if warnings is None else warnings
  name = os.path.basename(os.path.normpath(run))
  cfg = rundir.read_config(run)
  if not cfg or "facts" not in cfg:
    warnings.append(f"{run}: no readable config.json with facts; skipped")
    return {}
  facts, config = cfg["facts"], cfg.get("config", {})
  n, b = facts.get("n_params"), facts.get("batch_tokens")
  if not n or not b:
    warnings.append(f"{run}: config.json facts lack n_params or batch_tokens; skipped")
    return {}
  records = metrics_lib.read_metrics(run)
  key = EVAL_KEY if any(EVAL_KEY in r for r in records) else TRAIN_KEY
  steps_l, loss_l = metrics_lib.series(records, key)
  by_step = {int(r["step"]): r for r in records}
  steps, loss = np.asarray(steps_l, float), np.asarray(loss_l, float)
  bad = ~(np.isfinite(loss) & (loss > 0))
  if bad.any():
    warnings.append(f"{run}: dropped {int(bad.sum())} points with NaN/inf/non-positive {key}")
  keep = ~bad & (steps > 0)
  if warmup:
    keep &= steps > int(config.get("optim", {}).get("warmup_steps", 0) or 0)
  steps, loss = steps[keep], loss[keep]
  if not len(steps):
    warnings.append(f"{run}: no usable {key} points after warmup; skipped")
    return {}
  idx = [len(steps) - 1] if last_only else _log_subsample(steps, points)
  steps, loss = steps[idx], loss[idx]
  tokens = np.array([by_step[int(s)].get("tokens", s * b) for s in steps], float)
  flops = np.array([by_step[int(s)].get("flops", 6.0 * n * t) for s, t in zip(steps, tokens)],
                   float)
  none = b_crit is None or (isinstance(b_crit, str) and b_crit == "none")
  if none:
    bc = np.full(len(steps), np.nan)  # no adjustment: S_min = S, C_min = C
  elif isinstance(b_crit, str) and b_crit == "kaplan":
    bc = b_crit_kaplan(loss)
  elif isinstance(b_crit, str) and b_crit == "gns":
    gs, gv = metrics_lib.series(records, GNS_KEY)
    ok = [(s, v) for s, v in zip(gs, gv) if math.isfinite(v) and v > 0]
    if ok:
      bc = _nearest([s for s, _ in ok], [v for _, v in ok], steps)
    else:
      warnings.append(f"{run}: no positive {GNS_KEY} logged; used Kaplan's B_crit(L)")
      bc = b_crit_kaplan(loss)
  elif callable(b_crit):
    bc = np.asarray(b_crit(loss), float)
  else:
    raise FitError(f"b_crit must be 'gns', 'kaplan', 'none' or a callable B_crit(L), "
                   f"got {b_crit!r}")
  return {"run": [name] * len(steps), "N": [float(n)] * len(steps), "B": [float(b)] * len(steps),
          "S": steps.tolist(), "D": tokens.tolist(), "C": flops.tolist(), "L": loss.tolist(),
          "B_crit": np.asarray(bc, float).tolist(),
          "S_min": (steps if none else s_min(steps, b, bc)).tolist(),
          "C_min": (flops if none else c_min(flops, b, bc)).tolist()}


def runs_table(root: str, *, b_crit: BCritSpec = "gns", points: int = 32, warmup: bool = True,
               last_only: bool = False, statuses: tuple[str, ...] | None = None,
               warnings: list[str] | None = None) -> dict[str, np.ndarray]:
  """The fitter's table from every run directory at or below `root`.

  b_crit: 'gns' (the run's gns/b_simple_tokens, Kaplan's fit where missing), 'kaplan',
  'none' (S_min = S, C_min = C) or a callable loss -> B_crit in tokens.
  points: about how many points per curve to keep (log-spaced steps); last_only: only the
  final point of each run (for L(N) on converged runs). statuses: keep only runs whose
  status.json says one of these (e.g. ('finished',)); None keeps all.
  """
  warnings = [] if warnings is None else warnings
  runs = rundir.find_runs(root)
  if not runs:
    raise FitError(f"no run directories (with config.json) under {root!r}; pass a sweep "
                   "directory, a run directory, or a CSV/JSON table")
  cols: dict[str, list] = {c: [] for c in COLUMNS}
  for run in runs:
    if statuses and rundir.read_status(run)["status"] not in statuses:
      warnings.append(f"{run}: status {rundir.read_status(run)['status']!r}; skipped")
      continue
    rows = run_rows(run, b_crit=b_crit, points=points, warmup=warmup, last_only=last_only,
                    warnings=warnings)
    for c in COLUMNS:
      cols[c].extend(rows.get(c, []))
  if not cols["L"]:
    raise FitError(f"none of the {len(runs)} runs under {root!r} had usable loss points: "
                   + "; ".join(warnings[:3]))
  return {c: np.asarray(v, dtype=object if c == "run" else float) for c, v in cols.items()}


def read_table(path: str) -> dict[str, np.ndarray]:
  """A table from CSV (header row) or JSON (list of rows, or dict of columns)."""
  if not os.path.isfile(path):
    raise FitError(f"table file {path!r} does not exist")
  if path.endswith(".json"):
    with open(path) as f:
      try:
        data = json.load(f)
      except json.JSONDecodeError as e:
        raise FitError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and "rows" in data:
      data = data["rows"]
    if isinstance(data, list):
      keys = list(dict.fromkeys(k for r in data for k in r))
      data = {k: [r.get(k, math.nan) for r in data] for k in keys}
    if not isinstance(data, dict):
      raise FitError(f"{path}: expected a list of rows or a dict of columns")
    return {k: _column(k, v) for k, v in data.items()}
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise FitError(f"{path}: empty CSV (expected a header row with run, N, B, S, D, C, L)")
  return {k: _column(k, [r[k] for r in rows]) for k in rows[0]}


def _column(name: str, values: list) -> np.ndarray:
  try:
    return np.asarray([math.nan if v in ("", None) else float(v) for v in values])
  except (TypeError, ValueError):
    return np.asarray(values, dtype=object)


def write_table(table: dict[str, Any], path: str) -> None:
  """Writes a table as CSV (or JSON list of rows if the path ends in .json)."""
  keys = list(table)
  n = len(next(iter(table.values()))) if table else 0
  rows = [{k: _plain(table[k][i]) for k in keys} for i in range(n)]
  if path.endswith(".json"):
    rundir.write_json_atomic(path, rows)
    return
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)


def _plain(v: Any) -> Any:
  return v.item() if hasattr(v, "item") else v
