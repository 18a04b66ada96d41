"""Where a CPU train step's time goes, and what each of the CPU defaults buys.

  python bench/bench_profile.py [--n-layer 4 --d-model 128] [--reps 8]

Times jitted forward + backward passes of one model (batch 32 x 128, vocab 4096, f32) in
variants that switch one default off at a time: the fused chunked loss
(`model.loss_chunk_tokens`), the einsum attention (`model.attention`), passes of at most
1024 tokens (`train.max_pass_tokens`), and the head altogether; and with other pass and
loss-chunk sizes than the defaults. The passes are summed by the train step's own
`train.summed_value_and_grad`. Interleaved so that machine noise hits all alike; median of
`--reps`. Prints a table and writes the "Step profile (CPU)" section of BENCHMARKS.md.
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

from scaling_jax import config as config_lib, model as model_lib, sharding, train  # noqa: E402
from scaling_jax.sharding import strip_boxes  # noqa: E402

HEADING = "## Step profile (CPU)"
DEFAULT = "defaults: fused loss, einsum attention, passes of <= 1024 tokens"


def pieces(n_layer: int, d_model: int, batch: int = 32, n_ctx: int = 128, vocab: int = 4096):
  """name -> jitted (params, tokens) -> gradient, for the default step and its variants."""
  def model_cfg(**kw):
    cfg = config_lib.default_config().model
    cfg.update(n_layer=n_layer, d_model=d_model, n_heads=4, d_ff=4 * d_model, n_ctx=n_ctx,
               vocab_size=vocab, **{"attention": "einsum", **kw})
    return cfg

  tokens = jnp.asarray(np.random.default_rng(0).integers(0, vocab, (batch, n_ctx + 1)),
                       jnp.int32)
  params = strip_boxes(model_lib.build(model_cfg()).init(jax.random.key(0), tokens[:, :-1]))
  params = params["params"]

  def grad(cfg, passes: int, loss=None):
    grad_fn = jax.value_and_grad(loss or train.make_loss_fn(model_lib.build(cfg)))
    return jax.jit(lambda p, t: train.summed_value_and_grad(
        grad_fn, p, train.interleave(t, passes))[1])

  def passes_for(cap: int) -> int:  # what the train step does for a cap of `cap` tokens
    c = config_lib.default_config()
    c.model.n_ctx = n_ctx
    c.train.update(batch_size=batch, max_pass_tokens=cap)
    c.gns.enabled = False
    return train.passes_per_micro_batch(c, sharding.make_mesh(c, jax.devices()[:1]))

  passes = passes_for(-1)
  model = model_lib.build(model_cfg())

  def hidden_loss(p, t):  # the same network without the unembedding and cross-entropy
    return jnp.mean(model.apply({"params": p}, t[:, :-1], return_hidden=True) ** 2)

  fns = {
      DEFAULT: grad(model_cfg(), passes),
      "unfused loss (logits + optax cross-entropy)": grad(model_cfg(loss_chunk_tokens=0), passes),
      "XLA attention (jax.nn.dot_product_attention)": grad(model_cfg(attention="xla"), passes),
      f"one pass of {batch * n_ctx} tokens": grad(model_cfg(), 1),
      "passes of <= 512 tokens": grad(model_cfg(), passes_for(512)),
      "passes of <= 2048 tokens": grad(model_cfg(), passes_for(2048)),
      "loss chunks of 128 tokens (default: 4 MiB of logits = 256)": grad(
          model_cfg(loss_chunk_tokens=128), passes),
      "loss chunks of 1024 tokens": grad(model_cfg(loss_chunk_tokens=1024), passes),
      "all three off (the step before these defaults)": grad(
          model_cfg(loss_chunk_tokens=0, attention="xla"), 1),
      "no head (hidden states only)": grad(model_cfg(), passes, hidden_loss),
      "forward only (loss)": jax.jit(train.make_loss_fn(model)),
  }
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
  base = med[DEFAULT]
  lines = [HEADING, "", f"`python bench/bench_profile.py --n-layer {args.n_layer} --d-model "
           f"{args.d_model}` on {environment()}.", "",
           f"Model {args.n_layer} x {args.d_model}, batch 32 x 128, vocab 4096, f32: the gradient "
           f"of the loss (forward + backward, no optimizer) in variants, jitted separately and "
           f"interleaved, median of {args.reps}.", "",
           "| variant | ms | vs defaults |", "| --- | --- | --- |"]
  lines += [f"| {k} | {v * 1e3:.1f} | {v / base:.2f}x |" for k, v in med.items()]
  head = base - med["no head (hidden states only)"]
  lines += ["", f"With the defaults the 4096-way head (unembedding + cross-entropy) costs "
            f"{head * 1e3:.0f} ms, {head / base:.0%} of forward + backward."]
  publish(lines, HEADING, write=not args.no_write)
  return 0


if __name__ == "__main__":
  sys.exit(main())
