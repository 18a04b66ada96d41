"""Critical batch size (Kaplan et al. 2020 §5.1, after McCandlish et al. 2018).

A run at batch B (tokens) that took S steps to reach loss L would have needed
S_min = S / (1 + B_crit(L)/B) steps at a very large batch, and C_min = C / (1 + B/B_crit(L))
compute at a very small one.
"""

from __future__ import annotations

import numpy as np


def s_min(steps, batch_tokens, b_crit_tokens):
  """Minimum steps to reach the same loss: S / (1 + B_crit/B)."""
  steps, b, bc = np.asarray(steps, float), np.asarray(batch_tokens, float), np.asarray(b_crit_tokens, float)
  return steps / (1.0 + bc / b)


def c_min(compute, batch_tokens, b_crit_tokens):
  """Minimum compute to reach the same loss: C / (1 + B/B_crit)."""
  c, b, bc = np.asarray(compute, float), np.asarray(batch_tokens, float), np.asarray(b_crit_tokens, float)
  return c / (1.0 + b / bc)


def b_crit_kaplan(loss, b_star=2e8, alpha_b=0.21):
  """Kaplan's B_crit(L) = B_* / L^(1/alpha_B) in tokens (Eq. 5.3), loss in nats."""
  return b_star / np.asarray(loss, float) ** (1.0 / alpha_b)
