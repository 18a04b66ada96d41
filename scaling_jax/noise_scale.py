"""Gradient noise scale (McCandlish et al. 2018, App. A.1) as pure functions.

With squared gradient norms measured at two batch sizes in the same step,

    |G|^2  ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(S)  ~ (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big)

are unbiased. Their ratio is not, so the two are averaged separately (an EMA with bias
correction) and divided only then: B_simple = tr(S) / |G|^2, in the unit of B.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


def two_batch_estimates(g_small_sq, g_big_sq, b_small, b_big):
  """Unbiased (|G|^2, tr(Sigma)) from squared gradient norms at batch sizes b_small < b_big.

  `g_small_sq` may be the mean of several independent small-batch norms (lower variance,
  same expectation).
  """
  g2 = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)
  trace = (g_small_sq - g_big_sq) / (1.0 / b_small - 1.0 / b_big)
  return g2, trace


class GNSState(NamedTuple):
  """Bias-corrected EMAs of |G|^2 and tr(Sigma)."""
  g2_ema: jnp.ndarray
  trace_ema: jnp.ndarray
  weight: jnp.ndarray  # 1 - decay^t: the mass the EMAs have accumulated


def init() -> GNSState:
  z = jnp.zeros((), jnp.float32)
  return GNSState(z, z, z)


def update(state: GNSState, g2, trace, decay: float) -> GNSState:
  return GNSState(
      g2_ema=decay * state.g2_ema + (1 - decay) * g2,
      trace_ema=decay * state.trace_ema + (1 - decay) * trace,
      weight=decay * state.weight + (1 - decay),
  )


def smoothed(state: GNSState):
  """(|G|^2, tr(Sigma), B_simple) from the EMAs; B_simple in the unit the batch sizes had."""
  w = jnp.maximum(state.weight, 1e-12)
  g2, trace = state.g2_ema / w, state.trace_ema / w
  return g2, trace, trace / g2


def b_simple(g2, trace):
  """B_simple = tr(Sigma) / |G|^2 (of EMAs, never of single-step estimates)."""
  return trace / g2
