"""The accelerators this project knows (HBM, peak FLOP/s, HBM bandwidth), and peak FLOP/s per
device for MFU: the table for accelerators, a measurement for CPUs.

Sources of `CHIPS` (vendor figures, dense, no sparsity; per chip, which is one JAX device: v4
and v5p run their two TensorCores as one "megacore" device):
- TPU v4: Cloud TPU docs, "TPU v4", https://cloud.google.com/tpu/docs/v4 (275 TFLOP/s bf16,
  32 GiB HBM2, 1200 GB/s).
- TPU v5e: Cloud TPU docs, "TPU v5e", https://cloud.google.com/tpu/docs/v5e (197 TFLOP/s
  bf16, 16 GB HBM2, 819 GB/s).
- TPU v5p: Cloud TPU docs, "TPU v5p", https://cloud.google.com/tpu/docs/v5p (459 TFLOP/s
  bf16, 95 GB HBM2e, 2765 GB/s).
- TPU v6e (Trillium): Cloud TPU docs, "TPU v6e", https://cloud.google.com/tpu/docs/v6e
  (918 TFLOP/s bf16, 32 GB HBM, 1638 GB/s).
- H100 / H200 SXM: NVIDIA's H100 and H200 Tensor Core GPU datasheets (989 TFLOP/s bf16 dense,
  67 TFLOP/s f32; 80 GB HBM3 at 3.35 TB/s, 141 GB HBM3e at 4.8 TB/s).
- A100 SXM 80GB: NVIDIA's A100 Tensor Core GPU datasheet (312 TFLOP/s bf16, 19.5 TFLOP/s f32,
  80 GB HBM2e at 2039 GB/s).
HBM is taken in the unit the page states (GiB for v4, GB elsewhere), so "fits" is never
optimistic by the GB/GiB difference.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp

GB, GiB = 10**9, 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator (a JAX device) as its vendor specifies it."""
  name: str  # as Cloud TPU / NVIDIA name it: "v5p", "h100"
  device_kind: str  # lower-case substring of jax's Device.device_kind
  hbm_bytes: int
  hbm_bytes_per_s: float
  peak_flops: tuple[tuple[str, float], ...]  # (dtype, FLOP/s)

  def peak(self, dtype: str) -> float | None:
    return dict(self.peak_flops).get(dtype)


# Most specific device_kind first ("tpu v5 lite" before "tpu v5").
CHIPS = (
    Chip("v5e", "tpu v5 lite", 16 * GB, 819 * GB, (("bfloat16", 197e12),)),
    Chip("v6e", "tpu v6 lite", 32 * GB, 1638 * GB, (("bfloat16", 918e12),)),
    Chip("v5p", "tpu v5", 95 * GB, 2765 * GB, (("bfloat16", 459e12),)),
    Chip("v4", "tpu v4", 32 * GiB, 1200 * GB, (("bfloat16", 275e12),)),
    Chip("h200", "h200", 141 * GB, 4.8e12, (("bfloat16", 989e12), ("float32", 67e12))),
    Chip("h100", "h100", 80 * GB, 3.35e12, (("bfloat16", 989e12), ("float32", 67e12))),
    Chip("a100", "a100", 80 * GB, 2039 * GB, (("bfloat16", 312e12), ("float32", 19.5e12))),
)
TPU_CHIPS = {c.name: c for c in CHIPS if c.device_kind.startswith("tpu")}


def chip_of(device_kind: str) -> Chip | None:
  """The table's entry for a jax `device_kind` ("TPU v5 lite", "NVIDIA H100 80GB HBM3")."""
  kind = device_kind.lower()
  return next((c for c in CHIPS if c.device_kind in kind), None)


def table_peak(device_kind: str, dtype: str) -> float | None:
  chip = chip_of(device_kind)
  return None if chip is None else chip.peak(dtype)


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
