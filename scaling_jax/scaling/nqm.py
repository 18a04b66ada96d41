"""The noisy quadratic model (Zhang et al. 2019): a ground truth for critical-batch methods.

Loss L(theta) = 1/2 sum_i h_i theta_i^2 in the Hessian's eigenbasis (H = diag(h)). One
example's gradient is H theta + xi with E[xi] = 0 and Cov[xi] = diag(c) = Sigma, so a batch
of B examples has gradient noise Sigma/B. SGD's expected second moments m_i = E[theta_i^2]
then evolve exactly, dimension by dimension,

    m_i' = (1 - eps h_i)^2 m_i + eps^2 c_i / B,         E[L] = 1/2 sum_i h_i m_i,

and the step size eps that minimises the next expected loss (McCandlish et al. 2018 App. A)
is eps*(B) = sum h^2 m / (sum h^3 m + sum h c / B). Training with eps*(B) at every step
gives one deterministic expected-loss curve per batch size: the steps S(B) to any target
are computed exactly, and so are its two limits,

    S_min = lim_{B->inf} S(B)    (noiseless steepest descent with exact line search),
    E_min = lim_{B->0} B S(B)    (the ODE d m_i/dE = -2 r h_i m_i + r^2 c_i, r = eps/B),

whose ratio is the critical batch E_min/S_min, while B_simple = tr(Sigma)/|G|^2 with
|G|^2 = sum h_i^2 m_i. Batch sizes are in examples (continuous). Pure numpy.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class NQM:
  """Hessian eigenvalues `h`, per-example gradient-noise variances `c` along them."""
  h: np.ndarray
  c: np.ndarray

  @classmethod
  def zhang(cls, dim: int = 50, noise: float = 1.0) -> "NQM":
    """Zhang et al.'s choice: h_i = 1/i, noise covariance proportional to the Hessian."""
    h = 1.0 / np.arange(1, dim + 1, dtype=float)
    return cls(h=h, c=noise * h)

  def loss(self, m) -> np.ndarray:
    """Expected loss of second moments m [..., dim]."""
    return 0.5 * np.asarray(m) @ self.h

  def grad_sq(self, m) -> np.ndarray:
    """|G|^2 = sum h_i^2 m_i (the squared norm of the full-batch gradient, in expectation)."""
    return np.asarray(m) @ self.h**2

  def b_simple(self, m) -> np.ndarray:
    """B_simple = tr(Sigma) / |G|^2, in examples."""
    return self.c.sum() / self.grad_sq(m)

  def step(self, m, batch) -> np.ndarray:
    """One SGD step at the greedy step size eps*(B); batch may be inf (no noise)."""
    m = np.asarray(m, float)
    batch = np.asarray(batch, float)[..., None]
    noise = np.where(np.isinf(batch), 0.0, (self.h * self.c).sum() / batch)
    eps = (m @ self.h**2)[..., None] / ((m @ self.h**3)[..., None] + noise)
    return (1 - eps * self.h) ** 2 * m + np.where(np.isinf(batch), 0.0, eps**2 * self.c / batch)

  def curves(self, m0, batches, num_steps: int) -> np.ndarray:
    """Expected loss [len(batches), num_steps + 1] of greedy SGD from m0 at each batch."""
    batches = np.asarray(batches, float)
    m = np.broadcast_to(np.asarray(m0, float), (len(batches), len(self.h))).copy()
    out = np.empty((len(batches), num_steps + 1))
    out[:, 0] = self.loss(m)
    for t in range(num_steps):
      m = self.step(m, batches)
      out[:, t + 1] = self.loss(m)
    return out

  def steps_to(self, m0, batches, target: float, max_steps: int = 1_000_000) -> np.ndarray:
    """Steps to bring the expected loss from m0 down to `target`, at each batch size
    (fractional: linear between the two steps around the crossing)."""
    batches = np.atleast_1d(np.asarray(batches, float))
    m = np.broadcast_to(np.asarray(m0, float), (len(batches), len(self.h))).copy()
    prev = self.loss(m)
    if np.any(prev <= target):
      raise ValueError(f"target {target} is not below the starting loss {prev.min()}")
    out = np.full(len(batches), np.nan)
    todo = np.ones(len(batches), bool)
    for t in range(1, max_steps + 1):
      m[todo] = self.step(m[todo], batches[todo])
      now = self.loss(m)
      hit = todo & (now <= target)
      out[hit] = t - 1 + (prev[hit] - target) / (prev[hit] - now[hit])
      todo &= ~hit
      prev = now
      if not todo.any():
        return out
    raise ValueError(f"target {target} not reached in {max_steps} steps at batches "
                     f"{batches[todo].tolist()}")

  def s_min(self, m0, target: float) -> float:
    """Steps at an infinite batch (noiseless steepest descent)."""
    return float(self.steps_to(m0, [np.inf], target)[0])

  def e_min(self, m0, target: float, per_step: float = 1e-3) -> float:
    """Examples at an infinitesimal batch: the B -> 0 limit of B S(B), by RK4 on
    d m_i/dE = -2 r h_i m_i + r^2 c_i, r = sum h^2 m / sum h c, in steps that each lower
    the loss by about `per_step` of itself; the crossing is interpolated in the last one."""
    hc = (self.h * self.c).sum()

    def rate(m):
      r = (m @ self.h**2) / hc
      return -2 * r * self.h * m + r**2 * self.c

    m, e = np.asarray(m0, float).copy(), 0.0
    if self.loss(m) <= target:
      raise ValueError(f"target {target} is not below the starting loss {self.loss(m)}")
    while True:
      k1 = rate(m)
      de = per_step * self.loss(m) / -(0.5 * k1 @ self.h)
      k2 = rate(m + de / 2 * k1)
      k3 = rate(m + de / 2 * k2)
      k4 = rate(m + de * k3)
      m_next = m + de / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
      l0, l1 = self.loss(m), self.loss(m_next)
      if l1 <= target:
        return e + de * (l0 - target) / (l0 - l1)
      m, e = m_next, e + de

  def critical_batch(self, m0, target: float) -> float:
    """E_min / S_min from m0 to `target`, in examples."""
    return self.e_min(m0, target) / self.s_min(m0, target)

  def sample_grad_norms(self, rng: np.random.Generator, theta, b_small: int, k: int,
                        num: int) -> tuple[np.ndarray, np.ndarray]:
    """`num` draws of (mean of the k small-batch |g|^2, big-batch |g|^2) at parameters
    theta: k independent small batches of b_small examples, the big batch their union
    (B_big = k b_small), as in the trainer's step."""
    g = self.h * np.asarray(theta, float)
    xi = rng.standard_normal((num, k, len(self.h))) * np.sqrt(self.c / b_small)
    small = g + xi
    big = small.mean(axis=1)
    return (small**2).sum(-1).mean(-1), (big**2).sum(-1)
