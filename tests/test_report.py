"""The report on synthetic run directories drawn from a known L(N, S_min) and B_crit(L):
the fits recover the law, the held-out extrapolation is accurate, and every figure plots
exactly the data in the runs' metrics (read back from the matplotlib Line2D objects)."""

import json
import os

import numpy as np
import pytest

from scaling_jax import metrics as metrics_lib
from scaling_jax import report, report_plots, rundir
from scaling_jax.scaling import cli as fit_cli
from scaling_jax.scaling import isoflop
from scaling_jax.scaling import runs as runs_lib
from scaling_jax.scaling import study as study_lib

TRUE = {"N_c": 1e9, "S_c": 300.0, "alpha_N": 0.08, "alpha_S": 0.7}
B_STAR, ALPHA_B = 3e4, 0.21
B_TOKENS = 4096.0
SHAPES = [(2, 32), (2, 48), (3, 64), (4, 96), (4, 128)]
STEPS = np.arange(20, 2001, 20)


def _loss(n, s):
  """The loss at step s: L = law(N, S_min) with S_min from B_crit(L) (fixed point)."""
  loss = (TRUE["N_c"] / n) ** TRUE["alpha_N"] + (TRUE["S_c"] / s) ** TRUE["alpha_S"]
  for _ in range(50):
    bc = B_STAR * loss ** (-1 / ALPHA_B)
    smin = s / (1 + bc / B_TOKENS)
    loss = (TRUE["N_c"] / n) ** TRUE["alpha_N"] + (TRUE["S_c"] / smin) ** TRUE["alpha_S"]
  return loss, B_STAR * loss ** (-1 / ALPHA_B)


def write_fake_study(root, noise=0.003):
  rng = np.random.default_rng(0)
  for n_layer, d in SHAPES:
    n = 12 * n_layer * d * d
    run = os.path.join(root, f"L{n_layer}_d{d}")
    os.makedirs(run)
    rundir.write_json_atomic(os.path.join(run, rundir.CONFIG_FILE), {
        "config": {"seed": 0, "model": {"n_layer": n_layer, "d_model": d},
                   "optim": {"warmup_steps": 40}},
        "facts": {"n_params": n, "batch_tokens": B_TOKENS, "num_steps": int(STEPS[-1]),
                  "flops_per_token": 6.0 * n},
        "versions": {"jax": "test"}, "devices": {"platform": "cpu"}})
    w = metrics_lib.MetricsWriter(run, tensorboard=False)
    for s in STEPS:
      loss, bc = _loss(n, float(s))
      loss *= float(np.exp(noise * rng.normal()))
      w.write({"step": int(s), "tokens": s * B_TOKENS, "flops": 6.0 * n * s * B_TOKENS,
               "loss": loss * 1.01, "eval/validation/loss": loss, "gns/b_simple_tokens": bc,
               "time_s": float(s)})
    rundir.write_status(run, "finished", step=int(STEPS[-1]))
  return root


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  root = write_fake_study(str(tmp_path_factory.mktemp("study") / "runs"))
  a = study_lib.analyze_study(root, bootstrap=24, b_crit="gns")
  paths = report.write_report(a, os.path.join(root, "report"))
  return root, a, paths


@pytest.mark.slow  # the module's fits take ~30 s on 2 cores
def test_fit_recovers_law_and_extrapolates(study):
  _, a, _ = study
  p = a.fit.params
  for k in ("alpha_N", "alpha_S"):
    assert p[k] == pytest.approx(TRUE[k], rel=0.05), k
  lo, hi = a.fit.intervals["alpha_N"]
  assert lo <= p["alpha_N"] <= hi and hi > lo
  assert a.fit.resample == "parametric"
  h = a.heldout["gns"].to_dict()
  assert h["run"] == "L4_d128" and h["rms_rel_error"] < 0.01 and abs(h["final_rel_error"]) < 0.01
  assert h["fraction_in_band"] > 0.9
  assert set(a.heldout) == {"gns", "kaplan", "none"}
  # The data were made with B_crit(L) = 3e4/L^(1/0.21): with Kaplan's (far larger) B_crit
  # or none, S_min is wrong and the held-out curve is predicted worse.
  for other in ("kaplan", "none"):
    assert a.heldout[other].to_dict()["rms_rel_error"] > h["rms_rel_error"]
  assert a.b_crit.alpha_b == pytest.approx(ALPHA_B, rel=0.05)
  assert a.b_crit.b_star == pytest.approx(B_STAR, rel=0.2)
  cf = a.frontier["closed_form"]
  assert cf["alpha_C_min"] == pytest.approx(
      1 / (1 / p["alpha_S"] + 1 / a.b_crit.alpha_b + 1 / p["alpha_N"]), rel=1e-6)
  pub = report.report_json(a)
  keys = {r["key"] for r in pub["comparison"]}
  assert {"L_N_Smin.alpha_N", "B_crit.alpha_B", "frontier.p_N"} <= keys
  assert all(r["paper"] is not None for r in pub["comparison"])


def _line(fig, gid):
  for ax in fig.axes:
    for line in ax.get_lines():
      if line.get_gid() == gid:
        return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
  raise AssertionError(f"no line with gid {gid}")


@pytest.mark.slow  # the module's fits take ~30 s on 2 cores
def test_figures_plot_the_metrics(study):
  root, a, _ = study
  figs = report_plots.make_figures(a)
  for run in rundir.find_runs(root):
    name = os.path.basename(run)
    recs = metrics_lib.read_metrics(run)
    steps, loss = metrics_lib.series(recs, "eval/validation/loss")
    x, y = _line(figs["learning_curves.png"], f"curve:{name}")
    np.testing.assert_array_equal(x, steps)
    np.testing.assert_array_equal(y, loss)
    gs, gv = metrics_lib.series(recs, "gns/b_simple_tokens")
    x, y = _line(figs["b_simple.png"], f"gns:{name}")
    np.testing.assert_array_equal(x, gs)
    np.testing.assert_array_equal(y, gv)
    x, y = _line(figs["frontier.png"], f"run_compute:{name}")
    n = [r.n_params for r in a.runs if r.name == name][0]
    np.testing.assert_allclose(x, np.asarray(steps) * B_TOKENS * 6.0 * n)
  # The held-out model: observed = its eval losses after warmup; predicted = the law.
  big = os.path.join(root, "L4_d128")
  steps, loss = metrics_lib.series(metrics_lib.read_metrics(big), "eval/validation/loss")
  keep = np.asarray(steps) > 40
  _, y_obs = _line(figs["fit_extrapolation.png"], "heldout:observed")
  np.testing.assert_array_equal(y_obs, np.asarray(loss)[keep])
  x_pred, y_pred = _line(figs["fit_extrapolation.png"], "heldout:predicted")
  p = a.heldout["gns"].fit.params
  n = 12 * 4 * 128 ** 2
  np.testing.assert_allclose(y_pred, (p["N_c"] / n) ** p["alpha_N"]
                             + (p["S_c"] / x_pred) ** p["alpha_S"], rtol=1e-9)
  np.testing.assert_allclose(y_pred, y_obs, rtol=0.02)  # and it extrapolates well
  # Final losses vs N, and the frontier line equals the report's frontier points.
  x, y = _line(figs["fit_extrapolation.png"], "final")
  np.testing.assert_array_equal(y, [r.final() for r in a.runs])
  x, y = _line(figs["frontier.png"], "frontier_L")
  np.testing.assert_allclose(x, a.frontier["points"]["C_min"])
  np.testing.assert_allclose(y, a.frontier["points"]["L"])


@pytest.mark.slow  # the module's fits take ~30 s on 2 cores
def test_written_report(study):
  root, a, paths = study
  for name in report_plots.FIGURES:
    assert os.path.getsize(paths[name]) < 200_000
    with open(paths[name], "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  text = open(paths["html"]).read()
  assert text.count("data:image/png;base64,") == len(report_plots.FIGURES)
  assert "Held-out extrapolation" in text and "0.076" in text
  assert "S_min from the GNS, from Kaplan, and unadjusted" in text
  data = json.load(open(paths["json"]))
  assert data["heldout"]["gns"]["rms_rel_error"] == pytest.approx(
      a.heldout["gns"].to_dict()["rms_rel_error"])
  assert data["environment"]["training_versions"] == {"jax": "test"}
  assert data["b_crit"]["source"] == "gns"
  table = report.key_table(data)
  assert "alpha_N" in table and "held-out L4_d128" in table and "B_crit kaplan" in table


@pytest.mark.slow  # fits the study again through both command lines
def test_fit_and_report_commands_agree(study, tmp_path):
  """`scaling-jax fit DIR` and `scaling-jax report DIR` print one answer for one study."""
  root, _, _ = study
  assert report.main([root, "--out", str(tmp_path / "rep"), "--bootstrap", "24"]) == 0
  assert fit_cli.main([root, "--out", str(tmp_path / "fit"), "--bootstrap", "24",
                       "--no-plots"]) == 0
  rep = json.load(open(tmp_path / "rep" / "report.json"))
  fit = json.load(open(tmp_path / "fit" / "fit_report.json"))
  assert fit["params"] == rep["L_N_Smin"]["params"]
  assert fit["intervals"] == rep["L_N_Smin"]["intervals"]
  assert fit["b_crit"]["B_star"] == rep["b_crit"]["B_star"]
  assert fit["frontier"]["closed_form"] == rep["frontier"]["closed_form"]
  assert fit["frontier"]["points"] == rep["frontier"]["points"]


def test_report_cli_errors_on_empty_dir(tmp_path, capsys):
  assert report.main([str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "no run directories" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- IsoFLOP sweep

# A known L(N, D) = E + A/N^alpha + B/D^beta (alpha = beta: N_opt ∝ C^0.5), N counted as
# 6N+unembedding for one-layer models over a 512-token vocabulary (N = 12 d^2 + 512 d).
ISO = {"E": 1.5, "A": 20.0, "B": 80.0, "alpha": 0.3, "beta": 0.3}
ISO_BUDGETS = (2e11, 5e11, 1.25e12)
VOCAB = 512


def _iso_n(d):
  return 12 * d * d + VOCAB * d


def write_fake_isoflop_sweep(root, noise=0.002):
  """Per budget, five one-layer widths around the surface's optimum, each trained to the
  budget (eval every ~1/8 of its steps); the losses follow the surface at the tokens seen."""
  rng = np.random.default_rng(1)
  for c in ISO_BUDGETS:
    n_star = (ISO["A"] / ISO["B"]) ** (1 / 0.6) * (c / 6) ** 0.5
    d_star = (-VOCAB + np.sqrt(VOCAB ** 2 + 48 * n_star)) / 24
    for d in sorted({int(round(d_star * f)) for f in (0.45, 0.65, 1.0, 1.5, 2.2)}):
      n = _iso_n(d)
      steps = int(round(c / (6 * n * B_TOKENS)))
      run = os.path.join(root, f"c{c:.3g}_d{d}")
      os.makedirs(run)
      rundir.write_json_atomic(os.path.join(run, rundir.CONFIG_FILE), {
          "config": {"seed": 0, "model": {"n_layer": 1, "d_model": d, "d_ff": 4 * d,
                                          "n_heads": 1, "n_ctx": 128, "vocab_size": VOCAB,
                                          "tie_embeddings": True},
                     "optim": {"warmup_steps": steps // 10}},
          "facts": {"n_params": 12 * d * d, "batch_tokens": B_TOKENS, "num_steps": steps,
                    "flops_per_token": 6.0 * 12 * d * d},
          "versions": {"jax": "test"}, "devices": {"platform": "cpu"}})
      w = metrics_lib.MetricsWriter(run, tensorboard=False)
      for s in np.unique(np.linspace(steps / 8, steps, 8).round().astype(int)):
        tokens = s * B_TOKENS
        loss = (ISO["E"] + ISO["A"] / n ** ISO["alpha"] + ISO["B"] / tokens ** ISO["beta"]) \
            * float(np.exp(noise * rng.normal()))
        w.write({"step": int(s), "tokens": tokens, "flops": 6.0 * 12 * d * d * tokens,
                 "loss": loss, "eval/validation/loss": loss, "time_s": float(s)})
      rundir.write_status(run, "finished", step=steps)
  return root


@pytest.fixture(scope="module")
def iso_sweep(tmp_path_factory):
  """The fake sweep read as an IsoFLOP sweep, with the methods that fit in a second (the
  full report, Approach 3 and Kaplan's included, is the slow test below)."""
  root = write_fake_isoflop_sweep(str(tmp_path_factory.mktemp("iso") / "runs"))
  convention, data = isoflop.detect_convention(runs_lib.read_runs([root]))
  analysis = isoflop.analyze(data, n_boot=20, methods=("approach1", "approach2", "vpnls"))
  return root, isoflop.IsoflopSweep(convention, data, analysis)


def test_isoflop_figure_and_table_show_every_frontier(iso_sweep):
  _, sweep = iso_sweep
  assert sweep.convention == "6N+unembedding" and len(sweep.data) == 15
  al = sweep.analysis.allocations
  for m in ("approach2", "vpnls"):
    assert al[m].a == pytest.approx(0.5, abs=0.03), m
    assert al[m].a_interval[0] < al[m].a < al[m].a_interval[1], m
  assert not any("off centre" in w for p in sweep.analysis.profiles for w in p.warnings)
  fig = report_plots.plot_isoflop(sweep)
  for m, alloc in al.items():
    x, y = _line(fig, f"frontier:{m}")
    np.testing.assert_allclose(y, alloc.n_opt(x))
  for p in sweep.analysis.profiles:
    x, y = _line(fig, f"profile:{p.C:g}")
    np.testing.assert_array_equal(y, p.L)
  for p in (0.73, 0.5):
    x, y = _line(fig, f"slope:{p:g}")
    assert np.log(y[-1] / y[0]) / np.log(x[-1] / x[0]) == pytest.approx(p)
  text = report.isoflop_html(json.loads(json.dumps(sweep.to_dict(),
                                                   default=rundir.json_default)))
  lo, hi = al["approach2"].a_interval
  assert f"<td>{al['approach2'].a:.3f}</td><td>[{lo:.3f}, {hi:.3f}]</td>" in text
  assert "Kaplan et al. 2020 (published)</td><td>0.73" in text
  assert "Hoffmann et al. 2022 (published)</td><td>0.50" in text


@pytest.mark.slow  # the study analysis and Approach 3: 73 s on 2 cores under load
def test_report_on_an_isoflop_sweep_adds_its_section(iso_sweep, tmp_path):
  root, _ = iso_sweep
  _, paths = report.report(root, str(tmp_path / "rep"), bootstrap=4, b_crit="kaplan",
                           stream=None)
  iso = json.load(open(paths["json"]))["isoflop"]
  assert set(iso["allocations"]) | set(iso["errors"]) == set(isoflop.METHODS)
  assert iso["allocations"]["approach3"]["a"] == pytest.approx(0.5, abs=0.03)
  text = open(paths["html"]).read()
  assert text.count("data:image/png;base64,") == len(report_plots.FIGURES) + 1
  assert "Compute-optimal allocation: IsoFLOP sweep" in text


def test_runs_without_several_sizes_per_budget_are_no_isoflop_sweep(iso_sweep):
  runs = runs_lib.read_runs([iso_sweep[0]])
  assert isoflop.detect_convention(runs)[0] == "6N+unembedding"
  first_of_each_budget = list({r.name.split("_")[0]: r for r in runs}.values())
  assert len(first_of_each_budget) == 3
  assert isoflop.detect_convention(first_of_each_budget) is None  # a size ladder's shape
  one_budget = [r for r in runs if r.name.startswith("c5e+11")]
  assert len(one_budget) == 5 and isoflop.detect_convention(one_budget) is None
