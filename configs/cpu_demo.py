"""The CPU demo model family: `--config.model.d_model` / `n_layer` pick the size.

Sizes used by `scaling-jax demo` span ~30x in non-embedding N at n_ctx=128 and a
4096-token vocabulary (see scaling_jax/demo.py for the sweep and its measured cost).
"""

from scaling_jax.config import default_config


def get_config():
  c = default_config()
  c.model.update(n_layer=4, d_model=128, n_heads=4, d_ff=512, n_ctx=128, vocab_size=4096)
  c.train.update(batch_size=32, num_steps=600, log_every=20, eval_every=100, ckpt_every=200)
  c.optim.update(lr=2e-3, warmup_steps=50, schedule="cosine")
  c.data.update(name="stdlib", eval_sets=("validation",), eval_batches=4)
  return c
