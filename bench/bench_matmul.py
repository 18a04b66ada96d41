"""The matmul kernels on their own: XLA:CPU's jnp.dot against PyTorch's torch.mm, same shapes.

  pip install torch   # optional bench extra: pip install -e '.[bench]'
  python bench/bench_matmul.py [--rounds 5] [--no-write]

The 1024^3 matmul that sets the peak of every MFU on CPU (`hardware.measure_matmul_peak`), and the
matmuls of the train step's 1024-token passes at 4x256 and 6x384 (the QKV, attention-output,
MLP-in and MLP-out projections, forward): f32, each framework on the same 2 threads, taking
turns (`--rounds` rounds of 10 timed calls each), median GFLOP/s. Splits a gap between the
trainer and eager PyTorch into the kernels' share and the rest of the step. Writes the "Matmul
kernels: XLA vs PyTorch (CPU, issue 20)" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import environment, publish  # noqa: E402

from scaling_jax import cli  # noqa: E402

cli.skip_absent_tpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

HEADING = "## Matmul kernels: XLA vs PyTorch (CPU, issue 20)"
# (label, m, k, n): [m, k] x [k, n]
SHAPES = [("1024^3 (the MFU peak)", 1024, 1024, 1024),
          ("4x256 QKV", 1024, 256, 768), ("4x256 MLP in", 1024, 256, 1024),
          ("4x256 MLP out", 1024, 1024, 256),
          ("6x384 QKV", 1024, 384, 1152), ("6x384 MLP in", 1024, 384, 1536),
          ("6x384 MLP out", 1024, 1536, 384), ("6x384 attention out", 1024, 384, 384)]
CALLS = 10


def time_calls(call, calls: int = CALLS) -> list[float]:
  """Seconds of each of `calls` calls (each waited for), after one untimed call."""
  call()
  out = []
  for _ in range(calls):
    t0 = time.perf_counter()
    call()
    out.append(time.perf_counter() - t0)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  try:
    import torch
  except ImportError:
    parser.error("needs torch: pip install -e '.[bench]'")
  threads = os.cpu_count() or 1
  torch.set_num_threads(threads)
  load0 = os.getloadavg()[0]
  rng = np.random.default_rng(0)
  dot = jax.jit(jnp.dot)
  rows = []
  for label, m, k, n in SHAPES:
    a_np = rng.standard_normal((m, k), dtype=np.float32)
    b_np = rng.standard_normal((k, n), dtype=np.float32)
    a_j, b_j = jax.device_put(a_np), jax.device_put(b_np)
    a_t, b_t = torch.from_numpy(a_np), torch.from_numpy(b_np)
    times = {"jax": [], "torch": []}
    for _ in range(args.rounds):  # taking turns, so the machine's drift hits both alike
      times["jax"] += time_calls(lambda: dot(a_j, b_j).block_until_ready())
      times["torch"] += time_calls(lambda: torch.mm(a_t, b_t))
    flops = 2.0 * m * k * n
    rate = {fw: flops / float(np.median(t)) for fw, t in times.items()}
    rows.append((label, m, k, n, rate["jax"], rate["torch"]))
    print(f"{label}: jnp.dot {rate['jax'] / 1e9:.0f}, torch.mm {rate['torch'] / 1e9:.0f} GFLOP/s",
          flush=True)
  lines = [HEADING, "",
           f"`python bench/bench_matmul.py --rounds {args.rounds}` on {environment()}; torch "
           f"{torch.__version__} ({threads} threads); load average (1 min) {load0:.1f} before, "
           f"{os.getloadavg()[0]:.1f} after.", "",
           "f32 [m, k] x [k, n], jitted jnp.dot (XLA:CPU) and torch.mm taking turns, "
           f"{args.rounds} rounds of {CALLS} timed calls each, median:", "",
           "| matmul | m x k x n | jnp.dot (GFLOP/s) | torch.mm (GFLOP/s) | torch / jax |",
           "| --- | --- | --- | --- | --- |"]
  lines += [f"| {label} | {m} x {k} x {n} | {rj / 1e9:.0f} | {rt / 1e9:.0f} | {rt / rj:.2f} |"
            for label, m, k, n, rj, rt in rows]
  publish(lines, HEADING, write=not args.no_write)
  return 0


if __name__ == "__main__":
  sys.exit(main())
