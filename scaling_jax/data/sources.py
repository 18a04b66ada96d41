"""From a config to token arrays on disk: build the dataset, train the tokenizer, tokenize
the splits once (all cached and reused), and describe the result as a `DataInfo`.

Cache layout under the data root (config.data.data_dir, $SCALING_JAX_DATA or
~/.cache/scaling_jax):
  tfds/<builder>/<config>/<version>/        array_record files + dataset_info.json
  tokens/<builder>/<config>/<version>/bpe<V>/spm.model, <split>.npy, <split>.json
  locks/                                    inter-process build locks
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re

import numpy as np

from scaling_jax.data import builders, corpus, tokenizer
from scaling_jax.data.corpus import DataError

log = logging.getLogger(__name__)

BUILTIN = ("stdlib", "text_files", "array")


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What the trainer records about its data (config.json facts: dataset, D)."""
  name: str
  version: str
  vocab_size: int
  train_tokens: int  # tokens in the train split (documents joined with EOS)
  dataset_tokens: int  # D: the first D train tokens are the ones ever used
  eval_sets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Prepared:
  info: DataInfo
  token_paths: dict  # split or eval-set name -> .npy of token ids


def data_root(config) -> pathlib.Path:
  """The local data cache; a URL is refused (never turned into a local folder `gs:/...`):
  the token arrays are memory-mapped and TFDS builds under a file lock."""
  d = config.data.data_dir or os.environ.get("SCALING_JAX_DATA") or "~/.cache/scaling_jax"
  if "://" in d:
    raise DataError(f"data directory {d} is remote, but the token cache is memory-mapped and "
                    "must be local; copy the prepared cache to local disk (gcloud storage cp "
                    "-r) and set config.data.data_dir (or $SCALING_JAX_DATA) to it")
  return pathlib.Path(os.path.expanduser(d)).resolve()


def vocab_size(config) -> int:
  v, m = int(config.data.tokenizer_vocab_size), int(config.model.vocab_size)
  if v <= 0:
    return m
  if v != m:
    raise DataError(f"config.data.tokenizer_vocab_size={v} differs from config.model.vocab_size="
                    f"{m}; set them equal (or tokenizer_vocab_size=-1 to follow the model)")
  return v


def _eval_sets(config) -> tuple[str, ...]:
  sets = config.data.eval_sets
  if isinstance(sets, str):
    sets = [s for s in sets.split(",")]
  return tuple(s.strip() for s in sets if s.strip())


def _dataset_tokens(config, train_tokens: int) -> int:
  d = int(config.data.max_tokens)
  if d > train_tokens:
    log.warning("config.data.max_tokens=%d exceeds the %d train tokens; using all of them",
                d, train_tokens)
  dataset_tokens = train_tokens if d <= 0 else min(d, train_tokens)
  n_ctx = int(config.model.n_ctx)
  if dataset_tokens < n_ctx + 1:
    raise DataError(f"only {dataset_tokens} training tokens (D), fewer than one sequence of "
                    f"n_ctx+1={n_ctx + 1}; raise config.data.max_tokens or use more data")
  return dataset_tokens


_CACHE: dict = {}


def prepare(config) -> Prepared:
  """Builds (once, cached on disk and in this process) everything the config names."""
  key = (config.data.name, str(config.data.paths), str(data_root(config)), vocab_size(config),
         int(config.data.max_tokens), _eval_sets(config), config.data.array_path,
         int(config.model.n_ctx))
  if key not in _CACHE:
    name = config.data.name
    if name == "array":
      _CACHE[key] = _prepare_array(config)
    else:
      _CACHE[key] = _prepare_tfds(config)
  return _CACHE[key]


def _prepare_array(config) -> Prepared:
  if "://" in (config.data.array_path or ""):
    raise DataError(f"config.data.array_path={config.data.array_path} is remote, but token "
                    "arrays are memory-mapped; copy it to local disk and point array_path there")
  path = pathlib.Path(os.path.expanduser(config.data.array_path or ""))
  if not config.data.array_path or not path.is_file():
    raise DataError(f"config.data.array_path={config.data.array_path!r} is not a file; point it "
                    "at a .npy of token ids (data.name='array')")
  try:
    arr = np.load(path, mmap_mode="r")
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"cannot read {path} as a .npy array ({e}); save token ids with np.save") from None
  v = vocab_size(config)
  if not np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
    raise DataError(f"{path} holds {arr.dtype} of size {arr.size}; it must be a non-empty "
                    "integer array of token ids")
  lo, hi = int(arr.min()), int(arr.max())
  if lo < 0 or hi >= v:
    raise DataError(f"{path} has token ids in [{lo}, {hi}] but config.model.vocab_size={v}; "
                    f"set config.model.vocab_size >= {hi + 1}")
  paths = {"train": path}
  for name in _eval_sets(config):
    sibling = path.with_name(f"{path.stem}.{name}.npy")
    if sibling.is_file():
      paths[name] = sibling
    elif name in ("train", "validation"):
      log.warning("no %s beside %s; evaluating %r on the training array", sibling.name, path, name)
      paths[name] = path
    else:
      raise DataError(f"eval set {name!r} of the array dataset needs {sibling}; create it or "
                      "drop it from config.data.eval_sets")
  st = path.stat()
  info = DataInfo(name="array", version=f"{st.st_size}-{st.st_mtime_ns}", vocab_size=v,
                  train_tokens=int(arr.size),
                  dataset_tokens=_dataset_tokens(config, int(arr.size)),
                  eval_sets=_eval_sets(config))
  return Prepared(info, paths)


def _builder(config, root: pathlib.Path):
  name = config.data.name
  if name == "stdlib":
    return builders.stdlib_builder(root)
  if name == "text_files":
    return builders.text_files_builder(root, config.data.paths)
  dirs = [str(root / "tfds")] + ([config.data.data_dir] if config.data.data_dir else [])
  return builders.catalog_builder(name, dirs)


def _prepare_tfds(config) -> Prepared:
  root = data_root(config)
  v = vocab_size(config)
  builder = _builder(config, root)
  is_catalog = config.data.name not in BUILTIN
  text_key = builders.text_feature(builder) if is_catalog else "text"
  version = f"{builder.version}"
  tag = f"{builder.name}/{builder.builder_config.name if builder.builder_config else 'default'}"
  out = root / "tokens" / tag / version / f"bpe{v}"

  # Where each split's documents come from: the dataset itself, or the OOD sets.
  own = builders.split_names(builder)
  if "train" not in own:
    raise DataError(f"dataset {tag} has no 'train' split (it has {own}); use another dataset")
  sources = {"train": (builder, "train", text_key)}
  ood_builder = None
  for name in _eval_sets(config):
    if name in own:
      sources[name] = (builder, name, text_key)
    elif name in corpus.OOD_SETS:
      if ood_builder is None:
        ood_builder = builder if config.data.name == "stdlib" else builders.stdlib_builder(root)
      if name not in builders.split_names(ood_builder):
        raise DataError(f"eval set {name!r} is unavailable on this machine; drop it from "
                        "config.data.eval_sets")
      sources[name] = (ood_builder, name, "text")
    else:
      raise DataError(f"unknown eval set {name!r} for dataset {tag}; choose among "
                      f"{sorted(set(own) | set(corpus.OOD_SETS))} (config.data.eval_sets)")

  limit = int(config.data.max_tokens) + 1 if is_catalog and int(config.data.max_tokens) > 0 else -1
  model_path = out / "spm.model"
  paths = {}
  for name in sources:
    fname = f"{name}.first{limit}.npy" if (name == "train" and limit > 0) else f"{name}.npy"
    paths[name] = out / fname
  lock = root / "locks" / (re.sub(r"[^A-Za-z0-9_.-]", "_", f"{tag}-{version}-bpe{v}") + ".lock")
  if not (model_path.exists() and all(p.exists() for p in paths.values())):
    with builders.locked(lock):
      if not model_path.exists():
        log.info("training a %d-token BPE tokenizer on %s train", v, tag)
        tokenizer.train(builders.iter_texts(builder, "train", text_key), v, model_path)
      sp = None
      for name, (b, split, key) in sources.items():
        if paths[name].exists():
          continue
        sp = sp or tokenizer.load(model_path)
        log.info("tokenizing %s %s -> %s", tag, name, paths[name])
        lim = limit if name == "train" else -1
        tokenizer.tokenize_to_file(sp, builders.iter_texts(b, split, key), paths[name], limit=lim)
  sp_size = tokenizer.load(model_path).get_piece_size()
  if sp_size != v:
    raise DataError(f"the cached tokenizer {model_path} has {sp_size} tokens, not "
                    f"config.model.vocab_size={v}; delete it or set vocab_size={sp_size}")
  train_tokens = int(np.load(paths["train"], mmap_mode="r").shape[0])
  if train_tokens == 0:
    raise DataError(f"dataset {tag} has an empty train split; add documents")
  info = DataInfo(name=config.data.name, version=f"{version}+{tag.split('/', 1)[1]}",
                  vocab_size=v, train_tokens=train_tokens,
                  dataset_tokens=_dataset_tokens(config, train_tokens),
                  eval_sets=_eval_sets(config))
  return Prepared(info, paths)


def tokenizer_path(config) -> pathlib.Path | None:
  """The SentencePiece model of a prepared config (None for data.name='array')."""
  p = prepare(config).token_paths["train"]
  return None if config.data.name == "array" else p.parent / "spm.model"


def token_count(config, name: str) -> int:
  """Tokens in a prepared split or eval set."""
  return int(np.load(prepare(config).token_paths[name], mmap_mode="r").size)
