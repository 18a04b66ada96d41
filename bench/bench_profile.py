"""Where a CPU train step's time goes: forward, backward, the head, micro-batching.

  python bench/bench_profile.py [--n-layer 4 --d-model 128] [--reps 8]

Times jitted pieces of one model (batch 32 x 128, vocab 4096, f32), interleaved so that
machine noise hits all alike; median of `--reps`. Prints a table and writes the
"Step profile (CPU)" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import environment, publish  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from scaling_jax import config as config_lib, model as model_lib, train  # noqa: E402
from scaling_jax.sharding import strip_boxes  # noqa: E402

HEADING = "## Step profile (CPU)"


def pieces(n_layer: int, d_model: int, batch: int = 32, n_ctx: int = 128, vocab: int = 4096):
  cfg = config_lib.default_config().model
  cfg.update(n_layer=n_layer, d_model=d_model, n_heads=4, d_ff=4 * d_model, n_ctx=n_ctx,
             vocab_size=vocab)
  model = model_lib.build(cfg)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, vocab, (batch, n_ctx + 1)),
                       jnp.int32)
  params = strip_boxes(model.init(jax.random.key(0), tokens[:, :-1]))["params"]
  loss = train.make_loss_fn(model)

  def hidden_loss(p, t):  # the same network without the unembedding and cross-entropy
    return jnp.mean(model.apply({"params": p}, t[:, :-1], return_hidden=True) ** 2)

  def onehot_loss(p, t):  # the cross-entropy as log-sum-exp minus a one-hot product
    logits = model.apply({"params": p}, t[:, :-1]).astype(jnp.float32)
    target = jnp.sum(logits * jax.nn.one_hot(t[:, 1:], vocab, dtype=jnp.float32), -1)
    return jnp.mean(jax.nn.logsumexp(logits, -1) - target)

  def micro(k):
    def f(p, t):
      def body(acc, mb):
        return jax.tree.map(jnp.add, acc, jax.grad(loss)(p, mb)), None
      return jax.lax.scan(body, jax.tree.map(jnp.zeros_like, p),
                          t.reshape(t.shape[0] // k, k, -1).swapaxes(0, 1))[0]
    return jax.jit(f)

  fns = {"forward (loss)": jax.jit(loss), "forward + backward": jax.jit(jax.grad(loss)),
         "forward + backward, no head": jax.jit(jax.grad(hidden_loss)),
         "forward + backward, one-hot cross-entropy": jax.jit(jax.grad(onehot_loss)),
         "forward + backward, 2 micro-batches": micro(2),
         "forward + backward, 4 micro-batches": micro(4)}
  return fns, params, tokens


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n-layer", type=int, default=4)
  parser.add_argument("--d-model", type=int, default=128)
  parser.add_argument("--reps", type=int, default=8)
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  fns, params, tokens = pieces(args.n_layer, args.d_model)
  for f in fns.values():
    jax.block_until_ready(f(params, tokens))
  times = {k: [] for k in fns}
  for _ in range(args.reps):
    for name, f in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(f(params, tokens))
      times[name].append(time.perf_counter() - t0)
  med = {k: float(np.median(v)) for k, v in times.items()}
  full = med["forward + backward"]
  lines = [HEADING, "", f"`python bench/bench_profile.py --n-layer {args.n_layer} --d-model "
           f"{args.d_model}` on {environment()}.", "",
           f"Model {args.n_layer} x {args.d_model}, batch 32 x 128, vocab 4096, f32; pieces "
           f"jitted separately and interleaved, median of {args.reps}.", "",
           "| piece | ms | vs forward + backward |", "| --- | --- | --- |"]
  lines += [f"| {k} | {v * 1e3:.1f} | {v / full:.0%} |" for k, v in med.items()]
  head = full - med["forward + backward, no head"]
  lines += ["", f"The 4096-way head (unembedding + cross-entropy) costs {head * 1e3:.0f} ms, "
            f"{head / full:.0%} of forward + backward."]
  publish(lines, HEADING, write=not args.no_write)
  return 0


if __name__ == "__main__":
  sys.exit(main())
