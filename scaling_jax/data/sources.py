"""From a config to token arrays on disk: build the dataset, train the tokenizer, tokenize
the splits once (all cached and reused), and describe the result as a `DataInfo`.

Cache layout under the data root (config.data.data_dir, $SCALING_JAX_DATA or
~/.cache/scaling_jax):
  tfds/<builder>/<config>/<version>/        array_record files + dataset_info.json
  tokens/<builder>/<config>/<version>/bpe<V>/spm.model, <split>.npy, <split>.json
  locks/                                    inter-process build locks

A remote data directory (gs://BUCKET/DIR, read and written through etils.epath) holds the
`tokens/` entries; the token arrays are memory-mapped, so a host works in a local mirror of
it (`mirror_root`). Before building, the entry's tokenizer and arrays that the bucket holds
are fetched into the mirror; what the host then had to build is published to the bucket, so
the next host or run fetches it. Arrays are only exchanged under the same tokenizer file.
The TFDS datasets are not mirrored: the built-in builders rebuild theirs locally from their
sources (the standard library, `data.paths`), and a catalog dataset is read by TFDS from the
remote directory itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re

import numpy as np

from scaling_jax import rundir, transfer
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


def data_dir(config) -> str:
  """Where the config's data lives: config.data.data_dir, $SCALING_JAX_DATA, or the default;
  a local path or a URL (gs://)."""
  return config.data.data_dir or os.environ.get("SCALING_JAX_DATA") or "~/.cache/scaling_jax"


def data_root(config) -> pathlib.Path:
  """The local data directory the token arrays are memory-mapped from. For a remote data
  directory (gs://), its local mirror (`mirror_root`); RemoteBackendError (one line: what to
  install) if the URL's backend is missing, never a local folder `gs:/...`."""
  d = data_dir(config)
  if rundir.is_remote(d):
    rundir.check_backend(d)
    return mirror_root(d)
  return pathlib.Path(os.path.expanduser(d)).resolve()


def mirror_root(url: str) -> pathlib.Path:
  """The local mirror of a remote data directory: $SCALING_JAX_DATA_MIRROR (default
  ~/.cache/scaling_jax/mirror) / scheme / bucket / path."""
  scheme, rest = url.split("://", 1)
  parts = [p for p in rest.split("/") if p]
  if not parts or any(p in (".", "..") for p in parts):
    raise DataError(f"data directory {url} names no bucket path; give it as gs://BUCKET/DIR")
  base = os.environ.get("SCALING_JAX_DATA_MIRROR") or "~/.cache/scaling_jax/mirror"
  return pathlib.Path(os.path.expanduser(base)).resolve().joinpath(scheme, *parts)


def _remote_of(config, root: pathlib.Path, local: pathlib.Path) -> str:
  return f"{data_dir(config).rstrip('/')}/{local.relative_to(root).as_posix()}"


def _entry_files(model_path: pathlib.Path, arrays) -> list[pathlib.Path]:
  """A tokenized entry's files in the order that keeps it consistent: the tokenizer first,
  each array's `.json` before the array, whose presence marks it complete."""
  return [model_path] + [f for a in arrays for f in (a.with_suffix(".json"), a)]


def _same_tokenizer(config, root, model_path) -> bool | None:
  """Whether the remote and local tokenizers of an entry are the same file (None: one of
  them is missing). Arrays are only exchanged under the same tokenizer."""
  remote = _remote_of(config, root, model_path)
  if not (model_path.exists() and rundir.exists(remote)):
    return None
  return model_path.read_bytes() == rundir.read_bytes(remote)


def fetch(config, root: pathlib.Path, model_path: pathlib.Path, arrays) -> None:
  """Copies what the remote data directory holds of a tokenized entry (tokenizer, arrays)
  and the local mirror lacks."""
  if not rundir.exists(_remote_of(config, root, model_path)):
    return
  if _same_tokenizer(config, root, model_path) is False:
    log.warning("the tokenizer %s differs from %s; using the local one", model_path,
                _remote_of(config, root, model_path))
    return
  for f in _entry_files(model_path, arrays):
    remote = _remote_of(config, root, f)
    if not f.exists() and rundir.exists(remote):
      log.info("fetching %s", remote)
      transfer.copy_file(remote, f)


def publish(config, root: pathlib.Path, model_path: pathlib.Path, arrays) -> None:
  """Uploads the tokenized entry built here to the remote data directory (what it lacks),
  so that other hosts and runs fetch it instead of building it."""
  if _same_tokenizer(config, root, model_path) is False:
    log.warning("not publishing %s: %s holds another tokenizer", model_path.parent,
                _remote_of(config, root, model_path))
    return
  for f in _entry_files(model_path, arrays):
    remote = _remote_of(config, root, f)
    if f.exists() and not rundir.exists(remote):
      log.info("publishing %s", remote)
      transfer.copy_file(f, remote)


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
  remote = rundir.is_remote(data_dir(config))
  if remote:
    fetch(config, root, model_path, paths.values())
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
  if remote:
    publish(config, root, model_path, paths.values())
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
