"""`scaling-jax report STUDY_DIR`: fit, extrapolate and report a size sweep as HTML + PNG + JSON.

`analyze(study_dir)` reads the run directories (never the trainer) and computes:
  - L(N, S_min) = (N_c/N)^a_N + (S_c/S_min)^a_S (Kaplan Eq. 1.6), S_min from each run's GNS,
    fitted on all runs but the largest N, with bootstrap intervals;
  - that fit's prediction of the held-out largest model's learning curve against what it
    did (relative error over the curve, RMS, and at the final step);
  - the same law fitted on all runs, and L(N) fitted on the final losses (exponent + interval);
  - B_crit(L) = B_*/L^(1/a_B) fitted to the runs' GNS B_simple against their loss;
  - the compute-efficient frontier those fits imply (Kaplan §6 / App. B).
`write_report` turns that into STUDY/report/{report.html, report.json, *.png}. The HTML
embeds its figures, so it can be mailed as one file; the PNGs lie beside it.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from scaling_jax import metrics as metrics_lib
from scaling_jax import rundir

REFERENCE = os.path.join(os.path.dirname(__file__), "scaling", "reference", "kaplan2020.json")
EVAL_KEY = "eval/validation/loss"
GNS_KEY = "gns/b_simple_tokens"
REPORT_DIR = "report"
FLAT_ALPHA_B = 1e6  # B_crit = B_* L^(-1/alpha_B) is constant: the fallback when B_simple has no trend


class ReportError(ValueError):
  """A study directory that cannot be reported; the message says what to do."""


# ---------------------------------------------------------------------------- reading runs

def read_run(run_dir: str) -> dict[str, Any] | None:
  """One run's facts, loss curve (eval if logged, else train) and GNS series; None if empty."""
  cfg = rundir.read_config(run_dir) or {}
  facts = cfg.get("facts") or {}
  if not facts.get("n_params") or not facts.get("batch_tokens"):
    return None
  records = metrics_lib.read_metrics(run_dir)
  key = EVAL_KEY if any(EVAL_KEY in r for r in records) else "loss"
  steps, loss = metrics_lib.series(records, key)
  if not steps:
    return None
  tr_steps, tr_loss = metrics_lib.series(records, "loss")
  g_steps, g_vals = metrics_lib.series(records, GNS_KEY)
  model = (cfg.get("config") or {}).get("model", {})
  return {
      "name": os.path.basename(os.path.normpath(run_dir)), "dir": run_dir,
      "status": rundir.read_status(run_dir)["status"], "N": float(facts["n_params"]),
      "B": float(facts["batch_tokens"]), "n_layer": model.get("n_layer"),
      "d_model": model.get("d_model"), "num_steps": facts.get("num_steps"),
      "flops_per_token": float(facts.get("flops_per_token", 6.0 * facts["n_params"])),
      "loss_key": key, "steps": np.asarray(steps, float), "loss": np.asarray(loss, float),
      "train_steps": np.asarray(tr_steps, float), "train_loss": np.asarray(tr_loss, float),
      "gns_steps": np.asarray(g_steps, float), "b_simple": np.asarray(g_vals, float),
      "config": cfg.get("config"), "versions": cfg.get("versions"),
      "devices": cfg.get("devices"),
      "time_s": max([r.get("time_s", 0.0) for r in records] or [0.0]),
  }


def read_study(study_dir: str) -> list[dict[str, Any]]:
  """Every readable run under `study_dir`, sorted by N."""
  runs = [r for r in (read_run(d) for d in rundir.find_runs(study_dir)) if r is not None]
  if not runs:
    raise ReportError(f"no run directories with metrics under {study_dir!r}; run "
                      "`scaling-jax sweep` or `scaling-jax demo` first")
  return sorted(runs, key=lambda r: (r["N"], r["name"]))


def _load_reference() -> dict[str, Any]:
  with open(REFERENCE) as f:
    return json.load(f)


def paper_values() -> dict[str, float]:
  """Kaplan et al.'s constants for the report's comparison table (kaplan2020.json)."""
  ref = _load_reference()
  lns, bc, fr = ref["L_N_S"], ref["critical_batch_size"], ref["compute_efficient_frontier"]
  ln = ref["single_variable_laws"]["L_N"]
  return {
      "L_N_Smin.alpha_N": lns["fit_table3"]["alpha_N"]["value"],
      "L_N_Smin.alpha_S": lns["fit_table3"]["alpha_S"]["value"],
      "L_N_Smin.N_c": lns["fit_table3"]["N_c"]["value"],
      "L_N_Smin.S_c": lns["fit_table3"]["S_c"]["value"],
      "L_N.alpha_N": ln["alpha_N"]["value"], "L_N.N_c": ln["N_c"]["value"],
      "B_crit.B_star": bc["B_star_tokens"]["value"], "B_crit.alpha_B": bc["alpha_B"]["value"],
      "frontier.alpha_C_min": ref["single_variable_laws"]["L_Cmin"]["alpha_C_min"]["value"],
      "frontier.p_N": fr["N_opt"]["p_N"]["value"], "frontier.p_B": fr["B"]["p_B"]["value"],
      "frontier.p_S": fr["S_min"]["p_S"]["value"],
  }


# ---------------------------------------------------------------------------- analysis

def _fit_dict(fit) -> dict[str, Any]:
  d = fit.to_dict()
  return {k: d[k] for k in ("law", "form", "params", "intervals", "level", "converged",
                            "objective", "n_points", "bootstrap", "bootstrap_converged",
                            "unidentifiable", "warnings")}


def _fit_or_note(law, table, notes: list[str], what: str, **kw):
  from scaling_jax.scaling.fit import fit_law
  from scaling_jax.scaling.laws import FitError
  try:
    return fit_law(law, table, **kw)
  except FitError as e:
    notes.append(f"{what}: {e}")
    return None


def _subset(table: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
  return {k: np.asarray(v)[mask] for k, v in table.items()}


def _gns_points(runs, warmup_frac: float = 0.1):
  """(loss, B_simple tokens, run index) of every positive GNS point after the first 10%."""
  loss, bs, idx = [], [], []
  for i, r in enumerate(runs):
    gs, gv = r["gns_steps"], r["b_simple"]
    if len(gs) == 0 or len(r["steps"]) < 2:
      continue
    ok = (np.isfinite(gv) & (gv > 0) & (gs >= max(r["steps"][0], warmup_frac * gs[-1]))
          & (gs <= r["steps"][-1]))
    if ok.any():
      loss.extend(np.interp(gs[ok], r["steps"], r["loss"]).tolist())
      bs.extend(gv[ok].tolist())
      idx.extend([i] * int(ok.sum()))
  return np.asarray(loss), np.asarray(bs), np.asarray(idx, int)


def analyze(study_dir: str, *, bootstrap: int = 200, level: float = 0.95, seed: int = 0,
            points: int = 32, b_crit: str = "none") -> dict[str, Any]:
  """The study's fits, held-out extrapolation, B_crit and frontier, as a JSON-ready dict
  (plus private numpy arrays under keys starting with '_' for the figures).

  b_crit: how S_min = S / (1 + B_crit/B) is computed for the L(N, S_min) fit: 'none'
  (S_min = S; the default: the runs share one B, and at B << B_crit the per-step GNS is too
  noisy to rescale single points -- in the CPU demo it made S_min fall late in training
  and the fit degenerate), 'gns' (each point's B_simple) or 'kaplan' (B_*/L^(1/0.21)).
  """
  from scaling_jax.scaling import frontier as frontier_lib
  from scaling_jax.scaling import runs as runs_lib
  from scaling_jax.scaling.batch import BatchSweepError, fit_b_crit_power_law, s_min

  runs = read_study(study_dir)
  notes: list[str] = []
  unfinished = [r["name"] for r in runs if r["status"] != "finished"]
  if unfinished:
    notes.append(f"runs not finished (used as they are): {unfinished}")
  table_warn: list[str] = []
  table = runs_lib.runs_table(study_dir, b_crit=b_crit, points=points, warnings=table_warn)
  notes += table_warn
  n_values = np.unique(table["N"])
  fit_kw = dict(bootstrap=bootstrap, level=level, seed=seed, drop_invalid=True,
                require_convergence=False)
  out: dict[str, Any] = {"study_dir": os.path.abspath(study_dir), "notes": notes,
                         "s_min_b_crit": b_crit,
                         "level": level, "bootstrap": bootstrap, "seed": seed}

  # --- L(N, S_min) on all but the largest N, and its extrapolation to the largest.
  heldout_fit = None
  if len(n_values) >= 3:
    n_max = n_values.max()
    heldout_fit = _fit_or_note("L_N_Smin", _subset(table, table["N"] < n_max), notes,
                               "L(N, S_min) without the largest model", **fit_kw)
    big = [r for r in runs if r["N"] == n_max][0]
    rows = runs_lib.run_rows(big["dir"], b_crit=b_crit, points=0, warnings=[])
    if heldout_fit is not None and rows:
      pred = heldout_fit.predict({"N": rows["N"], "S_min": rows["S_min"]})
      obs = np.asarray(rows["L"])
      rel = pred.value / obs - 1
      inside = (obs >= pred.lo) & (obs <= pred.hi)
      out["heldout"] = {
          "run": big["name"], "N": float(n_max), "n_points": int(len(obs)),
          "rms_rel_error": float(np.sqrt(np.mean(rel ** 2))),
          "mean_abs_rel_error": float(np.mean(np.abs(rel))),
          "final_rel_error": float(rel[-1]), "final_step": float(rows["S"][-1]),
          "final_loss_observed": float(obs[-1]), "final_loss_predicted": float(pred.value[-1]),
          "final_loss_band": [float(pred.lo[-1]), float(pred.hi[-1])],
          "fraction_in_band": float(np.mean(inside)) if np.isfinite(pred.lo).any() else None,
          "fit": _fit_dict(heldout_fit)}
      out["_heldout_curve"] = {"S": np.asarray(rows["S"]), "S_min": np.asarray(rows["S_min"]),
                               "L": obs, "pred": pred.value, "lo": pred.lo, "hi": pred.hi}
  else:
    notes.append(f"{len(n_values)} model sizes: the held-out extrapolation needs >= 3")

  # --- L(N, S_min) on every run (the law the frontier uses).
  full_fit = _fit_or_note("L_N_Smin", table, notes, "L(N, S_min) on all runs", **fit_kw)
  if full_fit is not None:
    out["L_N_Smin"] = _fit_dict(full_fit)

  # --- L(N) on final losses.
  final = {"N": np.array([r["N"] for r in runs]), "L": np.array([r["loss"][-1] for r in runs]),
           "run": np.array([r["name"] for r in runs], dtype=object)}
  ln_fit = None
  if len(np.unique(final["N"])) >= 3:
    ln_fit = _fit_or_note("L_N", final, notes, "L(N) on final losses", **fit_kw)
  if ln_fit is not None:
    out["L_N_final"] = _fit_dict(ln_fit)
  main_fit = full_fit or heldout_fit
  if main_fit is not None:
    a = main_fit.params["alpha_N"]
    iv = (main_fit.intervals or {}).get("alpha_N", (math.nan, math.nan))
    out["alpha_N"] = {"value": a, "interval": list(iv), "level": level,
                      "source": "L(N, S_min) fit on all runs" if full_fit else
                      "L(N, S_min) fit without the largest model"}

  # --- B_crit(L) from the GNS.
  g_loss, g_b, g_idx = _gns_points(runs)
  bc_params = None
  out["b_simple_final"] = {
      r["name"]: (float(np.median(r["b_simple"][-max(1, len(r["b_simple"]) // 5):]))
                  if len(r["b_simple"]) else None) for r in runs}
  if len(g_loss) >= 3:
    try:
      pl = fit_b_crit_power_law(g_loss, g_b)
      bc_params = {"B_star": pl.b_star, "alpha_B": pl.alpha_b}
      out["B_crit"] = {"B_star": pl.b_star, "B_star_interval": [pl.b_star_lo, pl.b_star_hi],
                       "alpha_B": pl.alpha_b,
                       "alpha_B_interval": [pl.alpha_b_lo, pl.alpha_b_hi],
                       "n_points": int(len(g_loss)), "source": "GNS B_simple (tokens) vs loss",
                       "note": "points within a run are correlated (EMA): intervals are a guide"}
    except BatchSweepError as e:
      med = float(np.median(g_b))
      bc_params = {"B_star": med, "alpha_B": FLAT_ALPHA_B}
      out["B_crit"] = {"B_star": med, "B_star_interval": [float(np.percentile(g_b, 2.5)),
                                                         float(np.percentile(g_b, 97.5))],
                       "alpha_B": None, "alpha_B_interval": [None, None],
                       "n_points": int(len(g_loss)),
                       "source": "median GNS B_simple (tokens); no trend with the loss"}
      notes.append(f"B_crit(L) from GNS: {e}; the frontier uses a constant B_crit = the "
                   f"median B_simple, {med:.3g} tokens")
  else:
    notes.append("no GNS points (gns.enabled=False?); the frontier uses Kaplan's B_crit(L)")
  out["_gns"] = {"loss": g_loss, "b_simple": g_b, "run": g_idx}

  # --- the compute-efficient frontier implied by the fits.
  if main_fit is not None:
    bc = bc_params or dict(frontier_lib.KAPLAN_B_CRIT)
    last = {}
    for run, c in zip(table["run"], table["C_min"]):
      last[run] = c  # rows are in step order: the run's total C_min
    c_runs = np.asarray(list(last.values()), float)
    budgets = np.geomspace(np.nanmin(c_runs) / 10, np.nanmax(c_runs) * 1e3, 25)
    try:
      front = frontier_lib.frontier(main_fit, bc, budgets)
      closed = frontier_lib.closed_form(main_fit, bc)
      out["frontier"] = {
          "b_crit_source": (out["B_crit"]["source"] if bc_params
                            else "Kaplan (B_*=2e8, alpha_B=0.21)"),
          "exponents": frontier_lib.fitted_exponents(front), "closed_form": closed,
          "points": {k: np.asarray(v).tolist() for k, v in front.items()}}
    except Exception as e:  # a degenerate fit (e.g. alpha -> 0) has no finite frontier
      notes.append(f"frontier: {type(e).__name__}: {e}")

  out["runs"] = [{
      "name": r["name"], "N": r["N"], "n_layer": r["n_layer"], "d_model": r["d_model"],
      "B_tokens": r["B"], "steps": int(r["steps"][-1]), "final_loss": float(r["loss"][-1]),
      "loss_key": r["loss_key"], "status": r["status"], "time_s": r["time_s"],
      "b_simple_final_tokens": out["b_simple_final"][r["name"]]} for r in runs]
  out["_runs"] = runs
  out["_table"] = table
  out["_fits"] = {"heldout": heldout_fit, "full": full_fit, "L_N": ln_fit,
                  "B_crit": bc_params}
  out["paper"] = paper_values()
  out["comparison"] = comparison_rows(out)
  out["environment"] = environment(runs)
  _ = s_min  # S_min per point is in the table (runs.run_rows); imported for the docs' sake
  return out


def comparison_rows(a: dict[str, Any]) -> list[dict[str, Any]]:
  """Rows (quantity, this study, interval, paper) for the report's key table."""
  paper = a["paper"]
  rows = []

  def add(key, label, value, interval=None):
    iv = list(interval) if interval is not None else [None, None]
    rows.append({"key": key, "quantity": label, "value": value, "lo": iv[0], "hi": iv[1],
                 "paper": paper.get(key)})

  for fit_key, label in (("L_N_Smin", "L(N,S_min) all runs"),):
    f = a.get(fit_key)
    if f:
      for p in ("alpha_N", "alpha_S", "N_c", "S_c"):
        add(f"L_N_Smin.{p}", f"{p}  [{label}]", f["params"][p],
            (f["intervals"] or {}).get(p))
  h = (a.get("heldout") or {}).get("fit")
  if h:
    for p in ("alpha_N", "alpha_S"):
      add(f"L_N_Smin.{p}", f"{p}  [L(N,S_min) w/o largest]", h["params"][p],
          (h["intervals"] or {}).get(p))
  f = a.get("L_N_final")
  if f:
    add("L_N.alpha_N", "alpha_N  [L(N) on final losses]", f["params"]["alpha_N"],
        (f["intervals"] or {}).get("alpha_N"))
  b = a.get("B_crit")
  if b:
    add("B_crit.B_star", "B_* tokens  [GNS]", b["B_star"], b["B_star_interval"])
    if b["alpha_B"] is not None:
      add("B_crit.alpha_B", "alpha_B  [GNS]", b["alpha_B"], b["alpha_B_interval"])
  fr = a.get("frontier")
  if fr:
    cf = fr["closed_form"]
    add("frontier.alpha_C_min", "alpha_C_min  [frontier]", cf["alpha_C_min"])
    add("frontier.p_N", "N_opt ∝ C_min^p_N  [frontier]", cf["p_N"])
    add("frontier.p_B", "B ∝ C_min^p_B  [frontier]", cf["p_B"])
    add("frontier.p_S", "S_min ∝ C_min^p_S  [frontier]", cf["p_S"])
  return rows


def environment(runs) -> dict[str, Any]:
  """Versions, devices and the base config of the study (from the runs' config.json)."""
  import matplotlib
  first = runs[0]
  env = {"python": platform.python_version(), "platform": platform.platform(),
         "numpy": np.__version__, "matplotlib": matplotlib.__version__,
         "training_versions": first.get("versions"), "devices": first.get("devices"),
         "base_config": first.get("config"), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
  seeds = sorted({(r.get("config") or {}).get("seed") for r in runs}, key=str)
  env["seeds"] = seeds
  try:
    import jax
    env["analysis_jax"] = jax.__version__
  except ImportError:
    pass
  return env


def public(a: dict[str, Any]) -> dict[str, Any]:
  """The JSON part of an analysis (drops the private '_' entries)."""
  return json.loads(json.dumps({k: v for k, v in a.items() if not k.startswith("_")},
                               default=rundir.json_default))



# ---------------------------------------------------------------------------- output

def _g(v) -> str:
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return "–"
  return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def key_table(a: dict[str, Any]) -> str:
  """The terminal summary: fitted values with intervals next to the paper's."""
  pct = f"{100 * a['level']:g}%"
  lines = [f"{'quantity':<44} {'this study':>11} {pct + ' interval':>22} {'paper':>9}"]
  for r in a["comparison"]:
    iv = f"[{_g(r['lo'])}, {_g(r['hi'])}]" if r["lo"] is not None else ""
    lines.append(f"{r['quantity']:<44} {_g(r['value']):>11} {iv:>22} {_g(r['paper']):>9}")
  h = a.get("heldout")
  if h:
    lines.append(
        f"held-out {h['run']} (N={h['N']:.3g}): predicted from the smaller models, its "
        f"learning curve is off by {100 * h['rms_rel_error']:.2f}% RMS over "
        f"{h['n_points']} points, {100 * h['final_rel_error']:+.2f}% at step "
        f"{h['final_step']:.0f} (predicted {h['final_loss_predicted']:.3f}, "
        f"observed {h['final_loss_observed']:.3f} nats)")
  return "\n".join(lines)


def _img(path: str) -> str:
  with open(path, "rb") as f:
    data = base64.b64encode(f.read()).decode("ascii")
  return f'<img src="data:image/png;base64,{data}" alt="{html.escape(os.path.basename(path))}">'


CAPTIONS = {
    "learning_curves.png": "Learning curves (validation loss vs step), coloured by "
                           "non-embedding parameters N.",
    "fit_extrapolation.png": "Left: L(N, S_min) fitted on all but the largest model (lines), "
                             "the data it was fitted to (dots), and its prediction of the "
                             "held-out largest model (dashed, with the bootstrap band) against "
                             "what that model did (black). Right: final losses vs N with the "
                             "L(N) fit and the converged-loss term (N_c/N)^alpha_N.",
    "b_simple.png": "Gradient noise scale B_simple (tokens) over training, and against the "
                    "loss with the fitted B_crit(L) = B_*/L^(1/alpha_B) and Kaplan's.",
    "frontier.png": "Compute-efficient frontier implied by the fits: the loss reachable at "
                    "each C_min (the runs' curves behind it) and the optimal model size.",
}


def write_report(a: dict[str, Any], out_dir: str) -> dict[str, str]:
  """Writes report.json, the PNGs and report.html into `out_dir`; returns their paths."""
  from scaling_jax import report_plots
  os.makedirs(out_dir, exist_ok=True)
  figs = report_plots.save_figures(a, out_dir)
  json_path = os.path.join(out_dir, "report.json")
  pub = public(a)
  pub["figures"] = {k: os.path.basename(v) for k, v in figs.items()}
  rundir.write_json_atomic(json_path, pub)
  html_path = os.path.join(out_dir, "report.html")
  with open(html_path, "w") as f:
    f.write(render_html(pub, figs))
  return {"html": html_path, "json": json_path, **figs}


def render_html(pub: dict[str, Any], figs: dict[str, str]) -> str:
  esc = html.escape
  pct = f"{100 * pub['level']:g}%"
  rows = "".join(
      f"<tr><td>{esc(r['quantity'])}</td><td>{_g(r['value'])}</td>"
      f"<td>{'[' + _g(r['lo']) + ', ' + _g(r['hi']) + ']' if r['lo'] is not None else ''}</td>"
      f"<td>{_g(r['paper'])}</td></tr>" for r in pub["comparison"])
  run_rows = "".join(
      f"<tr><td>{esc(r['name'])}</td><td>{r['N']:,.0f}</td><td>{r['n_layer']}</td>"
      f"<td>{r['d_model']}</td><td>{r['B_tokens']:,.0f}</td><td>{r['steps']}</td>"
      f"<td>{r['final_loss']:.4f}</td><td>{_g(r['b_simple_final_tokens'])}</td>"
      f"<td>{r['time_s']:.0f}</td><td>{esc(r['status'])}</td></tr>" for r in pub["runs"])
  h = pub.get("heldout")
  held = ""
  if h:
    held = (f"<p class='key'>Held-out extrapolation: fitted on the {len(pub['runs']) - 1} smaller "
            f"models, L(N, S_min) predicts the learning curve of <b>{esc(h['run'])}</b> "
            f"(N = {h['N']:,.0f}) with an RMS relative error of "
            f"<b>{100 * h['rms_rel_error']:.2f}%</b> over {h['n_points']} points and "
            f"<b>{100 * h['final_rel_error']:+.2f}%</b> at its last step "
            f"(predicted {h['final_loss_predicted']:.3f}, observed "
            f"{h['final_loss_observed']:.3f} nats/token).</p>")
  an = pub.get("alpha_N")
  alpha = ""
  if an:
    alpha = (f"<p class='key'>L(N) exponent α<sub>N</sub> = <b>{an['value']:.3f}</b> "
             f"({pct} interval [{_g(an['interval'][0])}, {_g(an['interval'][1])}]; "
             f"{esc(an['source'])}); paper: 0.076.</p>")
  figures = "".join(
      f"<figure>{_img(path)}<figcaption>{esc(CAPTIONS.get(os.path.basename(path), ''))}"
      f"</figcaption></figure>" for path in figs.values())
  notes = "".join(f"<li>{esc(n)}</li>" for n in pub["notes"]) or "<li>none</li>"
  env = esc(json.dumps(pub["environment"], indent=1, sort_keys=True, default=str))
  return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>scaling-jax report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:right}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}
figure{{margin:1.5em 0}}figcaption{{color:#555}}.key{{font-size:1.1em}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:0.8em}}</style></head><body>
<h1>Scaling study: {esc(os.path.basename(pub['study_dir'].rstrip('/')))}</h1>
{held}{alpha}
<h2>Fitted parameters vs Kaplan et al. (2020)</h2>
<table><tr><th>quantity</th><th>this study</th><th>{pct} interval (bootstrap)</th>
<th>paper</th></tr>{rows}</table>
<p>The paper's values are for WebText2 with a 50k BPE vocabulary at n_ctx = 1024: the scale
constants (N_c, S_c, B_*) depend on the data and tokenizer and are not expected to match;
the exponents are the comparable part.</p>
<h2>Figures</h2>{figures}
<h2>Runs</h2><table><tr><th>run</th><th>N</th><th>n_layer</th><th>d_model</th>
<th>B (tokens)</th><th>steps</th><th>final loss</th><th>B_simple (tokens, end)</th>
<th>train time (s)</th><th>status</th></tr>{run_rows}</table>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Environment and config</h2><pre>{env}</pre>
</body></html>
"""


def report(study_dir: str, out_dir: str | None = None, *, bootstrap: int = 200, seed: int = 0,
           b_crit: str = "none", stream=sys.stdout) -> dict[str, Any]:
  """analyze + write_report + the key table on `stream`; returns the analysis."""
  a = analyze(study_dir, bootstrap=bootstrap, seed=seed, b_crit=b_crit)
  paths = write_report(a, out_dir or os.path.join(study_dir, REPORT_DIR))
  a["_paths"] = paths
  if stream is not None:
    stream.write(key_table(a) + "\n")
    for n in a["notes"]:
      stream.write(f"note: {n}\n")
    stream.write(f"report: {paths['html']}\n")
  return a


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(
      prog="scaling-jax report",
      description="Fit L(N, S_min), extrapolate to the largest model, B_crit from the GNS, "
                  "the frontier; write STUDY/report/report.html (+ PNGs, report.json).")
  parser.add_argument("study", help="a sweep directory of run directories")
  parser.add_argument("--out", default=None, help="report directory (default STUDY/report)")
  parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--s-min-b-crit", default="none", choices=("none", "gns", "kaplan"),
                      help="B_crit used for S_min = S/(1+B_crit/B) in the L(N, S_min) fit")
  args = parser.parse_args(argv)
  from scaling_jax.scaling.laws import FitError
  try:
    report(args.study, args.out, bootstrap=args.bootstrap, seed=args.seed,
           b_crit=args.s_min_b_crit)
  except (ReportError, FitError) as e:
    print(f"scaling-jax report: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
