"""A tiny model for tests and smoke runs (seconds on a laptop CPU)."""

from scaling_jax.config import default_config


def get_config():
  c = default_config()
  c.model.update(n_layer=2, d_model=32, n_heads=4, d_ff=128, n_ctx=32, vocab_size=512)
  c.train.update(batch_size=16, num_steps=20, log_every=5, eval_every=10, ckpt_every=10)
  c.optim.update(lr=3e-3, warmup_steps=5)
  c.data.eval_batches = 2
  return c
