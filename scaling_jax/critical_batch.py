"""`scaling-jax critical-batch [--scale cpu|pod] [--config FILE] --out DIR`: the critical batch
of one model measured three ways in one study, and how well they agree.

1. GNS: a base run logs B_simple (`noise_scale.py`) at no extra cost; its checkpoints at
   `study.branch_steps` are kept.
2. Batch-size sweep (Kaplan Eq. 5.4): the model trained from scratch at every batch of
   `study.batch_sizes` until it reaches the lowest loss level; per level, S(B) and
   S = S_min + E_min/B (`scaling.batch`).
3. Branched probes (Merrill et al. 2025): from each kept checkpoint of the base run, one
   short branch per batch of the ladder trains until its eval loss has fallen by
   `study.target_drop`; per branch point, B_crit = E_min/S_min and Zhang et al.'s 20% batch
   (`scaling.probes`).

All three are compared at the same loss levels: each branch point's middle loss
(L_0 + L_1)/2. Every run is an ordinary run directory OUT/runs/NAME trained by the sweep
runner (`sweep.run_sweep`), so rerunning the command resumes: finished runs are skipped,
interrupted ones continue from their checkpoints, failed ones are retried. A branch is a
run with `train.init_from` = the base run and `train.init_step` = its branch point, and
`train.stop_loss` = its target.

Every run evaluates on the same fixed eval set (`study.eval_sequences` sequences: a run at
batch B uses eval_sequences/B eval batches), so losses compare across batch sizes.

LR rule (`study.lr_rule`; the shipped studies use "gns"): each branch at batch B trains at
McCandlish et al.'s (2018) optimal SGD step for that batch, eps(B) = eps_max / (1 + B_noise/B),
with B_noise the base run's measured B_simple at the branch point: the base LR times
(1 + B_noise/B_base) / (1 + B_noise/B). S = S_min + E_min/B, which both direct methods fit,
is derived for a step tuned to each batch; the sweep runs, which train from scratch through
every level where no one B_noise applies, keep the base LR. "constant", "sqrt" and "linear"
scale the LR of sweep runs and branches alike by (B/B_base)^0, ^0.5, ^1. README "Critical
batch size three ways" reports what each rule changes.

Outputs (in ./critical_batch_report when OUT is a gs:// URL): OUT/report/report.json (every
number), critical_batch.png (B_crit(L) from the three methods with 95% intervals),
steps_vs_batch.png (the probes' and the sweep's S(B)) and report.html.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import math
import os
import sys
import time
from typing import Any

import ml_collections
import numpy as np

from scaling_jax import errors
from scaling_jax import metric_keys as keys
from scaling_jax import preflight, rundir
from scaling_jax import sweep as sweep_lib
from scaling_jax.config import ConfigError, load_user_module
from scaling_jax.scaling import batch as batch_lib
from scaling_jax.scaling import batch_plots, bcrit, probes
from scaling_jax.scaling import runs as runs_lib
from scaling_jax.scaling.laws import FitError

SCALE_CONFIGS = {"cpu": "critical_batch.py", "pod": "critical_batch_pod.py"}
LR_RULES = {"constant": 0.0, "sqrt": 0.5, "linear": 1.0}  # LR ∝ (B/B_base)^power
GNS_LR_RULE = "gns"  # LR(B) ∝ 1/(1 + B_noise/B), B_noise measured at the branch point
BASE = "base"
REMOTE_REPORT_DIR = "critical_batch_report"  # where the report goes when --out is a gs:// URL


class StudyError(ConfigError):
  """A study design that cannot work; the message says what to change."""


# ---------------------------------------------------------------------------- the design


# The fields of a study (configs/critical_batch.py's get_study()) and what each must be.
STUDY_INTS = ("base_batch", "base_steps", "eval_sequences", "eval_every_sequences",
              "branch_max_tokens", "sweep_max_tokens")
STUDY_LADDERS = ("branch_steps", "batch_sizes")
STUDY_FIELDS = (*STUDY_INTS, *STUDY_LADDERS, "target_drop", "lr_rule")


def load_study(config_file: str, overrides: dict[str, str]) -> ml_collections.ConfigDict:
  """The config file's get_study() with --study.FIELD=VALUE overrides, checked.

  Whatever the user's file does wrong (a syntax error, an import that fails, get_study()
  raising, missing or returning something other than a ConfigDict) is a StudyError naming
  the file, as config and sweep files are (`config.load_user_module` runs it)."""
  if not os.path.isfile(config_file):
    raise StudyError(f"config file {config_file!r} does not exist; pass a file with "
                     "get_config() and get_study() such as configs/critical_batch.py")
  try:
    module = load_user_module(config_file, "_critical_batch_config")
    get_study = getattr(module, "get_study", None)
    if not callable(get_study):
      raise StudyError(f"{config_file} defines no get_study(); it must return the study's "
                       "design (see configs/critical_batch.py)")
    study = get_study()
  except StudyError:
    raise
  except Exception as e:  # noqa: BLE001 -- the user's file: one line saying which and what
    raise StudyError(f"cannot load study file {config_file}: {type(e).__name__}: "
                     f"{errors.one_line(e)}; fix the file") from None
  if not isinstance(study, ml_collections.ConfigDict):
    raise StudyError(f"get_study() of {config_file} returned a {type(study).__name__}; it must "
                     "return an ml_collections.ConfigDict as configs/critical_batch.py does")
  missing = [f for f in STUDY_FIELDS if f not in study]
  if missing:
    raise StudyError(f"get_study() of {config_file} lacks the study fields {missing}; see "
                     "configs/critical_batch.py for every field")
  for key, text in overrides.items():
    if key not in study:
      raise StudyError(f"unknown study field {key!r}; the fields are {sorted(study.keys())}")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    if isinstance(study[key], tuple) and isinstance(value, (int, list)):
      value = tuple(value) if isinstance(value, list) else (value,)
    if isinstance(study[key], float) and isinstance(value, int):
      value = float(value)
    if type(value) is not type(study[key]):
      raise StudyError(f"--study.{key}={text}: expected a {type(study[key]).__name__} like "
                       f"{study[key]!r}")
    study[key] = value
  check_study(study)
  return study


def _positive_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v > 0


def check_study(s) -> None:
  """One-line StudyError for a design that cannot work (a field of the wrong type included:
  a study file's get_study() is checked here as much as the --study overrides)."""
  for name in STUDY_INTS:
    if not _positive_int(s[name]):
      unit = "number of tokens" if name.endswith("_tokens") else "integer"
      raise StudyError(f"study.{name}={s[name]!r} must be a positive {unit}")
  for name in STUDY_LADDERS:
    if not (isinstance(s[name], (tuple, list)) and s[name]
            and all(_positive_int(v) for v in s[name])):
      raise StudyError(f"study.{name}={s[name]!r} must be a tuple of positive integers")
  if len(set(s.batch_sizes)) < batch_lib.MIN_BATCH_SIZES:
    raise StudyError(f"study.batch_sizes={s.batch_sizes}: the S_min/E_min fit needs >= "
                     f"{batch_lib.MIN_BATCH_SIZES} distinct batch sizes")
  if max(s.branch_steps) >= s.base_steps:
    raise StudyError(f"study.branch_steps={s.branch_steps} must lie before the base run's end "
                     f"(study.base_steps={s.base_steps})")
  drop = s.target_drop
  if not (isinstance(drop, (int, float)) and not isinstance(drop, bool) and 0 < drop < 0.5):
    raise StudyError(f"study.target_drop={drop!r} must be in (0, 0.5): the fraction of "
                     "the loss each branch trains off")
  if not isinstance(s.lr_rule, str) or s.lr_rule not in (*LR_RULES, GNS_LR_RULE):
    raise StudyError(f"study.lr_rule={s.lr_rule!r} is not one of "
                     f"{(*LR_RULES, GNS_LR_RULE)}")
  bad = [b for b in (*s.batch_sizes, s.base_batch) if s.eval_sequences % b]
  if bad:
    raise StudyError(f"study.eval_sequences={s.eval_sequences} must be a multiple of every batch "
                     f"size (not of {bad}): every run evaluates on the same sequences")
  every = base_eval_every(s)
  ckpt = math.gcd(*s.branch_steps)
  if any(b % every for b in s.branch_steps) or ckpt % every:
    raise StudyError(f"study.branch_steps={s.branch_steps} must be multiples of the base run's "
                     f"eval interval, {every} steps (eval_every_sequences / base_batch)")


def base_eval_every(s) -> int:
  return max(1, s.eval_every_sequences // s.base_batch)


def lr_factor(s, b: int, b_noise_seqs: float = math.nan) -> float:
  """A run at batch b (sequences) trains at the base LR times this: (b/B_base)^power, or for
  the "gns" rule (1 + B_noise/B_base) / (1 + B_noise/b), B_noise in sequences (1 where it
  is not known: the sweep runs)."""
  if s.lr_rule != GNS_LR_RULE:
    return (b / s.base_batch) ** LR_RULES[s.lr_rule]
  if not math.isfinite(b_noise_seqs):
    return 1.0
  return (1 + b_noise_seqs / s.base_batch) / (1 + b_noise_seqs / b)


def _common(s, b: int) -> dict[str, Any]:
  """Overrides every run at batch b shares: the batch, the fixed eval set, its interval."""
  return {"train.batch_size": b, "data.eval_batches": s.eval_sequences // b,
          "train.eval_every": max(1, s.eval_every_sequences // b)}


def base_entry(s, config_file: str) -> dict[str, Any]:
  ckpt = math.gcd(*s.branch_steps)
  return {"name": BASE, "config": config_file, "overrides": {
      **_common(s, s.base_batch), "train.eval_every": base_eval_every(s),
      "train.num_steps": s.base_steps, "train.ckpt_every": ckpt,
      "train.keep_checkpoints": s.base_steps // ckpt + 1, "gns.enabled": True}}


@dataclasses.dataclass
class BranchPoint:
  step: int
  loss: float  # the base run's eval loss there (L_0)
  target: float  # L_1
  lr: float  # the base run's LR there
  b_noise: float = math.nan  # the base run's B_simple there (tokens; NaN: not measured)


def branch_points(s, base: runs_lib.Run) -> list[BranchPoint]:
  """L_0, L_1 and the LR at each branch step, from the base run's metrics."""
  eval_steps, evals = base.series(keys.EVAL_LOSS)
  lr_steps, lrs = base.series(keys.LR)
  gns = bcrit.gns_points([base])
  gns_steps, gns_b = gns.step[gns.kept], gns.b_simple[gns.kept]
  if s.lr_rule == GNS_LR_RULE and not len(gns_steps):
    raise StudyError(f"study.lr_rule={GNS_LR_RULE!r} needs the base run's GNS readings and "
                     f"{base.path} kept none; train the base run longer or pick another rule")
  out = []
  for step in s.branch_steps:
    at = np.nonzero(eval_steps == step)[0]
    if not at.size or not len(lrs):
      raise StudyError(f"the base run {base.path} logged no eval loss or LR at step {step}; "
                       "delete it and rerun (its eval interval must divide the branch steps)")
    loss = float(evals[at[0]])
    lr = float(lrs[np.abs(lr_steps - step).argmin()])
    # B_simple there: the kept readings interpolated in log (the nearest one outside them)
    b_noise = (float(np.exp(np.interp(step, gns_steps, np.log(gns_b)))) if len(gns_steps)
               else math.nan)
    out.append(BranchPoint(step, loss, loss * (1 - s.target_drop), lr, b_noise))
  return out


def study_entries(s, config_file: str, runs_dir: str, points: list[BranchPoint]
                  ) -> list[dict[str, Any]]:
  """The sweep runs and the branches (the base run must be done: its losses set targets)."""
  n_ctx = int(sweep_lib.load_run_config(config_file, {}).model.n_ctx)
  lowest = min(p.target for p in points)
  base_lr = points[-1].lr
  entries = []
  for b in sorted(set(s.batch_sizes)):
    if b == s.base_batch:
      continue  # the base run is the sweep's run at its batch
    entries.append({"name": f"sweep_B{b}", "config": config_file, "overrides": {
        **_common(s, b), "train.num_steps": max(1, s.sweep_max_tokens // (b * n_ctx)),
        "train.stop_loss": lowest, "optim.lr": base_lr * lr_factor(s, b)}})
  for p in points:
    for b in sorted(set(s.batch_sizes)):
      entries.append({"name": f"branch_s{p.step}_B{b}", "config": config_file, "overrides": {
          **_common(s, b), "train.num_steps": max(1, s.branch_max_tokens // (b * n_ctx)),
          "train.stop_loss": p.target, "train.init_from": sweep_lib.run_dir(runs_dir, BASE),
          "train.init_step": p.step, "gns.enabled": True,
          "optim.lr": p.lr * lr_factor(s, b, p.b_noise / n_ctx), "optim.warmup_steps": 0,
          "optim.schedule": "constant"}})
  return entries


# ---------------------------------------------------------------------------- the analysis


def _geo_interval(values) -> tuple[float, float, float]:
  """Geometric mean of positive values and its 95% t interval (NaN bounds for one value)."""
  logs = np.log(np.asarray(values, float))
  mean = float(np.exp(logs.mean()))
  if len(logs) < 2:
    return mean, math.nan, math.nan
  half = batch_lib.t_quantile_975(len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
  return mean, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


def gns_at(run: runs_lib.Run, level: float) -> float | None:
  """The run's B_simple (tokens) at the step it first reaches `level`: its kept readings
  (bcrit.gns_points: after warmup and one EMA horizon) interpolated there."""
  pts = bcrit.gns_points([run])
  steps, b = pts.step[pts.kept], pts.b_simple[pts.kept]
  ls, lv = run.series(keys.EVAL_LOSS)
  at = batch_lib.steps_to_loss(ls, lv, level)
  if at is None or not len(steps) or not steps[0] <= at <= steps[-1]:
    return None
  return float(np.exp(np.interp(at, steps, np.log(b))))


def probe_steps(run: runs_lib.Run, start_loss: float, target: float) -> float | None:
  """Steps the branch needed to reach `target`: its eval curve, from (0, L_0), interpolated."""
  s, v = run.series(keys.EVAL_LOSS)
  return batch_lib.steps_to_loss(np.concatenate([[0.0], s]), np.concatenate([[start_loss], v]),
                                 target)


def _cost(group: list[runs_lib.Run]) -> dict[str, Any]:
  """Runs, tokens trained (last step x batch: a branch may stop before its first train log)
  and logged train time."""
  steps = [max(int(rec[keys.STEP]) for rec in r.records) for r in group]
  return {"runs": len(group),
          "tokens": float(sum(s * r.batch_tokens for s, r in zip(steps, group))),
          "time_s": float(sum(r.time_s for r in group))}


def _law_dict(law: batch_lib.PowerLawFit | None) -> dict[str, Any] | None:
  if law is None:
    return None
  return {"B_star": law.b_star, "B_star_interval": [law.b_star_lo, law.b_star_hi],
          "alpha_B": law.alpha_b, "alpha_B_interval": [law.alpha_b_lo, law.alpha_b_hi],
          "n_levels": law.n_levels, "tested": law.tested}


def analyze(s, runs_dir: str, points: list[BranchPoint], bootstrap: int = 1000,
            seed: int = 0) -> dict[str, Any]:
  """Every number of the report (JSON-ready): per level the three estimates with intervals
  and their ratios, each method's B_* and alpha_B, and what each method cost."""
  read = {r.name: r for r in runs_lib.read_runs(runs_dir)}  # local or gs:// (rundir)
  if BASE not in read:
    raise StudyError(f"no base run in {runs_dir}; run the study first")
  base = read[BASE]
  sweep_runs = [base] + [r for n, r in read.items() if n.startswith("sweep_")]
  notes: list[str] = []
  n_ctx = base.batch_tokens / base.facts["batch_sequences"]

  # branched probes, one ladder per branch point
  probe_fits: list[probes.ProbeFit] = []
  ladders = {}
  for p in points:
    b_tok, steps, res = [], [], []
    for b in sorted(set(s.batch_sizes)):
      run = read.get(f"branch_s{p.step}_B{b}")
      n = None if run is None else probe_steps(run, p.loss, p.target)
      if n is None:
        notes.append(f"branch s{p.step} B{b}: did not reach L = {p.target:.4f} (budget "
                     "study.branch_max_tokens) or has not run; left out")
        continue
      b_tok.append(b * n_ctx)
      steps.append(n)
      res.append(max(1, s.eval_every_sequences // b))
    ladders[p.step] = (b_tok, steps)
    try:
      probe_fits.append(probes.analyze_probe(
          b_tok, steps, start_loss=p.loss, target_loss=p.target, start_step=p.step,
          resolution=np.asarray(res, float), bootstrap=bootstrap, seed=seed))
    except batch_lib.BatchSweepError as e:
      notes.append(f"branch point {p.step}: {e}")
  probe_result = probes.analyze_probes(probe_fits)
  notes += probe_result.notes
  levels = [0.5 * (p.loss + p.target) for p in points]

  # the batch-size sweep at the same levels
  curves = [batch_lib.Curve(r.batch_tokens, *r.series(keys.EVAL_LOSS), name=r.name)
            for r in sweep_runs if len(r.series(keys.EVAL_LOSS)[0]) >= 2]
  sweep_result = None
  try:
    sweep_result = batch_lib.analyze_batch_sweep(curves, levels=levels)
    notes += sweep_result.notes
  except batch_lib.BatchSweepError as e:
    notes.append(f"batch sweep: {e}")
  sweep_by_level = {round(f.loss, 9): f for f in (sweep_result.levels if sweep_result else [])}

  # the GNS: every sweep run's reading at each level (the base run's alone beside it)
  gns_law = None
  try:
    gns_law = bcrit.choose_b_crit("gns", sweep_runs, bootstrap=200, seed=seed)
  except FitError as e:
    notes.append(f"GNS law: {e}")
  rows = []
  probe_by_level = {round(f.loss, 9): f for f in probe_fits}
  for level, p in zip(levels, points):
    readings = [g for g in (gns_at(r, level) for r in sweep_runs) if g is not None]
    base_reading = gns_at(base, level)
    row: dict[str, Any] = {"loss": level, "branch_step": p.step, "start_loss": p.loss,
                           "target_loss": p.target}
    if readings:
      g, lo, hi = _geo_interval(readings)
      row["gns"] = {"b": g, "lo": lo, "hi": hi, "runs": len(readings), "base_run": base_reading}
    f = sweep_by_level.get(round(level, 9))
    if f is not None:
      row["sweep"] = {"b": f.b_crit, "lo": f.b_crit_lo, "hi": f.b_crit_hi,
                      "batches": len(f.batch_tokens)}
    pf = probe_by_level.get(round(level, 9))
    if pf is not None:
      row["probe"] = {"b": pf.b_crit, "lo": pf.b_crit_lo, "hi": pf.b_crit_hi,
                      "b_20": pf.b_excess, "b_20_lo": pf.b_excess_lo, "b_20_hi": pf.b_excess_hi,
                      "s_min": pf.s_min, "e_min": pf.e_min, "batches": len(pf.batch_tokens)}
    if "gns" in row:
      for other in ("sweep", "probe"):
        if other in row:
          row[f"gns_over_{other}"] = row["gns"]["b"] / row[other]["b"]
    rows.append(row)

  branch_runs = [r for n, r in read.items() if n.startswith("branch_")]
  return {
      "model": {"n_params": base.n_params, "n_ctx": n_ctx, "config": base.config.get("model")},
      "design": s.to_dict(), "levels": rows,
      "laws": {"gns": gns_law.to_dict() if gns_law else None,
               "sweep": _law_dict(sweep_result.power_law if sweep_result else None),
               "probe": _law_dict(probe_result.b_crit_law),
               "probe_20": _law_dict(probe_result.b_excess_law)},
      "cost": {"gns": _cost([base]), "sweep": _cost(sweep_runs[1:]),
               "probes": _cost(branch_runs)},
      "ladders": {str(k): {"batch_tokens": v[0], "steps": v[1]} for k, v in ladders.items()},
      "sweep_levels": [dataclasses.asdict(f) for f in (sweep_result.levels if sweep_result
                                                       else [])],
      "notes": notes,
  }


# ---------------------------------------------------------------------------- the report


def _clean(obj):
  """Strict JSON: non-finite floats become null."""
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: _clean(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_clean(v) for v in obj]
  if isinstance(obj, np.generic):
    return _clean(obj.item())
  return obj


def _g(v, fmt: str = ".3g") -> str:
  return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _iv(d: dict | None, key="b", lo="lo", hi="hi") -> str:
  if not d or d.get(key) is None:
    return "–"
  return f"{_g(d[key])} [{_g(d.get(lo))}, {_g(d.get(hi))}]"


def summary_tables(r: dict[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
  """The report's three tables, as (header, rows) of text cells: per loss level, per method's
  B_crit(L) law, and the cost of each method."""
  levels = [[f"{row['loss']:.4f}", _iv(row.get("gns")), _iv(row.get("sweep")),
             _iv(row.get("probe")), _iv(row.get("probe"), "b_20", "b_20_lo", "b_20_hi"),
             _g(row.get("gns_over_sweep")), _g(row.get("gns_over_probe"))]
            for row in r["levels"]]
  laws = []
  for name, law in r["laws"].items():
    if law:
      bs = law.get("B_star_interval") or [None, None]
      a = law.get("alpha_B_interval") or [None, None]
      untested = (f" (through {law['n_levels']} levels, untested)"
                  if law.get("tested") is False else "")
      laws.append([name, f"{_g(law['B_star'])} [{_g(bs[0])}, {_g(bs[1])}]",
                   f"{_g(law['alpha_B'])} [{_g(a[0])}, {_g(a[1])}]{untested}"])
  cost = [[name, str(c["runs"]), f"{c['tokens']:.3g}", f"{c['time_s']:.0f}"]
          for name, c in r["cost"].items()]
  return [(["loss", "GNS B_simple [95%]", "sweep B_crit [95%]", "probes B_crit [95%]",
            "probes B_20 [95%]", "GNS/sweep", "GNS/probes"], levels),
          (["method", "B_* (tokens) [95%]", "alpha_B [95%]"], laws),
          (["cost", "runs", "tokens", "train time (s)"], cost)]


def summary_caption(r: dict[str, Any]) -> str:
  return (f"model N = {r['model']['n_params']:.4g}; B in tokens (sequences x "
          f"{int(r['model']['n_ctx'])})")


def summary_lines(r: dict[str, Any]) -> list[str]:
  """The report's tables as aligned plain text (what the command prints)."""
  lines = [summary_caption(r)]
  for header, rows in summary_tables(r):
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for cells in (header, *rows):
      lines.append(" | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
  return lines


def summary_html(r: dict[str, Any]) -> str:
  """The same tables as HTML."""
  esc = html.escape
  parts = [f"<p>{esc(summary_caption(r))}</p>"]
  for header, rows in summary_tables(r):
    head = "".join(f"<th>{esc(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
                   for cells in rows)
    parts.append(f"<table><tr>{head}</tr>{body}</table>")
  return "\n".join(parts)


def write_report(r: dict[str, Any], out_dir: str) -> dict[str, str]:
  os.makedirs(out_dir, exist_ok=True)
  paths = {"json": os.path.join(out_dir, "report.json")}
  rundir.write_json_atomic(paths["json"], _clean(r))
  for name, fig in (("critical_batch", batch_plots.plot_three_methods(r)),
                    ("steps_vs_batch", batch_plots.plot_probe_ladders(r))):
    paths[name] = os.path.join(out_dir, f"{name}.png")
    fig.savefig(paths[name], dpi=100, bbox_inches="tight")
  notes = "".join(f"<li>{html.escape(n)}</li>" for n in r["notes"])
  paths["html"] = os.path.join(out_dir, "report.html")
  with open(paths["html"], "w") as f:
    f.write(f"""<!doctype html><html><head><meta charset="utf-8">
<title>Critical batch size three ways</title><style>
body {{ font-family: sans-serif; max-width: 1100px }} img {{ max-width: 100% }}
table {{ border-collapse: collapse; margin: 0.8em 0 }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left }}
</style></head><body>
<h1>Critical batch size three ways</h1>
<p>GNS (B_simple of the base and sweep runs), a batch-size sweep (Kaplan Eq. 5.4) and
branched probes (Merrill et al. 2025; B_crit = E_min/S_min and Zhang et al.'s 20% batch),
compared at the branch points' loss levels. Intervals are 95%.</p>
<img src="critical_batch.png" alt="B_crit(L) three ways">
<img src="steps_vs_batch.png" alt="steps to target vs batch size">
<h2>Tables</h2>{summary_html(r)}<h2>Notes</h2><ul>{notes}</ul></body></html>""")
  return paths


# ---------------------------------------------------------------------------- the command


def _split_args(rest: list[str]) -> tuple[dict[str, str], dict[str, str]]:
  study, config = {}, {}
  for item in rest:
    for prefix, into in (("--study.", study), ("--config.", config)):
      if item.startswith(prefix) and "=" in item:
        key, value = item[len(prefix):].split("=", 1)
        into[key] = value
        break
    else:
      raise StudyError(f"unknown argument {item!r}; set study fields as --study.FIELD=VALUE and "
                       "run fields as --config.FIELD=VALUE")
  return study, config


@errors.boundary("critical-batch")
def main(argv: list[str]) -> int:
  parser = errors.ArgumentParser(
      prog="scaling-jax critical-batch",
      description="The critical batch size of one model three ways (GNS, batch-size sweep, "
                  "branched probes), with intervals; rerun to resume.")
  parser.add_argument("--out", required=True, help="study directory (runs/ and report/)")
  parser.add_argument("--scale", default="cpu", choices=sorted(SCALE_CONFIGS),
                      help="cpu: the 20-minute CPU study (default); pod: the 85M model")
  parser.add_argument("--config", default=None,
                      help="a file with get_config() and get_study() (default: the scale's)")
  parser.add_argument("--parallel", type=errors.positive_int,
                      default=min(2, os.cpu_count() or 1))
  parser.add_argument("--bootstrap", type=errors.non_negative_int, default=1000)
  parser.add_argument("--dry-run", action="store_true", help="print the base run's command")
  args, rest = parser.parse_known_args(argv)
  t0 = time.monotonic()
  config_file = os.path.abspath(args.config or os.path.join(sweep_lib.CONFIGS_DIR,
                                                            SCALE_CONFIGS[args.scale]))
  study_over, config_over = _split_args(rest)
  s = load_study(config_file, study_over)
  runs_dir = sweep_lib.absolute(os.path.join(args.out, "runs"))
  base = base_entry(s, config_file)
  base["overrides"].update(config_over)
  sweep_lib.load_run_config(config_file, base["overrides"])  # a bad override fails here
  if args.dry_run:
    print(" ".join(sweep_lib.train_command(base, runs_dir)))
    return 0
  # Every input is checked before the first line of progress: --out (the runs, and the report
  # written after hours of training), and the base run's status.json where a study is
  # resumed (DamagedRunFile).
  report_dir = (REMOTE_REPORT_DIR if rundir.is_remote(args.out)
                else os.path.join(args.out, "report"))
  preflight.check_output_dir(runs_dir, "--out")
  preflight.check_output_dir(report_dir, "--out")
  sweep_lib.pending([base], runs_dir)
  print(f"[critical-batch] base run ({s.base_steps} steps of {s.base_batch} sequences, GNS) "
        f"into {runs_dir}", file=sys.stderr)
  results = sweep_lib.run_sweep([base], runs_dir, progress_every_s=30)
  text, code = sweep_lib.summarize(results)
  if code:
    print(f"[critical-batch] base run: {text}; rerun the same command to "
          f"{'resume' if code == sweep_lib.EX_TEMPFAIL else 'retry'}", file=sys.stderr)
    return code
  points = branch_points(s, runs_lib.read_run(sweep_lib.run_dir(runs_dir, BASE)))
  entries = study_entries(s, config_file, runs_dir, points)
  for e in entries:
    e["overrides"].update(config_over)
  print(f"[critical-batch] {len(entries)} sweep runs and branches, {args.parallel} at a time",
        file=sys.stderr)
  results = sweep_lib.run_sweep(entries, runs_dir, parallel=args.parallel,
                                progress_every_s=30)
  text, code = sweep_lib.summarize(results)
  print(f"[critical-batch] runs: {text}", file=sys.stderr)
  if code == sweep_lib.EX_TEMPFAIL:
    print("[critical-batch] interrupted: rerun the same command to resume", file=sys.stderr)
    return code
  report = analyze(s, runs_dir, points, bootstrap=args.bootstrap)
  report["wall_s"] = time.monotonic() - t0  # of this invocation (a resume: the rest only)
  paths = write_report(report, report_dir)
  print("\n".join(summary_lines(report)))
  print(f"[critical-batch] done in {report['wall_s'] / 60:.1f} min; open {paths['html']}")
  return code


if __name__ == "__main__":
  sys.exit(main())
