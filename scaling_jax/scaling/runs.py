"""The one run reader: run directories -> typed `Run` records -> the fitter's table.

`read_run(dir)` returns a `Run`: the run's static facts from config.json (N, B, n_ctx,
steps, warmup, shape), its status, and its logged series (eval and train loss, GNS, LR,
tokens, FLOPs) from metrics.jsonl. Which loss a scaling analysis fits is decided here,
once: the eval loss `eval/validation/loss` where the run logged it, else the train `loss`
(`Run.loss`). Every command that reads runs (fit, report, demo, sweep summaries, the
batch analysis, the experiments) goes through this module.

`learning_table(runs, b_crit_fn)` turns runs into the fitter's table, one row per kept point
of each learning curve (columns run, N, B, S, D, C, L, B_crit, S_min, C_min): warmup dropped,
the curve subsampled evenly in log-steps, and each point adjusted to the critical batch
(Kaplan §5.1) with one B_crit(L) function chosen by `scaling.bcrit.choose_b_crit`.
Tables also read from / write to CSV or JSON (`read_table`, `write_table`).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
import os
from typing import Any, Callable, Sequence

import numpy as np

from scaling_jax import metric_keys as keys
from scaling_jax import metrics as metrics_lib
from scaling_jax import rundir
from scaling_jax.scaling.laws import FitError, c_min, s_min

COLUMNS = ("run", "N", "B", "S", "D", "C", "L", "B_crit", "S_min", "C_min")
BCritFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass
class Run:
  """One run directory: config facts, status and the logged metrics records."""
  path: str
  config: dict[str, Any]
  facts: dict[str, Any]
  records: list[dict[str, Any]]
  status: str
  versions: dict[str, Any] | None = None
  devices: dict[str, Any] | None = None

  @property
  def name(self) -> str:
    return os.path.basename(os.path.normpath(str(self.path)))

  @property
  def n_params(self) -> float:
    """Non-embedding parameters N (Kaplan's convention)."""
    return float(self.facts["n_params"])

  @property
  def n_total(self) -> float:
    return float(self.facts.get("n_params_total", math.nan))

  @property
  def batch_tokens(self) -> float:
    return float(self.facts["batch_tokens"])

  @property
  def arch(self) -> str:
    return self.facts.get("arch") or self.model.get("arch", "transformer")

  @property
  def model(self) -> dict[str, Any]:
    return self.config.get("model", {})

  @property
  def warmup_steps(self) -> int:
    return int(self.config.get("optim", {}).get("warmup_steps", 0) or 0)

  @property
  def num_steps(self) -> int | None:
    return self.facts.get("num_steps")

  @property
  def flops_per_token(self) -> float:
    return float(self.facts.get("flops_per_token", 6.0 * self.n_params))

  @property
  def time_s(self) -> float:
    return max([float(r.get(keys.TIME_S, 0.0)) for r in self.records] or [0.0])

  @property
  def loss_key(self) -> str:
    """The loss the scaling analysis fits: the eval loss where logged, else the train loss."""
    return keys.EVAL_LOSS if any(keys.EVAL_LOSS in r for r in self.records) else keys.LOSS

  def series(self, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key` (default: `loss_key`), finite values only."""
    s, v = (np.asarray(x, float) for x in metrics_lib.series(self.records, key or self.loss_key))
    ok = np.isfinite(v)
    return s[ok], v[ok]

  @property
  def loss(self) -> tuple[np.ndarray, np.ndarray]:
    """(steps, loss) of the analysed loss curve (`loss_key`)."""
    return self.series()

  @property
  def b_simple(self) -> tuple[np.ndarray, np.ndarray]:
    """(steps, B_simple in tokens), positive values only (the GNS EMA ratio)."""
    s, v = self.series(keys.B_SIMPLE_TOKENS)
    return s[v > 0], v[v > 0]

  def final(self, key: str | None = None) -> float:
    """The last logged value of `key` (NaN if never logged)."""
    _, v = self.series(key)
    return float(v[-1]) if len(v) else math.nan

  def best(self, key: str | None = None) -> float:
    """The lowest logged value (early stopping on the eval loss)."""
    _, v = self.series(key)
    return float(v.min()) if len(v) else math.nan

  def value_at(self, key: str, step: float) -> float:
    """`key` at the logged step nearest to `step`."""
    s, v = self.series(key)
    return float(v[np.abs(s - step).argmin()]) if len(v) else math.nan

  @functools.cached_property
  def _by_step(self) -> dict[int, dict[str, Any]]:
    return {int(r[keys.STEP]): r for r in self.records}

  def at_steps(self, key: str, steps: np.ndarray, default: Callable[[np.ndarray], np.ndarray]
               ) -> np.ndarray:
    """`key` at each of `steps` where a record of that step has it, else `default(steps)`."""
    fallback = default(np.asarray(steps, float))
    return np.array([float(self._by_step.get(int(s), {}).get(key, f))
                     for s, f in zip(steps, fallback)])

  def tokens_at(self, steps: np.ndarray) -> np.ndarray:
    return self.at_steps(keys.TOKENS, steps, lambda s: s * self.batch_tokens)

  def flops_at(self, steps: np.ndarray) -> np.ndarray:
    return self.at_steps(keys.FLOPS, steps,
                         lambda s: self.flops_per_token * s * self.batch_tokens)

  def lr_at(self, steps: np.ndarray) -> np.ndarray:
    """The learning rate at `steps` (interpolated between logged records; NaN if not logged)."""
    s, v = self.series(keys.LR)
    if not len(s):
      return np.full(np.shape(steps), np.nan)
    return np.interp(np.asarray(steps, float), s, v)


def read_run(path: str, warnings: list[str] | None = None) -> Run | None:
  """The run at `path`, or None (with a warning) if its config.json lacks the facts the
  analysis needs (n_params, batch_tokens) or it logged no metrics."""
  warnings = [] if warnings is None else warnings
  try:
    cfg, status = rundir.read_config(path), rundir.read_status(path)["status"]
  except rundir.DamagedRunFile as e:  # never fatal to a study: that run is left out, named
    warnings.append(f"{e}; skipped")
    return None
  facts = (cfg or {}).get("facts") if isinstance(cfg, dict) else None
  if not isinstance(facts, dict) or not facts.get("n_params") or not facts.get("batch_tokens"):
    warnings.append(f"{path}: no readable config.json with facts n_params and batch_tokens; "
                    "skipped")
    return None
  records = metrics_lib.read_metrics(path)
  if not records:
    warnings.append(f"{path}: no metrics logged yet; skipped")
    return None
  return Run(path=path, config=cfg.get("config") or {}, facts=facts, records=records,
             status=status, versions=cfg.get("versions"),
             devices=cfg.get("devices"))


def read_runs(roots: str | Sequence[str], *, statuses: tuple[str, ...] | None = None,
              warnings: list[str] | None = None) -> list[Run]:
  """Every readable run at or below each of `roots`, sorted by (N, name).

  statuses: keep only runs whose status.json says one of these (e.g. ('finished',)).
  Raises FitError when there is no run directory at all.
  """
  warnings = [] if warnings is None else warnings
  roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
  paths = sorted({p for root in roots for p in rundir.find_runs(str(root))})
  if not paths:
    raise FitError(f"no run directories (with config.json) under {', '.join(map(str, roots))}; "
                   "pass a sweep directory, a run directory, or a CSV/JSON table")
  out = []
  for p in paths:
    run = read_run(p, warnings)
    if run is None:
      continue
    if statuses and run.status not in statuses:
      warnings.append(f"{p}: status {run.status!r}; skipped")
      continue
    out.append(run)
  return sorted(out, key=lambda r: (r.n_params, r.name))


# ------------------------------------------------------------------------------ tables


def log_subsample(steps: np.ndarray, n: int) -> np.ndarray:
  """Indices of about n points spread evenly in log(step) (always keeps first and last)."""
  if n <= 0 or len(steps) <= n:
    return np.arange(len(steps))
  targets = np.geomspace(max(steps[0], 1), steps[-1], n)
  idx = np.unique(np.searchsorted(steps, targets).clip(0, len(steps) - 1))
  return np.unique(np.concatenate([[0], idx, [len(steps) - 1]]))


def curve_points(run: Run, *, points: int = 32, warmup: bool = True, last_only: bool = False,
                 warnings: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(steps, loss) of the run's kept curve points: positive finite losses after the warmup,
  subsampled evenly in log-steps (`points` <= 0 keeps all; last_only keeps the last)."""
  warnings = [] if warnings is None else warnings
  s_all, l_all = (np.asarray(x, float) for x in metrics_lib.series(run.records, run.loss_key))
  bad = ~(np.isfinite(l_all) & (l_all > 0))
  if bad.any():
    warnings.append(f"{run.path}: dropped {int(bad.sum())} points with NaN/inf/non-positive "
                    f"{run.loss_key}")
  keep = ~bad & (s_all > 0)
  if warmup:
    keep &= s_all > run.warmup_steps
  steps, loss = s_all[keep], l_all[keep]
  if not len(steps):
    return steps, loss
  idx = [len(steps) - 1] if last_only else log_subsample(steps, points)
  return steps[idx], loss[idx]


def learning_table(runs: Sequence[Run], b_crit_fn: BCritFn | None = None, *, points: int = 32,
                   warmup: bool = True, last_only: bool = False,
                   warnings: list[str] | None = None) -> dict[str, np.ndarray]:
  """The fitter's table (columns COLUMNS) of the runs' learning curves.

  b_crit_fn: B_crit(L) in tokens for S_min = S/(1 + B_crit/B) and C_min = C/(1 + B/B_crit)
  (from `bcrit.choose_b_crit`); None: no adjustment (S_min = S, C_min = C, B_crit NaN).
  """
  warnings = [] if warnings is None else warnings
  cols: dict[str, list] = {c: [] for c in COLUMNS}
  for run in runs:
    steps, loss = curve_points(run, points=points, warmup=warmup, last_only=last_only,
                               warnings=warnings)
    if not len(steps):
      warnings.append(f"{run.path}: no usable {run.loss_key} points after warmup; skipped")
      continue
    b = run.batch_tokens
    flops = run.flops_at(steps)
    if b_crit_fn is None:
      bc, smin, cmin = np.full(len(steps), np.nan), steps, flops
    else:
      bc = np.asarray(b_crit_fn(loss), float) * np.ones(len(steps))
      smin, cmin = s_min(steps, b, bc), c_min(flops, b, bc)
    n = len(steps)
    for col, v in (("run", [run.name] * n), ("N", [run.n_params] * n), ("B", [b] * n),
                   ("S", steps), ("D", run.tokens_at(steps)), ("C", flops), ("L", loss),
                   ("B_crit", bc), ("S_min", smin), ("C_min", cmin)):
      cols[col].extend(np.asarray(v).tolist())
  if not cols["L"]:
    raise FitError(f"none of the {len(runs)} runs had usable loss points: "
                   + "; ".join(warnings[:3]))
  return {c: np.asarray(v, dtype=object if c == "run" else float) for c, v in cols.items()}


def subset(table: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
  """The rows of `table` where `mask` holds."""
  return {k: np.asarray(v)[mask] for k, v in table.items()}


def read_table(path: str) -> dict[str, np.ndarray]:
  """A table from CSV (header row) or JSON (list of rows, or dict of columns)."""
  if not rundir.exists(path) or rundir.is_dir(path):
    raise FitError(f"table file {path!r} does not exist")
  try:
    text = rundir.read_bytes(path).decode("utf-8")
  except UnicodeDecodeError as e:
    raise FitError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the table "
                   "as UTF-8 CSV or JSON") from None
  if str(path).endswith(".json"):
    try:
      data = json.loads(text)
    except json.JSONDecodeError as e:
      raise FitError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and "rows" in data:
      data = data["rows"]
    if isinstance(data, list):
      if not all(isinstance(r, dict) for r in data):
        raise FitError(f"{path}: expected a list of row objects or a dict of columns")
      keys_ = list(dict.fromkeys(k for r in data for k in r))
      data = {k: [r.get(k, math.nan) for r in data] for k in keys_}
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
      raise FitError(f"{path}: expected a list of rows or a dict of columns")
    return {k: _column(k, v) for k, v in data.items()}
  rows = list(csv.DictReader(text.splitlines()))
  if not rows:
    raise FitError(f"{path}: empty CSV (expected a header row with run, N, B, S, D, C, L)")
  return {k: _column(k, [r[k] for r in rows]) for k in rows[0] if k is not None}


def _column(name: str, values: list) -> np.ndarray:
  try:
    return np.asarray([math.nan if v in ("", None) else float(v) for v in values])
  except (TypeError, ValueError):
    return np.asarray(values, dtype=object)


def write_table(table: dict[str, Any], path: str) -> None:
  """Writes a table as CSV (or JSON list of rows if the path ends in .json)."""
  names = list(table)
  n = len(next(iter(table.values()))) if table else 0
  rows = [{k: _plain(table[k][i]) for k in names} for i in range(n)]
  if str(path).endswith(".json"):
    rundir.write_json_atomic(path, rows)
    return
  buf = io.StringIO(newline="")
  w = csv.DictWriter(buf, fieldnames=names)
  w.writeheader()
  w.writerows(rows)
  rundir.write_text(path, buf.getvalue())


def _plain(v: Any) -> Any:
  return v.item() if hasattr(v, "item") else v
