"""The critical-batch methods against the noisy quadratic model, where the answer is exact.

Derivation (Zhang et al. 2019; McCandlish et al. 2018, App. A). Loss L = 1/2 sum_i h_i θ_i²
with h_i = 1/i (i = 1..50); an example's gradient is Hθ + ξ with Cov[ξ] = Σ = diag(c), c = h.
A step θ' = θ − ε (Hθ + ξ_B), ξ_B the mean of B examples' noise (Cov Σ/B), gives for the
second moments m_i = E[θ_i²]

    m_i' = (1 − ε h_i)² m_i + ε² c_i / B,      E[L] = 1/2 Σ h_i m_i,

exactly (ξ_B is independent of θ). Minimising the next E[L] over ε gives
ε*(B) = Σh²m / (Σh³m + Σhc/B), so SGD at ε*(B) has one deterministic expected-loss curve
per batch size and S(B), the steps to a target, is computed by iterating this map. Its two
limits are computed separately: S_min = S(∞) is noiseless steepest descent with an exact
line search; E_min = lim_{B→0} B·S(B), where ε* → B Σh²m/Σhc =: B r and the map becomes
the ODE dm_i/dE = −2 r h_i m_i + r² c_i in examples E, integrated by RK4. The critical batch
is E_min/S_min (Kaplan's definition), and the batch where B·S(B) reaches 1.2 x B_0·S(B_0)
(Zhang et al. 2024's 20% over perfect scaling from the smallest rung B_0) is found by
bisection on the exact S(B). B_simple = tr(Σ)/|G|² with G = Hθ.

The analyses see only what an experiment sees: loss curves at a ladder of batch sizes
(batch-size sweep), or steps to a target at a ladder (branched probes), or pairs of small-
and big-batch squared gradient norms (GNS). Measured errors: sweep ≤ 5.4% (the NQM's S(B)
is not exactly a hyperbola: up to 3-5% off it near B_crit), probe B_crit ≤ 1.4%, probe B_20
≤ 4.8%; tolerances 10%.
"""

import numpy as np
import pytest

from scaling_jax import noise_scale
from scaling_jax.scaling import batch, probes
from scaling_jax.scaling.nqm import NQM

Q = NQM.zhang(50)
M0 = np.ones(50)
L0 = float(Q.loss(M0))


def _base_state(batch_size: float, steps: int) -> np.ndarray:
  m = M0.copy()
  for _ in range(steps):
    m = Q.step(m, batch_size)
  return m


def test_nqm_limits_bound_the_steps():
  """S(B) falls towards S_min at large B, and B·S(B) towards E_min at small B."""
  target = 0.1 * L0
  s_min, e_min = Q.s_min(M0, target), Q.e_min(M0, target)
  b_crit = e_min / s_min
  s = Q.steps_to(M0, [b_crit / 1000, b_crit, 1000 * b_crit], target)
  assert s[2] == pytest.approx(s_min, rel=2e-3)
  assert s[0] * b_crit / 1000 == pytest.approx(e_min, rel=2e-3)
  # between: neither limit, and S > max(S_min, E_min/B) everywhere
  assert s[1] > s_min and s[1] * b_crit > e_min
  assert Q.e_min(M0, target, per_step=3e-4) == pytest.approx(e_min, rel=1e-5)  # converged


def test_sweep_analysis_recovers_the_nqm_critical_batch():
  levels = L0 * np.array([0.2, 0.1, 0.05])
  truth = [Q.critical_batch(M0, lv) for lv in levels]  # 19.2, 41.7, 84.9 examples
  ladder = 30 * 2.0 ** np.arange(-3, 4)  # 3.75 .. 240
  n = int(Q.steps_to(M0, ladder[:1], levels[-1])[0]) + 2
  losses = Q.curves(M0, ladder, n)
  curves = [batch.Curve(b, np.arange(n + 1), l) for b, l in zip(ladder, losses)]
  result = batch.analyze_batch_sweep(curves, levels=levels)
  got = {round(f.loss, 9): f.b_crit for f in result.levels}
  for level, want in zip(levels, truth):
    assert got[round(level, 9)] == pytest.approx(want, rel=0.10)
  assert truth[-1] / truth[0] > 4  # B_crit grows as the loss falls, and the fit follows it
  assert result.power_law is not None and result.power_law.alpha_b > 0


@pytest.mark.parametrize("drop", [0.1, 0.5])
def test_probe_analysis_recovers_the_nqm_critical_batch_both_ways(drop):
  m = _base_state(20.0, 200)  # a base run's checkpoint at 2.2% of the initial loss
  start = float(Q.loss(m))
  target = (1 - drop) * start
  b_crit = Q.critical_batch(m, target)
  ladder = 100 * 2.0 ** np.arange(0, 7)  # 100 .. 6400 examples
  steps = Q.steps_to(m, ladder, target)
  fit = probes.analyze_probe(ladder, steps, start_loss=start, target_loss=target,
                             bootstrap=200)
  assert fit.b_crit == pytest.approx(b_crit, rel=0.10)
  assert fit.b_crit_lo <= fit.b_crit <= fit.b_crit_hi
  # Zhang et al.'s 20% batch, by bisection on the exact S(B)
  ref = ladder[0] * steps[0]
  lo, hi = ladder[0], ladder[-1]
  for _ in range(40):
    mid = np.sqrt(lo * hi)
    lo, hi = (mid, hi) if mid * Q.steps_to(m, [mid], target)[0] < 1.2 * ref else (lo, mid)
  assert fit.b_excess == pytest.approx(lo, rel=0.10)
  assert fit.b_excess < fit.b_crit  # 20% over perfect scaling comes well before E_min/S_min


def test_gns_estimator_recovers_the_nqm_b_simple():
  """noise_scale's two-batch estimators and ratio of EMAs, on simulated norms at two points
  of training where B_simple differs by ~290x."""
  rng = np.random.default_rng(0)
  for m, b_small in ((M0, 4), (_base_state(20.0, 200), 256)):
    theta = np.sqrt(m)
    truth = Q.c.sum() / np.sum((Q.h * theta) ** 2)
    small, big = Q.sample_grad_norms(rng, theta, b_small, 4, 3000)
    g2, trace = noise_scale.two_batch_estimates(small, big, b_small, 4 * b_small)
    state = noise_scale.init()
    for a, t in zip(g2, trace):
      state = noise_scale.update(state, a, t, 0.995)
    assert float(noise_scale.smoothed(state)[2]) == pytest.approx(truth, rel=0.05)
  assert truth > 200 * Q.c.sum() / np.sum(Q.h**2)  # B_simple at the start: 2.8


def test_probe_intervals_cover_a_noisy_hyperbola():
  """Steps with 5% log-normal noise around S = 100 + 2e5/B: the 95% intervals of B_crit
  (2000 tokens) hold it in most ladders, and are not vacuous."""
  ladder = 250 * 2.0 ** np.arange(6)
  rng = np.random.default_rng(1)
  hits, widths = 0, []
  for _ in range(40):
    steps = (100 + 2e5 / ladder) * np.exp(0.05 * rng.standard_normal(len(ladder)))
    f = probes.analyze_probe(ladder, steps, start_loss=4.0, target_loss=3.9, bootstrap=200,
                             seed=int(rng.integers(1 << 30)))
    hits += f.b_crit_lo <= 2000 <= f.b_crit_hi
    widths.append(f.b_crit_hi / f.b_crit_lo)
  assert hits >= 32  # >= 80% of 40
  assert np.median(widths) < 4


def test_batch_at_excess_and_bad_ladders():
  # B·S relative to the first rung: 1, 1.1, 1.3 -> 20% reached halfway (in log B) from 2 to 4
  assert probes.batch_at_excess([1, 2, 4], [10, 5.5, 3.25]) == pytest.approx(2 * 2**0.5)
  assert probes.batch_at_excess([1, 2, 4], [10, 5, 2.5]) is None  # perfect scaling throughout
  with pytest.raises(probes.ProbeError, match="below the start loss"):
    probes.analyze_probe([1, 2, 4], [10, 6, 4], start_loss=3.0, target_loss=3.5)
  with pytest.raises(probes.ProbeError, match="distinct batch sizes"):
    probes.analyze_probe([1, 2], [10, 6], start_loss=3.0, target_loss=2.5)
