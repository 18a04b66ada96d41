"""SentencePiece BPE tokenizer: trained once on a sample of the train split, cached, and
used to tokenize each split once into a flat `.npy` of token ids (documents end in EOS).

Settings keep code and prose lossless: identity normalisation, whitespace kept (runs of
spaces may be pieces), "\\n" a piece of its own, byte_fallback so no input is unencodable.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pathlib
from typing import Iterable, Iterator

import numpy as np
import sentencepiece as spm

from scaling_jax.data.corpus import DataError

log = logging.getLogger(__name__)

PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
SAMPLE_CHARS = 10_000_000  # tokenizer training sample: ~3 s of BPE training on 2 cores
MAX_LINE = 4096
MIN_VOCAB = 300  # 256 byte pieces + specials + a few characters


def _sample_lines(texts: Iterable[str], max_chars: int) -> Iterator[str]:
  """Non-empty lines of the first documents, up to max_chars (long lines cut)."""
  total = 0
  for text in texts:
    for line in text.split("\n"):
      if not line.strip():
        continue
      for i in range(0, len(line), MAX_LINE):
        piece = line[i:i + MAX_LINE]
        total += len(piece)
        yield piece
    if total >= max_chars:
      return


def train(texts: Iterable[str], vocab_size: int, model_path: pathlib.Path,
          sample_chars: int = SAMPLE_CHARS) -> None:
  """Trains a BPE model on the first `sample_chars` characters of `texts`; deterministic."""
  if vocab_size < MIN_VOCAB:
    raise DataError(f"tokenizer vocab_size={vocab_size} is too small for a byte-fallback BPE "
                    f"tokenizer; set config.model.vocab_size >= {MIN_VOCAB}")
  lines = list(_sample_lines(texts, sample_chars))
  if not lines:
    raise DataError("the train split has no text to train the tokenizer on; add documents")
  proto = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=proto, vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, character_coverage=0.9995,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
        user_defined_symbols=["\n"], max_sentence_length=4 * MAX_LINE + 16,
        pad_id=PAD_ID, eos_id=EOS_ID, bos_id=BOS_ID, unk_id=UNK_ID,
        num_threads=min(4, os.cpu_count() or 1), minloglevel=2)
  except RuntimeError as e:
    reason = str(e).strip().splitlines()[-1].rsplit("] ", 1)[-1][:200]
    raise DataError(
        f"sentencepiece could not train a {vocab_size}-token vocabulary on "
        f"{sum(map(len, lines))} characters ({reason}); change config.model.vocab_size "
        "or use a larger corpus") from None
  write_atomic(model_path, proto.getvalue())


def load(model_path: pathlib.Path) -> spm.SentencePieceProcessor:
  return spm.SentencePieceProcessor(model_file=str(model_path))


def write_atomic(path: pathlib.Path, data: bytes) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_bytes(data)
  os.replace(tmp, path)


def token_dtype(vocab_size: int):
  return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


def tokenize_to_file(sp: spm.SentencePieceProcessor, texts: Iterable[str], path: pathlib.Path,
                     limit: int = -1, chunk_docs: int = 256) -> dict:
  """Encodes documents (each followed by EOS) into one flat `.npy`, written atomically.

  Stops once `limit` tokens (> 0) are written. Returns {"tokens", "documents"}, also saved
  beside the array as `<name>.json`.
  """
  dtype = token_dtype(sp.get_piece_size())
  path.parent.mkdir(parents=True, exist_ok=True)
  raw = path.with_name(f".{path.name}.raw{os.getpid()}")
  n_tokens = n_docs = 0
  threads = min(4, os.cpu_count() or 1)

  def flush(batch, f):
    nonlocal n_tokens, n_docs
    for ids in sp.encode(batch, num_threads=threads):
      ids.append(EOS_ID)
      f.write(np.asarray(ids, dtype).tobytes())
      n_tokens += len(ids)
      n_docs += 1

  with open(raw, "wb") as f:
    batch = []
    for text in texts:
      batch.append(text)
      if len(batch) == chunk_docs:
        flush(batch, f)
        batch = []
        if 0 < limit <= n_tokens:
          break
    if batch and not 0 < limit <= n_tokens:
      flush(batch, f)
  flat = np.memmap(raw, dtype=dtype, mode="r", shape=(n_tokens,)) if n_tokens else np.zeros(0, dtype)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n_tokens,))
  step = 1 << 24
  for i in range(0, n_tokens, step):
    out[i:i + step] = flat[i:i + step]
  out.flush()
  del out, flat
  os.remove(raw)
  meta = {"tokens": n_tokens, "documents": n_docs, "limit": limit}
  write_atomic(path.with_suffix(".json"), json.dumps(meta).encode())
  os.replace(tmp, path)  # the array last: its presence marks the entry complete
  return meta
