"""Critical-batch-size analysis: s_min/c_min, S_min/E_min/B_crit fits, power law, plots, bad input.

Synthetic sweeps satisfy the paper's trade-off exactly: with
S_min(L) = S_c (L − L_N)^(−1/α_S) and B_crit(L) = B_* / L^(1/α_B), a run at batch B reaches
L after S(L; B) = S_min(L) (1 + B_crit(L)/B) steps, i.e. (S/S_min − 1)(E/E_min − 1) = 1.
"""

import json
import math
import os

import numpy as np
import pytest

from scaling_jax import metrics as metrics_lib
from scaling_jax import rundir
from scaling_jax.scaling import batch
from scaling_jax.scaling import batch_plots, bcrit, runs

L_N, S_C, ALPHA_S = 2.5, 2.1e3, 0.76
B_STAR, ALPHA_B = 2e8, 0.21
BATCHES = [2.0**k for k in range(14, 21)]  # 16k .. 1M tokens
LEVELS = np.array([4.6, 4.3, 4.0, 3.7, 3.4])


def true_s_min(loss):
  return S_C * (np.asarray(loss) - L_N) ** (-1 / ALPHA_S)


def true_steps(loss, b):
  return true_s_min(loss) * (1 + batch.b_crit_kaplan(loss, B_STAR, ALPHA_B) / b)


def synthetic_curve(b, n=3000, extra_levels=LEVELS):
  """A learning curve at batch b whose crossings of `extra_levels` are exact grid points."""
  loss = np.unique(np.concatenate([np.linspace(3.2, 6.0, n), extra_levels]))[::-1]
  return batch.Curve(b, true_steps(loss, b), loss, name=f"b{int(b)}")


# ------------------------------------------------------------------ s_min / c_min / Kaplan


def test_s_min_c_min_hand_values():
  # S=1000 steps at B=1e5 with B_crit=3e5: 1000 / (1 + 3) = 250.
  assert batch.s_min(1000, 1e5, 3e5) == pytest.approx(250.0)
  # C=6e18 at B=1e5, B_crit=3e5: 6e18 / (1 + 1/3) = 4.5e18.
  assert batch.c_min(6e18, 1e5, 3e5) == pytest.approx(4.5e18)
  # B = B_crit: both halve.
  np.testing.assert_allclose(batch.s_min([10, 20], 5e5, 5e5), [5, 10])
  np.testing.assert_allclose(batch.c_min([10, 20], 5e5, 5e5), [5, 10])
  # Kaplan at L = 2 nats: 2e8 / 2^(1/0.21) = 2e8 / 27.13 = 7.371e6 tokens.
  assert batch.b_crit_kaplan(2.0) == pytest.approx(2e8 / 2 ** (1 / 0.21))
  assert batch.b_crit_kaplan(2.0) == pytest.approx(7.371e6, rel=1e-4)


def test_s_min_c_min_invert_the_hyperbola():
  """On S = S_min + E_min/B, s_min gives S_min and c_min gives 6N·E_min at every B."""
  s_mn, e_mn, n = 1200.0, 3.6e8, 1e7
  b = np.array(BATCHES)
  s = s_mn + e_mn / b
  np.testing.assert_allclose(batch.s_min(s, b, e_mn / s_mn), s_mn, rtol=1e-12)
  np.testing.assert_allclose(batch.c_min(6 * n * b * s, b, e_mn / s_mn), 6 * n * e_mn, rtol=1e-12)


# ------------------------------------------------------------------ pieces


def test_steps_to_loss_interpolates_first_crossing():
  steps, loss = [0, 10, 20, 30, 40], [5.0, 4.0, 3.0, 3.5, 2.0]
  assert batch.steps_to_loss(steps, loss, 3.5) == pytest.approx(15.0)
  assert batch.steps_to_loss(steps, loss, 3.0) == pytest.approx(20.0)  # first, not the later rise
  assert batch.steps_to_loss(steps, loss, 1.0) is None  # never reached
  assert batch.steps_to_loss(steps, loss, 6.0) is None  # below it from the start: unknown


def test_smooth_loss_has_no_lag_on_a_line_and_cuts_noise():
  x = np.linspace(5, 3, 400)
  # No lag on a straight line (a one-way EMA would lag by 4 points = 0.02 nats).
  np.testing.assert_allclose(batch.smooth_loss(x, 0.8)[50:-50], x[50:-50], atol=1e-5)
  noisy = x + 0.05 * np.random.default_rng(0).standard_normal(x.size)
  assert np.std(batch.smooth_loss(noisy, 0.8) - x) < 0.4 * np.std(noisy - x)


def test_t_quantile_matches_scipy():
  stats = pytest.importorskip("scipy.stats")
  for dof in (1, 2, 3, 5, 7, 11, 25, 50, 200, 10_000):
    assert batch.t_quantile_975(dof) == pytest.approx(stats.t.ppf(0.975, dof), rel=4e-3)


# ------------------------------------------------------------------ fits


def test_recovers_exact_hyperbola_and_power_law():
  curves = [synthetic_curve(b) for b in BATCHES]
  res = batch.analyze_batch_sweep(curves, levels=LEVELS)
  assert [lv.loss for lv in res.levels] == pytest.approx(sorted(LEVELS, reverse=True))
  for lv in res.levels:
    assert lv.s_min == pytest.approx(true_s_min(lv.loss), rel=1e-6)
    bc = batch.b_crit_kaplan(lv.loss, B_STAR, ALPHA_B)
    assert lv.e_min == pytest.approx(bc * true_s_min(lv.loss), rel=1e-6)
    assert lv.b_crit == pytest.approx(bc, rel=1e-6)
    assert lv.dof == len(BATCHES) - 2
    assert lv.rms_rel_resid < 1e-9
    np.testing.assert_allclose(lv.examples, np.array(lv.batch_tokens) * np.array(lv.steps))
    # The paper's form holds at every measured point.
    prod = (np.array(lv.steps) / lv.s_min - 1) * (np.array(lv.examples) / lv.e_min - 1)
    np.testing.assert_allclose(prod, 1.0, rtol=1e-6)
  pl = res.power_law
  assert pl.b_star == pytest.approx(B_STAR, rel=1e-5)
  assert pl.alpha_b == pytest.approx(ALPHA_B, rel=1e-6)
  assert pl.n_levels == len(LEVELS)
  assert res.notes == []


def test_recovers_s_min_e_min_with_noisy_steps():
  """3% multiplicative noise on S: estimates within 3 SE, truth inside the 95% interval."""
  rng = np.random.default_rng(1)
  b = np.repeat(BATCHES, 2)
  level = 3.7
  s = true_steps(level, b) * (1 + 0.03 * rng.standard_normal(b.size))
  fit = batch.fit_level(b, s, level)
  s_true, bc_true = true_s_min(level), batch.b_crit_kaplan(level, B_STAR, ALPHA_B)
  assert abs(fit.s_min - s_true) < 3 * fit.s_min_se
  assert abs(fit.e_min - bc_true * s_true) < 3 * fit.e_min_se
  assert fit.b_crit_lo < bc_true < fit.b_crit_hi
  assert abs(fit.b_crit / bc_true - 1) < 0.15
  assert 0 < fit.s_min_se < 0.1 * fit.s_min


def test_recovers_power_law_from_noisy_b_crit():
  rng = np.random.default_rng(2)
  loss = np.geomspace(2.5, 5.0, 10)
  bc = batch.b_crit_kaplan(loss, B_STAR, ALPHA_B) * np.exp(0.05 * rng.standard_normal(loss.size))
  pl = batch.fit_b_crit_power_law(loss, bc, np.full(loss.size, 0.05))
  assert pl.weighted
  assert pl.alpha_b_lo < ALPHA_B < pl.alpha_b_hi
  assert pl.b_star_lo < B_STAR < pl.b_star_hi
  assert pl.alpha_b == pytest.approx(ALPHA_B, rel=0.05)
  assert pl.b_star == pytest.approx(B_STAR, rel=0.5)
  np.testing.assert_allclose(pl.predict(loss), pl.b_star / loss ** (1 / pl.alpha_b))


def test_power_law_interval_covers_the_levels_errors_when_three_levels_happen_to_align():
  """Three levels with 5% errors that by luck lie on one line: the residuals say nothing
  about the error (one degree of freedom), so the interval must still reflect the 5%, and
  over many noisy draws it must cover the true alpha_B about as often as it claims."""
  loss = np.array([6.0, 4.0, 2.5])
  se = np.full(3, 0.05)
  exact = batch.fit_b_crit_power_law(loss, batch.b_crit_kaplan(loss, B_STAR, ALPHA_B), se)
  assert exact.alpha_b == pytest.approx(ALPHA_B)
  assert exact.alpha_b_lo < 0.98 * ALPHA_B and exact.alpha_b_hi > 1.02 * ALPHA_B  # not zero width
  assert exact.b_star_hi / exact.b_star_lo > 1.4
  rng = np.random.default_rng(0)
  covered = 0
  for _ in range(400):
    bc = batch.b_crit_kaplan(loss, B_STAR, ALPHA_B) * np.exp(se * rng.standard_normal(3))
    try:
      pl = batch.fit_b_crit_power_law(loss, bc, se)
    except batch.BatchSweepError:  # the draw's slope came out rising: no law, not a miss
      continue
    lo = pl.alpha_b_lo if pl.alpha_b_lo is not None else 0.0
    hi = pl.alpha_b_hi if pl.alpha_b_hi is not None else np.inf
    covered += lo < ALPHA_B < hi
  assert covered / 400 > 0.9


def _write_run(root, name, b_tokens, curve_steps, curve_loss, b_simple=None, n_params=1000):
  run = os.path.join(root, name)
  os.makedirs(run)
  rundir.write_json_atomic(os.path.join(run, "config.json"),
                           {"config": {},
                            "facts": {"batch_tokens": b_tokens, "n_params": n_params}})
  with open(os.path.join(run, metrics_lib.METRICS_FILE), "w") as f:  # no per-line fsync
    for i, (s, l) in enumerate(zip(curve_steps, curve_loss)):
      rec = {"step": int(s), "loss": float(l) if math.isfinite(l) else "nan"}
      if b_simple is not None:
        rec["gns/b_simple_tokens"] = float(b_simple[i])
      f.write(json.dumps(rec) + "\n")
  return run


def test_from_run_dirs_with_noisy_train_loss(tmp_path):
  """Noisy train loss in run dirs -> smoothed curves -> B_crit within 5%, GNS read back."""
  rng = np.random.default_rng(3)
  for b in BATCHES[::2]:
    loss = np.linspace(6.0, 3.2, 4000)
    steps = true_steps(loss, b)
    grid = np.unique(np.round(np.geomspace(1, steps[-1], 600)))
    lgrid = np.interp(grid, steps, loss) + 0.01 * rng.standard_normal(grid.size)
    _write_run(str(tmp_path), f"b{int(b)}", b, grid, lgrid,
               b_simple=batch.b_crit_kaplan(lgrid, B_STAR, ALPHA_B) / 2)
  curves, notes = batch.curves_from_runs(str(tmp_path))
  assert notes == [] and sorted(c.batch_tokens for c in curves) == BATCHES[::2]
  res = batch.analyze_batch_sweep(curves, levels=[4.3, 4.0, 3.7])
  for lv in res.levels:
    assert lv.b_crit == pytest.approx(batch.b_crit_kaplan(lv.loss, B_STAR, ALPHA_B), rel=0.05)
    assert lv.s_min == pytest.approx(true_s_min(lv.loss), rel=0.05)
  gns = bcrit.gns_points(runs.read_runs(str(tmp_path)))
  assert len(set(gns.run)) == 4
  np.testing.assert_allclose(gns.b_simple, batch.b_crit_kaplan(gns.loss, B_STAR, ALPHA_B) / 2,
                             rtol=0.15)


def test_run_dirs_of_mixed_models_and_nan(tmp_path):
  _write_run(str(tmp_path), "a", 1e4, [1, 2, 3], [5, 4, float("nan")], n_params=1)
  _write_run(str(tmp_path), "b", 2e4, [1, 2, 3], [5, 4, 3], n_params=2)
  with pytest.raises(batch.BatchSweepError, match="one model"):
    batch.curves_from_runs(str(tmp_path))
  curves, notes = batch.curves_from_runs([str(tmp_path / "a")])
  assert curves[0].steps.tolist() == [1, 2] and "non-finite" in notes[0]


# ------------------------------------------------------------------ bad input


def test_too_few_batch_sizes():
  curves = [synthetic_curve(b) for b in BATCHES[:2]] * 2
  with pytest.raises(batch.BatchSweepError, match=">= 3"):
    batch.analyze_batch_sweep(curves, levels=LEVELS)
  with pytest.raises(batch.BatchSweepError, match="more batch sizes"):
    batch.fit_level([1e4, 1e4, 2e4], [100, 110, 60], 4.0)


def test_curves_that_never_reach_a_level_are_skipped_and_levels_dropped():
  curves = [synthetic_curve(b) for b in BATCHES[:4]]
  for c in curves[1:]:  # three curves stop before reaching 3.4; one stops before 3.7 too
    keep = c.loss > 3.5
    c.steps, c.loss = c.steps[keep], c.loss[keep]
  c = curves[3]
  keep = c.loss > 3.8
  c.steps, c.loss = c.steps[keep], c.loss[keep]
  res = batch.analyze_batch_sweep(curves, levels=LEVELS)
  assert [lv.loss for lv in res.levels] == [4.6, 4.3, 4.0, 3.7]
  lv37 = res.levels[-1]
  assert lv37.batch_tokens == BATCHES[:3]  # the fourth curve skipped at 3.7
  assert lv37.b_crit == pytest.approx(batch.b_crit_kaplan(3.7, B_STAR, ALPHA_B), rel=1e-6)
  assert any("3.4 dropped" in n and "more batch sizes" in n for n in res.notes)
  assert any("3.7" in n and "b131072" in n and "skipped" in n for n in res.notes)
  assert res.power_law is not None and res.power_law.n_levels == 4
  json.loads(res.to_json())


def test_too_few_levels_for_power_law_is_a_note():
  res = batch.analyze_batch_sweep([synthetic_curve(b) for b in BATCHES], levels=[4.3])
  assert res.power_law is None and any("needs >= 2" in n for n in res.notes)
  with pytest.raises(batch.BatchSweepError, match="levels"):  # no errors: 2 levels are too few
    batch.fit_b_crit_power_law([4.0, 3.0], [1e5, 2e5])


def test_two_levels_with_errors_give_an_untested_law_with_an_honest_interval():
  """Two levels, each B_crit known within its own error, determine the power law, and the
  result says that two levels cannot test it. Its 95% interval comes from those errors: over
  many noisy draws it covers the true alpha_B about 95% of the time (not more, not less), and a
  third level that lies on the line narrows it rather than widening it (the levels' errors set
  the scale either way)."""
  res = batch.analyze_batch_sweep([synthetic_curve(b) for b in BATCHES], levels=[4.6, 4.0])
  law = res.power_law
  assert law is not None and law.n_levels == 2
  assert law.alpha_b == pytest.approx(ALPHA_B, rel=1e-4)
  assert law.b_star == pytest.approx(B_STAR, rel=1e-3)
  assert any("untested" in n or "not tested" in n for n in res.notes)
  loss, se = np.array([5.0, 3.0]), np.array([0.1, 0.1])
  truth = batch.b_crit_kaplan(loss, B_STAR, ALPHA_B)
  rng = np.random.default_rng(3)
  draws, covered = 2000, 0
  for _ in range(draws):
    fit = batch.fit_b_crit_power_law(loss, truth * np.exp(se * rng.standard_normal(2)), se)
    covered += fit.alpha_b_lo < ALPHA_B < fit.alpha_b_hi
  assert 0.93 < covered / draws < 0.97
  two = batch.fit_b_crit_power_law(loss, truth, se)
  loss3 = np.array([5.0, 4.0, 3.0])
  three = batch.fit_b_crit_power_law(loss3, batch.b_crit_kaplan(loss3, B_STAR, ALPHA_B),
                                     np.full(3, 0.1))
  assert three.alpha_b_hi - three.alpha_b_lo < two.alpha_b_hi - two.alpha_b_lo


def test_a_levels_error_comes_from_its_own_interval():
  """The law weighs each level by its own 95% interval, whatever its width came from: a level
  fitted from few batch sizes (a wide t interval) counts for less than its delta-method se
  alone would say; no finite interval, no error."""
  fit = batch.fit_level([2e3, 4e3, 8e3], [130.0, 75.0, 50.0], 4.0)  # one dof: t = 12.7
  assert fit.log_b_crit_error > 5 * fit.log_b_crit_se
  assert batch.error_of_interval(fit.b_crit, math.inf) == 0.0
  assert batch.error_of_interval(None, fit.b_crit) == 0.0


@pytest.mark.parametrize("bad,match", [
    ((-1e4, [0, 1], [5, 4]), "positive"),
    ((float("nan"), [0, 1], [5, 4]), "positive"),
    ((1e4, [0, 1], [5, float("nan")]), "NaN"),
    ((1e4, [0, 1], [5, -1]), "negative loss"),
    ((1e4, [1, 0], [5, 4]), "increasing"),
    ((1e4, [0, 1, 2], [5, 4]), "one loss per step"),
])
def test_bad_curves_raise_clear_errors(bad, match):
  with pytest.raises(batch.BatchSweepError, match=match):
    batch.Curve(*bad)
  assert issubclass(batch.BatchSweepError, ValueError)


def test_bad_levels_and_unreachable_everything():
  curves = [synthetic_curve(b) for b in BATCHES[:3]]
  with pytest.raises(batch.BatchSweepError, match="positive finite"):
    batch.analyze_batch_sweep(curves, levels=[4.0, float("nan")])
  with pytest.raises(batch.BatchSweepError, match="no loss level could be fitted"):
    batch.analyze_batch_sweep(curves, levels=[1.0])
  with pytest.raises(batch.BatchSweepError, match="positive and finite"):
    batch.fit_b_crit_power_law([4.0, 3.0, 2.0], [1e5, float("nan"), 2e5])


def test_unphysical_level_is_dropped_not_nan():
  """Steps that grow with the batch give E_min < 0: the level is dropped with a note."""
  b = [1e4, 2e4, 4e4]
  curves = [(bb, [0, 10 * k, 20 * k], [5.0, 4.0, 3.0]) for k, bb in enumerate(b, start=1)]
  with pytest.raises(batch.BatchSweepError, match="no loss level"):
    batch.analyze_batch_sweep(curves, levels=[3.5])
  with pytest.raises(batch.BatchSweepError, match="widen the batch-size range"):
    batch.fit_level(b, [15, 30, 45], 3.5)


def test_default_levels_and_json_roundtrip(tmp_path):
  res = batch.analyze_batch_sweep([synthetic_curve(b) for b in BATCHES])
  assert len(res.levels) == 6 and res.power_law is not None
  assert res.power_law.alpha_b == pytest.approx(ALPHA_B, rel=1e-3)
  path = str(tmp_path / "batch.json")
  text = res.to_json(path)
  d = json.loads(text)
  with open(path) as f:
    assert json.load(f) == d
  back = batch.BatchSweepResult.from_dict(d)
  assert back.levels[2].b_crit == res.levels[2].b_crit
  assert back.power_law.b_star == res.power_law.b_star


# ------------------------------------------------------------------ plots


def test_plots_show_the_inputs(tmp_path):
  curves = [synthetic_curve(b) for b in BATCHES]
  res = batch.analyze_batch_sweep(curves, levels=LEVELS)
  fig = batch_plots.plot_steps_vs_examples(res)
  lines = {ln.get_gid(): ln for ln in fig.axes[0].get_lines()}
  ax = fig.axes[0]
  assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
  for lv in res.levels:
    m = lines[f"measured:{lv.loss:.6g}"]
    np.testing.assert_array_equal(m.get_xdata(), lv.examples)
    np.testing.assert_array_equal(m.get_ydata(), lv.steps)
    f = lines[f"fit:{lv.loss:.6g}"]
    fx, fy = np.asarray(f.get_xdata()), np.asarray(f.get_ydata())
    np.testing.assert_allclose((fy / lv.s_min - 1) * (fx / lv.e_min - 1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(lines[f"min:{lv.loss:.6g}"].get_xdata(), [lv.e_min])

  gns = bcrit.GnsPoints(run=np.array(["run0"] * 4, dtype=object), step=np.arange(4.0),
                        loss=np.array([5.0, 4.0, 3.5, 3.4]), b_simple=np.array([1e4, 5e4, 9e4, 9e5]),
                        lr_fraction=np.array([1.0, 1.0, 1.0, 0.01]),
                        kept=np.array([True, True, True, False]))
  fig2 = batch_plots.plot_b_crit_vs_loss(res, gns)
  ax2 = fig2.axes[0]
  lines = {ln.get_gid(): ln for ln in ax2.get_lines()}
  np.testing.assert_array_equal(lines["b_crit"].get_xdata(), [lv.loss for lv in res.levels])
  np.testing.assert_array_equal(lines["b_crit"].get_ydata(), [lv.b_crit for lv in res.levels])
  np.testing.assert_array_equal(lines["gns:run0"].get_xdata(), gns.loss[:3])  # kept only
  np.testing.assert_array_equal(lines["gns:run0"].get_ydata(), gns.b_simple[:3])
  pl = lines["power_law"]
  np.testing.assert_allclose(pl.get_ydata(), res.power_law.predict(pl.get_xdata()))
  kap = lines["kaplan"]
  np.testing.assert_allclose(kap.get_ydata(), batch.b_crit_kaplan(kap.get_xdata()))
  assert ax2.get_xscale() == "log" and ax2.get_yscale() == "log"

  paths = batch_plots.save_batch_figures(res, str(tmp_path), gns)
  assert [os.path.basename(p) for p in paths] == ["steps_vs_examples.png", "b_crit_vs_loss.png"]
  assert all(os.path.getsize(p) > 5000 for p in paths)
  assert not math.isnan(res.levels[0].b_crit_se)
