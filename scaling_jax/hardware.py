"""Peak FLOP/s per device, for MFU: a table for accelerators, a measurement for CPUs."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

# Dense peak FLOP/s per device (vendor figures, no sparsity), by (device_kind substring, dtype).
PEAK_FLOPS = {
    ("h200", "bfloat16"): 989e12, ("h200", "float32"): 67e12,
    ("h100", "bfloat16"): 989e12, ("h100", "float32"): 67e12,
    ("a100", "bfloat16"): 312e12, ("a100", "float32"): 19.5e12,
    ("tpu v4", "bfloat16"): 275e12, ("tpu v4", "float32"): 275e12 / 4,
    ("tpu v5 lite", "bfloat16"): 197e12, ("tpu v5e", "bfloat16"): 197e12,
    ("tpu v5p", "bfloat16"): 459e12, ("tpu v5", "bfloat16"): 459e12,
    ("tpu v6", "bfloat16"): 918e12,
}


def table_peak(device_kind: str, dtype: str) -> float | None:
  kind = device_kind.lower()
  for (name, dt), peak in PEAK_FLOPS.items():
    if name in kind and dt == dtype:
      return peak
  return None


@functools.lru_cache(maxsize=None)
def measure_matmul_peak(n: int = 1024, dtype: str = "float32", seconds: float = 0.5) -> float:
  """FLOP/s of one device on large square matmuls (jnp.dot), best of a few timed repeats."""
  device = jax.local_devices()[0]
  a = jax.device_put(jnp.ones((n, n), dtype), device)
  b = jax.device_put(jnp.ones((n, n), dtype), device)
  reps = 8
  f = jax.jit(lambda a, b: functools.reduce(lambda acc, _: jnp.dot(acc, b) * 1e-3, range(reps), a))
  f(a, b).block_until_ready()
  best, start = 0.0, time.perf_counter()
  while time.perf_counter() - start < seconds or best == 0.0:
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
  return best


def peak_flops_per_device(dtype: str = "float32", override: float = -1.0) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure came from)."""
  if override and override > 0:
    return float(override), "config"
  device = jax.local_devices()[0]
  peak = table_peak(device.device_kind, dtype)
  if peak is not None:
    return peak, f"table:{device.device_kind}"
  return measure_matmul_peak(dtype=dtype), f"measured:{device.platform}"
