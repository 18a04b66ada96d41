"""`scaling-jax report STUDY_DIR`: a study's analysis as HTML + PNG + JSON.

The analysis is `scaling.study.analyze_study` -- the same one `scaling-jax fit DIR` and the
demo run, so all three print the same numbers: B_crit(L) chosen once (default: the law
fitted to the pooled GNS), L(N, S_min) on every run, its extrapolation to the held-out
largest model with B_crit from the GNS, from Kaplan and with no adjustment side by side,
L(N) on the final losses and the compute-efficient frontier. This module only renders
that typed result: `write_report` writes STUDY/report/{report.html, report.json, *.png}.
Runs whose status.json says failed are left out (named in a warning); a study none of whose
runs finished is refused (`study.select_runs`, as `scaling-jax fit` does).
The HTML embeds its figures, so it can be mailed as one file; the PNGs lie beside it.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
import platform
import sys
import time
from typing import Any, TextIO

import numpy as np

from scaling_jax import errors, preflight, rundir
from scaling_jax.scaling import bcrit as bcrit_lib
from scaling_jax.scaling import isoflop
from scaling_jax.scaling import reference
from scaling_jax.scaling import study as study_lib
from scaling_jax.scaling.laws import FitError

REPORT_DIR = "report"


def paper_values() -> dict[str, float]:
  """Kaplan et al.'s constants for the report's comparison table (kaplan2020.json)."""
  ref = reference.kaplan()
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


def comparison_rows(d: dict[str, Any], paper: dict[str, float]) -> list[dict[str, Any]]:
  """Rows (quantity, this study, interval, paper) for the report's key table, from the
  analysis as JSON (`StudyAnalysis.to_dict`)."""
  rows = []

  def add(key, label, value, interval=None):
    iv = list(interval) if interval is not None else [None, None]
    rows.append({"key": key, "quantity": label, "value": value, "lo": iv[0], "hi": iv[1],
                 "paper": paper.get(key)})

  f = d.get("L_N_Smin")
  if f:
    for p in ("alpha_N", "alpha_S", "N_c", "S_c"):
      add(f"L_N_Smin.{p}", f"{p}  [L(N,S_min) all runs]", f["params"][p],
          (f["intervals"] or {}).get(p))
  main = (d.get("heldout") or {}).get(d["b_crit"]["source"])
  if main:
    for p in ("alpha_N", "alpha_S"):
      add(f"L_N_Smin.{p}", f"{p}  [L(N,S_min) w/o largest]", main["fit"]["params"][p],
          (main["fit"]["intervals"] or {}).get(p))
  f = d.get("L_N_final")
  if f:
    add("L_N.alpha_N", "alpha_N  [L(N) on final losses]", f["params"]["alpha_N"],
        (f["intervals"] or {}).get("alpha_N"))
  b = d["b_crit"]
  if b["B_star"] is not None:
    add("B_crit.B_star", f"B_* tokens  [B_crit: {b['source']}]", b["B_star"],
        b["B_star_interval"])
  if b["alpha_B"] is not None and math.isfinite(b["alpha_B"]):
    add("B_crit.alpha_B", f"alpha_B  [B_crit: {b['source']}]", b["alpha_B"],
        b["alpha_B_interval"])
  fr = d.get("frontier")
  if fr:
    cf = fr.get("closed_form") or fr["exponents"]
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
         "training_versions": first.versions, "devices": first.devices,
         "base_config": first.config, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
         "seeds": sorted({r.config.get("seed") for r in runs}, key=str)}
  try:
    import jax
    env["analysis_jax"] = jax.__version__
  except ImportError:
    pass
  return env


def report_json(a: study_lib.StudyAnalysis) -> dict[str, Any]:
  """The report's JSON: the analysis, the paper's values, the key table and the environment."""
  d = a.to_dict()
  d["paper"] = paper_values()
  d["comparison"] = comparison_rows(d, d["paper"])
  d["environment"] = environment(a.runs)
  return json.loads(json.dumps(d, default=rundir.json_default))


# ---------------------------------------------------------------------------- output

def _g(v) -> str:
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return "–"
  return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def heldout_lines(pub: dict[str, Any]) -> list[str]:
  """One line per B_crit choice: how well L(N, S_min) from the smaller models predicts the
  largest model's curve."""
  lines = []
  for key, h in (pub.get("heldout") or {}).items():
    band = h["fraction_in_band"]
    lines.append(
        f"held-out {h['run']} (N={h['N']:.3g}), S_min with B_crit {key:<8}: "
        f"{100 * h['rms_rel_error']:.2f}% RMS over {h['n_points']} points, "
        f"{100 * h['final_rel_error']:+.2f}% at step {h['final_step']:.0f} (predicted "
        f"{h['final_loss_predicted']:.3f} [{_g(h['final_loss_band'][0])}, "
        f"{_g(h['final_loss_band'][1])}], observed {h['final_loss_observed']:.3f}); "
        + (f"{100 * band:.0f}% of its points inside the {100 * pub['level']:g}% prediction "
           "band" if band is not None else "no band (bootstrap 0)"))
  return lines


def key_table(pub: dict[str, Any]) -> str:
  """The terminal summary: fitted values with intervals next to the paper's."""
  pct = f"{100 * pub['level']:g}%"
  lines = [f"B_crit(L): {pub['b_crit']['description']}",
           f"{'quantity':<44} {'this study':>11} {pct + ' interval':>22} {'paper':>9}"]
  for r in pub["comparison"]:
    iv = f"[{_g(r['lo'])}, {_g(r['hi'])}]" if r["lo"] is not None else ""
    lines.append(f"{r['quantity']:<44} {_g(r['value']):>11} {iv:>22} {_g(r['paper']):>9}")
  return "\n".join(lines + heldout_lines(pub))


def _img(path: str) -> str:
  data = base64.b64encode(rundir.read_bytes(path)).decode("ascii")
  return f'<img src="data:image/png;base64,{data}" alt="{html.escape(os.path.basename(path))}">'


CAPTIONS = {
    "learning_curves.png": "Learning curves (validation loss vs step), coloured by "
                           "non-embedding parameters N.",
    "fit_extrapolation.png": "Left: L(N, S_min) fitted on all but the largest model (lines), "
                             "the data it was fitted to (dots), and its prediction of the "
                             "held-out largest model (dashed, with the bootstrap prediction "
                             "band) against what that model did (black). Right: final losses "
                             "vs N with the L(N) fit and the converged-loss term "
                             "(N_c/N)^alpha_N.",
    "b_simple.png": "Gradient noise scale B_simple (tokens) over training, and against the "
                    "loss: the readings the B_crit(L) law was fitted to (filled), those left "
                    "out (open: warmup, or LR below a tenth of its peak), the study's law at "
                    "the peak LR (B_simple also grows as the schedule anneals: the fit takes "
                    "that out with a (LR/peak)^-gamma term) and Kaplan's.",
    "frontier.png": "Compute-efficient frontier implied by the fits: the loss reachable at "
                    "each C_min (the runs' curves behind it) and the optimal model size.",
    "isoflop_frontiers.png": "IsoFLOP sweep. Left: final loss vs N per budget, Approach 2's "
                             "parabolas and their vertices (stars). Right: N_opt(C) of each "
                             "method (Approaches 1-3, VPNLS, Kaplan's), with the exponent and "
                             "its 95% bootstrap interval; grey: slopes 0.73 (Kaplan et al.) "
                             "and 0.50 (Hoffmann et al.).",
}


def _iv(t) -> str:
  return f"[{t[0]:.3f}, {t[1]:.3f}]" if t else "–"


def isoflop_html(iso: dict[str, Any]) -> str:
  """The IsoFLOP section: each method's exponents with their bootstrap intervals beside
  the published ones, the compute wasted between methods, and Approach 2's warnings."""
  esc = html.escape
  rows = "".join(
      f"<tr><td>{esc(al['label'])}</td><td>{al['a']:.3f}</td><td>{_iv(al['a_interval'])}</td>"
      f"<td>{al['b']:.3f}</td><td>{_iv(al['b_interval'])}</td>"
      f"<td>{al['bootstrap_ok']}/{al['bootstrap']}</td></tr>"
      for al in iso["allocations"].values())
  rows += "".join(f"<tr><td>{esc(isoflop.LABELS.get(m, m))}</td><td colspan='5'>not fitted: "
                  f"{esc(why)}</td></tr>" for m, why in iso["errors"].items())
  rows += "".join(f"<tr><td>{esc(isoflop.PUBLISHED_LABELS[key])} (published)</td>"
                  f"<td>{a:.2f}</td><td></td><td>{1 - a:.2f}</td><td></td><td></td></tr>"
                  for key, a in iso["published_a"].items())
  waste = ""
  if iso.get("waste"):
    ms = list(iso["waste"])
    head = "".join(f"<th>{esc(m)} right</th>" for m in ms)
    body = "".join(f"<tr><td>following {esc(x)}</td>" + "".join(
        f"<td>{100 * iso['waste'][x][y]:.1f}%</td>" for y in ms) + "</tr>" for x in ms)
    waste = (f"<p>Compute wasted by following one method's N_opt where another is right, at "
             f"C = {iso['compute_ref']:.3g} (Approach 3's L(N, D) re-centred on the right "
             f"one):</p><table><tr><th></th>{head}</tr>{body}</table>")
  warns = [w for p in iso["profiles"] for w in p["warnings"]] + iso["warnings"]
  notes = "".join(f"<li>{esc(w)}</li>" for w in dict.fromkeys(warns)) or "<li>none</li>"
  return (f"<h2>Compute-optimal allocation: IsoFLOP sweep ({iso['n_runs']} runs, FLOPs: "
          f"{esc(iso['flop_convention'])})</h2>"
          "<table><tr><th>method</th><th>a (N_opt ∝ C^a)</th><th>95% interval</th>"
          "<th>b (D_opt ∝ C^b)</th><th>95% interval</th><th>resamples fitted</th></tr>"
          f"{rows}</table><p>Intervals: percentiles over bootstrap resamples of whole runs "
          f"within each budget.</p>{waste}<p>Warnings:</p><ul>{notes}</ul>")


def write_report(a: study_lib.StudyAnalysis, out_dir: str,
                 sweep: isoflop.IsoflopSweep | None = None) -> dict[str, str]:
  """Writes report.json, the PNGs and report.html into `out_dir` (with the IsoFLOP section
  and figure for an IsoFLOP `sweep`); returns their paths."""
  from scaling_jax import report_plots
  out_dir = str(out_dir).rstrip("/")
  figs = report_plots.save_figures(a, out_dir, sweep=sweep)
  json_path = f"{out_dir}/report.json"
  pub = report_json(a)
  if sweep is not None:
    pub["isoflop"] = json.loads(json.dumps(sweep.to_dict(), default=rundir.json_default))
  pub["figures"] = {k: os.path.basename(v) for k, v in figs.items()}
  rundir.write_json_atomic(json_path, pub)
  html_path = f"{out_dir}/report.html"
  rundir.write_text(html_path, render_html(pub, figs))
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
      f"<td>{_g(r['final_loss'])}</td><td>{_g(r['b_simple_final_tokens'])}</td>"
      f"<td>{r['time_s']:.0f}</td><td>{esc(r['status'])}</td></tr>" for r in pub["runs"])
  held_rows = "".join(
      f"<tr><td>{esc(k)}{' (used)' if k == pub['b_crit']['source'] else ''}</td>"
      f"<td>{100 * h['rms_rel_error']:.2f}%</td><td>{100 * h['final_rel_error']:+.2f}%</td>"
      f"<td>{h['final_loss_predicted']:.3f} [{_g(h['final_loss_band'][0])}, "
      f"{_g(h['final_loss_band'][1])}]</td><td>{h['final_loss_observed']:.3f}</td>"
      f"<td>{_g(100 * h['fraction_in_band']) + '%' if h['fraction_in_band'] is not None else '–'}"
      f"</td><td>{_g(h['fit']['params']['alpha_S'])}</td></tr>"
      for k, h in (pub.get("heldout") or {}).items())
  held = ""
  main = (pub.get("heldout") or {}).get(pub["b_crit"]["source"])
  if main:
    held = (f"<p class='key'>Held-out extrapolation: fitted on the {len(pub['runs']) - 1} smaller "
            f"models, L(N, S_min) predicts the learning curve of <b>{esc(main['run'])}</b> "
            f"(N = {main['N']:,.0f}) with an RMS relative error of "
            f"<b>{100 * main['rms_rel_error']:.2f}%</b> over {main['n_points']} points and "
            f"<b>{100 * main['final_rel_error']:+.2f}%</b> at its last step; "
            f"<b>{_g(100 * (main['fraction_in_band'] or 0))}%</b> of its points lie inside "
            f"the {pct} prediction band.</p>")
  held_table = ""
  if held_rows:
    held_table = (
        "<h2>Held-out model: S_min from the GNS, from Kaplan, and unadjusted</h2>"
        "<table><tr><th>B_crit(L) for S_min</th><th>RMS error</th><th>error at the end</th>"
        f"<th>predicted final loss [{pct} band]</th><th>observed</th><th>points in band</th>"
        f"<th>α_S</th></tr>{held_rows}</table>"
        "<p>Each row refits L(N, S_min) on the smaller models with S_min = S/(1 + B_crit(L)/B) "
        "from that B_crit(L) (the GNS law refitted on the smaller models' readings only). "
        "The band is a bootstrap prediction band: the law's uncertainty times the noise of a "
        "new run (its own offset and AR(1) noise, estimated from the fit's residuals); "
        "bench/bench_coverage.py measures how often such bands hold a held-out curve.</p>")
  fit = pub.get("L_N_Smin") or {}
  interval_note = (f"<p>Intervals: {pct} bootstrap, {pub['bootstrap']} resamples, "
                   f"resampling {esc(str(fit.get('resample')))} (see BENCHMARKS.md "
                   "\"Interval coverage\").</p>") if fit else ""
  an = fit.get("params", {}).get("alpha_N") if fit else None
  alpha = ""
  if an is not None:
    iv = (fit.get("intervals") or {}).get("alpha_N", [None, None])
    alpha = (f"<p class='key'>L(N, S_min) exponent α<sub>N</sub> = <b>{an:.3f}</b> "
             f"({pct} interval [{_g(iv[0])}, {_g(iv[1])}]); paper: 0.076. B_crit(L): "
             f"{esc(pub['b_crit']['description'])}.</p>")
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
<h1>Scaling study: {esc(os.path.basename(str(pub['source']).rstrip('/')))}</h1>
{held}{alpha}
<h2>Fitted parameters vs Kaplan et al. (2020)</h2>
<table><tr><th>quantity</th><th>this study</th><th>{pct} interval (bootstrap)</th>
<th>paper</th></tr>{rows}</table>{interval_note}
<p>The paper's values are for WebText2 with a 50k BPE vocabulary at n_ctx = 1024: the scale
constants (N_c, S_c, B_*) depend on the data and tokenizer and are not expected to match;
the exponents are the comparable part.</p>
{held_table}{isoflop_html(pub["isoflop"]) if pub.get("isoflop") else ""}
<h2>Figures</h2>{figures}
<h2>Runs</h2><table><tr><th>run</th><th>N</th><th>n_layer</th><th>d_model</th>
<th>B (tokens)</th><th>steps</th><th>final loss</th><th>B_simple (tokens, end)</th>
<th>train time (s)</th><th>status</th></tr>{run_rows}</table>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Environment and config</h2><pre>{env}</pre>
</body></html>
"""


def report(study_dir: str, out_dir: str | None = None, *, bootstrap: int = 200, seed: int = 0,
           b_crit: bcrit_lib.Spec = "gns", stream: TextIO | None = sys.stdout
           ) -> tuple[study_lib.StudyAnalysis, dict[str, str]]:
  """analyze_study of the study's `study.select_runs` (and `isoflop.analyze_sweep` where the runs
  form an IsoFLOP sweep, with the study's B_crit(L) for Kaplan's frontier) + write_report +
  the key tables on `stream` (None: nothing); returns (analysis, paths).

  Failed runs left out are named in one warning line on stderr once the analysis stands, or
  at the end of the FitError's one line when it does not."""
  notes: list[str] = []
  runs, left_out = study_lib.select_runs(study_dir, notes)
  try:
    a = study_lib.analyze_study(runs, b_crit=b_crit, bootstrap=bootstrap, seed=seed)
  except FitError as e:
    if not left_out:
      raise
    raise FitError(f"{errors.one_line(e)}; {left_out}") from None
  if left_out:
    notes.append(left_out)
    print(f"scaling-jax report: warning: {left_out}", file=sys.stderr, flush=True)
  a = dataclasses.replace(a, source=str(study_dir), notes=notes + a.notes)
  sweep = isoflop.analyze_sweep(a.runs, n_boot=bootstrap, seed=seed, b_crit=a.b_crit)
  paths = write_report(a, out_dir or f"{str(study_dir).rstrip('/')}/{REPORT_DIR}", sweep)
  if stream is not None:
    stream.write(key_table(rundir.read_json(paths["json"])) + "\n")
    if sweep is not None:
      stream.write(f"IsoFLOP sweep (FLOPs: {sweep.convention}):\n{sweep.analysis.table()}\n")
    for n in a.notes:
      stream.write(f"note: {n}\n")
    stream.write(f"report: {paths['html']}\n")
  return a, paths


@errors.boundary("report")
def main(argv: list[str]) -> int:
  parser = errors.ArgumentParser(
      prog="scaling-jax report",
      description="The study analysis (B_crit(L), L(N, S_min), held-out extrapolation, "
                  "L(N), frontier) as STUDY/report/report.html (+ PNGs, report.json).")
  parser.add_argument("study", help="a sweep directory of run directories")
  parser.add_argument("--out", default=None, help="report directory (default STUDY/report)")
  parser.add_argument("--bootstrap", type=errors.non_negative_int, default=200,
                      help="bootstrap resamples")
  parser.add_argument("--seed", type=errors.non_negative_int, default=0)
  parser.add_argument("--b-crit", default="gns", metavar="{gns,sweep,kaplan,none,NUMBER}",
                      help="B_crit(L) for S_min, C_min and the frontier: the law fitted to "
                           "the runs' pooled GNS (default), a batch-size sweep, Kaplan's, no "
                           "adjustment, or a constant in tokens")
  args = parser.parse_args(argv)
  b_crit = bcrit_lib.parse_spec(args.b_crit)
  if not rundir.is_dir(args.study):
    raise FitError(f"{args.study!r} is not a directory; pass a sweep directory of run "
                   "directories")
  preflight.check_output_dir(args.out or f"{str(args.study).rstrip('/')}/{REPORT_DIR}", "--out")
  # sys.stdout as it is now (the default argument is the one at import, which a test's
  # capture may have replaced and closed since)
  report(args.study, args.out, bootstrap=args.bootstrap, seed=args.seed, b_crit=b_crit,
         stream=sys.stdout)
  return 0


if __name__ == "__main__":
  sys.exit(main())
