"""Shared test helpers: a learnable token array and tiny configs that train in seconds."""

import pathlib

import numpy as np

from scaling_jax.config import default_config


def write_token_array(directory: pathlib.Path, n_tokens: int = 60_000, vocab: int = 128,
                      seed: int = 0) -> pathlib.Path:
  """A .npy corpus with structure (noisy arithmetic sequences) a tiny model can learn."""
  rng = np.random.default_rng(seed)
  starts = rng.integers(0, vocab, size=n_tokens // 50 + 1)
  steps = rng.integers(1, 4, size=starts.size)
  seq = (starts[:, None] + steps[:, None] * np.arange(50)[None]) % vocab
  tokens = seq.reshape(-1)[:n_tokens]
  noise = rng.random(n_tokens) < 0.05
  tokens = np.where(noise, rng.integers(0, vocab, size=n_tokens), tokens).astype(np.int32)
  path = directory / "tokens.npy"
  np.save(path, tokens)
  np.save(directory / "tokens.validation.npy", tokens[-5000:])
  return path


def tiny_config(array_path, **train):
  """A 2-layer model on the array corpus, all 8 simulated devices data-parallel."""
  c = default_config()
  c.model.update(n_layer=2, d_model=32, n_heads=4, d_ff=64, n_ctx=32, vocab_size=128)
  c.train.update(batch_size=16, num_steps=20, log_every=5, eval_every=10, ckpt_every=10,
                 progress=False)
  c.train.update(train)
  c.optim.update(lr=3e-3, warmup_steps=2)
  c.data.update(name="array", array_path=str(array_path), eval_batches=2)
  return c
