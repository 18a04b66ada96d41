"""grain pipelines over a flat token array: packed n_ctx+1 windows, shuffled, sharded.

Documents are already packed (joined with EOS) in the token array, so sequence i is the
window tokens[i*n_ctx : i*n_ctx + n_ctx + 1]: consecutive windows share one token, every
token of the first D is a target exactly once per epoch. The sampler is a grain
MapDataset (random access), so the iterator state is one integer and resuming is exact.
"""

from __future__ import annotations

import numpy as np
import grain

from scaling_jax.data.corpus import DataError


def token_array(path) -> np.ndarray:
  return np.load(path, mmap_mode="r").reshape(-1)


class Windows:
  """Maps a [B] array of global sequence ids to this process's [B/P, n_ctx+1] int32 rows."""

  def __init__(self, path, n_ctx: int, lo: int, hi: int):
    self.path, self.n_ctx, self.lo, self.hi = str(path), n_ctx, lo, hi
    self._tokens = None
    self._offsets = np.arange(n_ctx + 1, dtype=np.int64)

  def __getstate__(self):  # picklable for grain worker processes: reopen the memmap there
    return {k: v for k, v in self.__dict__.items() if k != "_tokens"}

  def __setstate__(self, state):
    self.__dict__.update(state, _tokens=None)

  def __call__(self, ids_B: np.ndarray) -> np.ndarray:
    if self._tokens is None:
      self._tokens = token_array(self.path)
    starts = np.asarray(ids_B[self.lo:self.hi], np.int64) * self.n_ctx
    return self._tokens[starts[:, None] + self._offsets].astype(np.int32)


def local_rows(batch_size: int, process_index: int, process_count: int) -> tuple[int, int]:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise DataError(f"process_index={process_index} must be in [0, process_count={process_count})")
  if batch_size % process_count:
    raise DataError(f"config.train.batch_size={batch_size} is not divisible by the "
                    f"{process_count} processes; use a multiple of {process_count}")
  per = batch_size // process_count
  return process_index * per, (process_index + 1) * per


class TrainIterator:
  """Infinite iterator of [B/P, n_ctx+1] int32 batches with a JSON-serialisable state.

  Global batch b holds the shuffled sequences b*B..(b+1)*B-1 of an endless stream of
  epochs (reshuffled each epoch); process p gets rows p*B/P..(p+1)*B/P-1 of it, so
  processes see disjoint, jointly complete shards and the global batch does not depend
  on the number of processes.
  """

  def __init__(self, path, *, n_ctx: int, dataset_tokens: int, batch_size: int, seed: int,
               shuffle: bool, process_index: int = 0, process_count: int = 1,
               worker_count: int = 0):
    self.n_sequences = (dataset_tokens - 1) // n_ctx
    if self.n_sequences < 1:
      raise DataError(f"D={dataset_tokens} tokens give no sequence of n_ctx+1={n_ctx + 1}; "
                      "raise config.data.max_tokens")
    self.batch_size = batch_size
    self.tokens_per_epoch = self.n_sequences * n_ctx  # target tokens in one epoch
    self._fingerprint = {"n_sequences": self.n_sequences, "batch_size": batch_size,
                         "n_ctx": n_ctx, "seed": int(seed), "shuffle": bool(shuffle),
                         "worker_count": int(worker_count)}
    lo, hi = local_rows(batch_size, process_index, process_count)
    ds = grain.MapDataset.range(self.n_sequences)
    if shuffle:
      ds = ds.shuffle(seed=int(seed) % 2**32)
    ds = ds.repeat().batch(batch_size).map(Windows(path, n_ctx, lo, hi))
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=8))
    if worker_count > 0:
      from absl import flags  # pylint: disable=g-import-not-at-top
      if not flags.FLAGS.is_parsed():  # grain's workers read its absl flags
        flags.FLAGS.mark_as_parsed()
      it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    self._it = iter(it_ds)
    self._batches = 0

  def __iter__(self):
    return self

  def __next__(self) -> np.ndarray:
    batch = next(self._it)
    self._batches += 1
    return batch

  @property
  def epoch(self) -> float:
    """Epochs completed (fractional) over the D-token training set."""
    return self._batches * self.batch_size / self.n_sequences

  def get_state(self) -> dict:
    return {"batches": self._batches, "grain": self._it.get_state(), **self._fingerprint}

  def set_state(self, state: dict) -> None:
    diff = {k: (state.get(k), v) for k, v in self._fingerprint.items() if state.get(k) != v}
    if diff:
      raise DataError(f"the saved data-iterator state was made with other data settings "
                      f"(saved, now): {diff}; resume with the original config")
    self._it.set_state(state["grain"])
    self._batches = int(state["batches"])


def eval_batches(path, *, n_ctx: int, batch_size: int, num_batches: int, process_index: int = 0,
                 process_count: int = 1, name: str = "eval") -> list[np.ndarray]:
  """num_batches fixed batches of windows spread evenly over a split (identical every call)."""
  tokens = token_array(path)
  n_windows = (tokens.shape[0] - 1) // n_ctx
  if n_windows < 1:
    raise DataError(f"eval set {name!r} has {tokens.shape[0]} tokens, fewer than one sequence "
                    f"of n_ctx+1={n_ctx + 1}; drop it from config.data.eval_sets or lower n_ctx")
  needed = num_batches * batch_size
  if n_windows >= needed:
    ids = (np.arange(needed, dtype=np.int64) * n_windows) // needed
  else:  # a small set: every window, repeated
    ids = np.arange(needed, dtype=np.int64) % n_windows
  windows = Windows(path, n_ctx, *local_rows(batch_size, process_index, process_count))
  return [windows(ids[b * batch_size:(b + 1) * batch_size]) for b in range(num_batches)]
