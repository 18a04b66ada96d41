"""Training data: TFDS builders (array_record, no TensorFlow) -> SentencePiece -> grain.

The three calls the trainer makes:
  info = prepare(config)                 # build + tokenize once (cached), DataInfo
  it = make_train_iterator(config, ...)  # endless packed batches; get_state / set_state
  batches = make_eval_batches(config, "validation")  # fixed eval batches per tagged set
"""

from __future__ import annotations

import numpy as np

from scaling_jax.data import loader, sources
from scaling_jax.data.corpus import DataError, OOD_SETS
from scaling_jax.data.loader import TrainIterator
from scaling_jax.data.sources import DataInfo
from scaling_jax.data.tokenizer import EOS_ID, PAD_ID, BOS_ID

__all__ = ["DataError", "DataInfo", "TrainIterator", "prepare", "make_train_iterator",
           "make_eval_batches", "tokenizer_path", "OOD_SETS", "EOS_ID", "PAD_ID", "BOS_ID"]


def prepare(config) -> DataInfo:
  """Builds (idempotently, cached) the dataset and tokenizer the config names."""
  return sources.prepare(config).info


def make_train_iterator(config, *, process_index: int = 0, process_count: int = 1) -> TrainIterator:
  """Endless [batch_size / process_count, n_ctx + 1] int32 batches from the first D tokens."""
  p = sources.prepare(config)
  return TrainIterator(
      p.token_paths["train"], n_ctx=int(config.model.n_ctx),
      dataset_tokens=p.info.dataset_tokens, batch_size=int(config.train.batch_size),
      seed=int(config.seed), shuffle=bool(config.data.shuffle), process_index=process_index,
      process_count=process_count, worker_count=int(config.data.worker_count))


def make_eval_batches(config, name: str, *, process_index: int = 0,
                      process_count: int = 1) -> list[np.ndarray]:
  """config.data.eval_batches fixed batches of eval set `name` (a split or an OOD set)."""
  p = sources.prepare(config)
  if name not in p.token_paths:
    raise DataError(f"eval set {name!r} is not in config.data.eval_sets={p.info.eval_sets}; "
                    "add it there")
  return loader.eval_batches(
      p.token_paths[name], n_ctx=int(config.model.n_ctx),
      batch_size=int(config.train.batch_size), num_batches=int(config.data.eval_batches),
      process_index=process_index, process_count=process_count, name=name)


def tokenizer_path(config):
  """The SentencePiece model file of a config (None for data.name='array')."""
  return sources.tokenizer_path(config)
