"""Gradient noise scale against ground truth: linear regression with Gaussian inputs.

Model: y = x·w* + eps, x ~ N(0, I_d), eps ~ N(0, sigma^2), per-example loss
0.5 (x·w - y)^2. At w = w* + delta the per-example gradient is g = x (x·delta - eps), so

    G = E[g] = delta,
    E|g|^2 = (d + 2)|delta|^2 + d sigma^2       (Gaussian 4th moments),
    tr(Sigma) = E|g|^2 - |G|^2 = (d + 1)|delta|^2 + d sigma^2.

Gradients below are real `jax.grad`s of mini-batch mean losses, measured as the trainer
does: k micro-batches of B_small examples make one step of B_big = k·B_small, and the
small-batch squared norm is the mean over the k micro-batches. Many steps run at once
under `vmap`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_jax import noise_scale

D = 8
SIGMA = 1.0
W_STAR = jnp.linspace(-1.0, 1.0, D)
DELTA = jnp.full((D,), 0.5)  # |delta|^2 = 2
G2_TRUE = float(jnp.sum(DELTA**2))
TRACE_TRUE = (D + 1) * G2_TRUE + D * SIGMA**2  # 26
B_SIMPLE_TRUE = TRACE_TRUE / G2_TRUE  # 13


def _loss(w_D, x_BD, y_B):
  return 0.5 * jnp.mean((x_BD @ w_D - y_B) ** 2)


def _step_norms(key, b_small, k):
  """(mean of k micro-batch |g|^2, full-batch |g|^2) for one step of k·b_small examples."""
  kx, ke = jax.random.split(key)
  x_KBD = jax.random.normal(kx, (k, b_small, D))
  y_KB = x_KBD @ W_STAR + SIGMA * jax.random.normal(ke, (k, b_small))
  w_D = W_STAR + DELTA
  g_KD = jax.vmap(jax.grad(_loss), in_axes=(None, 0, 0))(w_D, x_KBD, y_KB)
  g_small_sq = jnp.mean(jnp.sum(g_KD**2, axis=-1))
  g_big_sq = jnp.sum(jnp.mean(g_KD, axis=0) ** 2)  # mean of equal micro-batch means
  return g_small_sq, g_big_sq


def _estimates(seed, steps, b_small, k):
  """Per-step (g2, trace) estimates of `steps` independent steps."""
  keys = jax.random.split(jax.random.PRNGKey(seed), steps)
  g_small_sq, g_big_sq = jax.jit(jax.vmap(lambda kk: _step_norms(kk, b_small, k)))(keys)
  return noise_scale.two_batch_estimates(g_small_sq, g_big_sq, b_small, b_small * k)


def _ema(g2_T, trace_T, decay):
  def body(state, xs):
    return noise_scale.update(state, xs[0], xs[1], decay), None
  state, _ = jax.lax.scan(body, noise_scale.init(), (g2_T, trace_T))
  return state


def test_ground_truth_gradient_is_delta():
  """The analytic G matches the mean of many real per-example gradients (sanity of the setup)."""
  key = jax.random.PRNGKey(1)
  x_ND = jax.random.normal(key, (200_000, D))
  y_N = x_ND @ W_STAR + SIGMA * jax.random.normal(jax.random.PRNGKey(2), (200_000,))
  per_ex_ND = jax.vmap(jax.grad(_loss), in_axes=(None, 0, 0))(
      W_STAR + DELTA, x_ND[:, None], y_N[:, None])
  np.testing.assert_allclose(np.mean(per_ex_ND, 0), DELTA, atol=0.03)
  trace_mc = float(np.sum(np.var(per_ex_ND, 0)))
  assert abs(trace_mc - TRACE_TRUE) / TRACE_TRUE < 0.02


def test_ema_b_simple_matches_truth():
  """EMA of 4000 steps (decay 0.999) lands within 5% of tr(Sigma)/|G|^2 = 13."""
  g2_T, trace_T = _estimates(seed=3, steps=4000, b_small=8, k=4)
  state = _ema(g2_T, trace_T, decay=0.999)
  g2, trace, b_simple = (float(v) for v in noise_scale.smoothed(state))
  assert abs(g2 - G2_TRUE) / G2_TRUE < 0.05
  assert abs(trace - TRACE_TRUE) / TRACE_TRUE < 0.05
  assert abs(b_simple - B_SIMPLE_TRUE) / B_SIMPLE_TRUE < 0.05
  assert float(noise_scale.b_simple(g2, trace)) == pytest.approx(b_simple)


def test_ema_bias_correction():
  """After few steps the bias-corrected EMA is the weighted mean, not shrunk towards 0."""
  state = _ema(jnp.array([2.0, 2.0, 2.0]), jnp.array([26.0, 26.0, 26.0]), decay=0.99)
  g2, trace, b = noise_scale.smoothed(state)
  assert float(g2) == pytest.approx(2.0, rel=1e-5)
  assert float(trace) == pytest.approx(26.0, rel=1e-5)
  assert float(b) == pytest.approx(13.0, rel=1e-5)
  assert float(state.weight) == pytest.approx(1 - 0.99**3, rel=1e-5)


@pytest.mark.parametrize("b_small,k", [(1, 2), (2, 8), (8, 2), (16, 4)])
def test_unbiased_across_batch_sizes(b_small, k):
  """Every (B_small, B_big) pair gives E[g2] = |G|^2 and E[trace] = tr(Sigma) within 4 SE."""
  steps = 8_000
  g2_T, trace_T = (np.asarray(v, np.float64) for v in _estimates(10 + b_small, steps, b_small, k))
  for est, truth in ((g2_T, G2_TRUE), (trace_T, TRACE_TRUE)):
    se = est.std() / np.sqrt(steps)
    assert abs(est.mean() - truth) < 4 * se, (est.mean(), truth, se)
  ratio_of_means = trace_T.mean() / g2_T.mean()
  assert abs(ratio_of_means - B_SIMPLE_TRUE) / B_SIMPLE_TRUE < 0.1


def test_mean_of_ratios_is_biased():
  """Per-step trace/g2 averaged is biased, by an amount that depends on the batch size;
  the ratio of the separately averaged estimates is not.

  At B_small=16, B_big=128 the per-step g2 estimate stays positive but is noisy
  (coefficient of variation ~0.28), so E[trace/g2] != E[trace]/E[g2] (Jensen): ~+5%.
  """
  g2_T, trace_T = (np.asarray(v, np.float64) for v in _estimates(7, 10_000, 16, 8))
  assert (g2_T > 0).all()
  ratio_of_means = trace_T.mean() / g2_T.mean()
  ratios = trace_T / g2_T
  bias = ratios.mean() - B_SIMPLE_TRUE
  se_ratios = ratios.std() / np.sqrt(ratios.size)
  assert abs(ratio_of_means - B_SIMPLE_TRUE) / B_SIMPLE_TRUE < 0.01
  assert bias / B_SIMPLE_TRUE > 0.03
  assert bias > 8 * se_ratios
  # Doubling the batches halves the noise of g2 and shrinks the bias: no fixed correction.
  g2_b, trace_b = (np.asarray(v, np.float64) for v in _estimates(8, 5_000, 32, 8))
  bias_big = float(np.mean(trace_b / g2_b)) - B_SIMPLE_TRUE
  assert 0 < bias_big < 0.7 * bias
  assert abs(trace_b.mean() / g2_b.mean() - B_SIMPLE_TRUE) / B_SIMPLE_TRUE < 0.015


def test_two_batch_estimates_exact_algebra():
  """With E|G_B|^2 = |G|^2 + tr/B plugged in exactly, the estimators return |G|^2, tr."""
  for b_small, b_big in ((1, 2), (4, 32), (128, 1024)):
    gs = G2_TRUE + TRACE_TRUE / b_small
    gb = G2_TRUE + TRACE_TRUE / b_big
    g2, trace = noise_scale.two_batch_estimates(gs, gb, b_small, b_big)
    assert g2 == pytest.approx(G2_TRUE)
    assert trace == pytest.approx(TRACE_TRUE)
