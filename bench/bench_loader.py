"""Data-loader throughput (tokens/s) for the demo shapes; appends to BENCHMARKS.md.

  python bench/bench_loader.py [--vocab-size 4096] [--seconds 3] [--no-write]

Builds the embedded stdlib corpus first if needed (timed: cold build vs cached prepare),
then pulls batches from `make_train_iterator` as fast as it can, and times the train step of
the fastest and the slowest demo model in the same run: the loader must be far above the
rate training consumes tokens.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import BENCHMARKS, REPO, write_section  # noqa: E402

SECTION = "## Data loader"


def measure(config, seconds: float) -> tuple[float, float]:
  """(tokens/s over `seconds` after the first batch, seconds to the first batch)."""
  from scaling_jax import data
  t0 = time.perf_counter()
  it = data.make_train_iterator(config)
  next(it)
  first = time.perf_counter() - t0
  n, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    next(it)
    n += 1
  dt = time.perf_counter() - t0
  return n * config.train.batch_size * config.model.n_ctx / dt, first


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--vocab-size", type=int, default=4096)
  parser.add_argument("--seconds", type=float, default=3.0)
  parser.add_argument("--data-dir", default="")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)

  import grain
  import numpy as np
  import sentencepiece
  import tensorflow_datasets as tfds
  from scaling_jax import data
  from scaling_jax.config import default_config

  base = default_config()
  base.model.vocab_size = args.vocab_size
  base.model.n_ctx = 128
  base.data.data_dir = args.data_dir
  base.data.eval_sets = ("validation", "test", "ood_prose", "ood_numpy")
  from scaling_jax.data import sources
  cold = not any(sources.data_root(base).glob(f"tokens/scaling_jax_stdlib/*/*/bpe{args.vocab_size}/train.npy"))
  t0 = time.perf_counter()
  info = data.prepare(base)
  prepare_s = time.perf_counter() - t0

  rows = []
  for batch in (16, 32, 64):
    for workers in (0,):
      c = base.copy_and_resolve_references()
      c.train.batch_size = batch
      c.data.worker_count = workers
      tps, first = measure(c, args.seconds)
      rows.append((batch, c.model.n_ctx, workers, tps, first))
      print(f"batch {batch:>3} x n_ctx {c.model.n_ctx}  workers {workers}: "
            f"{tps:,.0f} tokens/s  (first batch {first * 1e3:.0f} ms)")

  cmd = "python bench/bench_loader.py" + (f" --vocab-size {args.vocab_size}" if args.vocab_size != 4096 else "")
  lines = [
      SECTION, "",
      f"`{cmd}` on {platform.machine()} {platform.processor() or ''} with {os.cpu_count()} CPU "
      f"cores; Python {platform.python_version()}, numpy {np.__version__}, grain "
      f"{getattr(grain, '__version__', '?')}, tfds {tfds.__version__}, sentencepiece "
      f"{sentencepiece.__version__}.", "",
      f"Dataset: {info.name} {info.version}, BPE vocab {info.vocab_size}, "
      f"{info.train_tokens:,} train tokens. `prepare()` took {prepare_s:.1f} s "
      + ("(cold: TFDS build + tokenizer training + tokenizing all splits)." if cold else
         "(cache already built; a cold build takes 15-30 s on 2 cores)."), "",
      "| batch (seqs) | n_ctx | worker_count | loader tokens/s | first batch (ms) |",
      "| --- | --- | --- | --- | --- |",
  ]
  lines += [f"| {b} | {n} | {w} | {t:,.0f} | {f * 1e3:.0f} |" for b, n, w, t, f in rows]
  from bench_train import CPU_SHAPES, make_config, time_steps
  trained = {}
  for n_layer, d in (CPU_SHAPES[0], CPU_SHAPES[-1]):
    cfg = make_config(n_layer, d, n_ctx=128, vocab=args.vocab_size, batch=32)
    trained[f"{n_layer}x{d}"] = time_steps(cfg, 6)["tokens_per_s"]
  loader_32 = next(t for b, _, _, t, _ in rows if b == 32)
  fastest = max(trained.values())
  lines += ["", "Training, same run, batch 32 x 128, GNS on: " + ", ".join(
      f"{k} {v:,.0f} tokens/s" for k, v in trained.items()) + f". The loader (batch 32) is "
      f"{loader_32 / fastest:,.0f}x the fastest model's rate, so it is not the bottleneck (a "
      "batch is one gather from a memory-mapped token array)."]
  if not args.no_write:
    write_section("\n".join(lines) + "\n", SECTION, BENCHMARKS)
    print(f"wrote section {SECTION!r} of BENCHMARKS.md")
  return 0


if __name__ == "__main__":
  sys.exit(main())
