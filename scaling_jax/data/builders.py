"""TFDS builders (array_record, no TensorFlow) for the embedded corpus and a user's files,
and opening any prepared TFDS catalog dataset by name.

TFDS writes each build into an `incomplete.*` directory and renames it when done, so a
half-built dataset is never read; `locked()` keeps two processes from building at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import pathlib
from typing import Iterator

import tensorflow_datasets as tfds

from scaling_jax.data import corpus
from scaling_jax.data.corpus import DataError

log = logging.getLogger(__name__)

FEATURES = {"text": tfds.features.Text()}


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
  """An exclusive inter-process file lock (held while building a cache entry)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _info(builder, description: str) -> tfds.core.DatasetInfo:
  return tfds.core.DatasetInfo(
      builder=builder, description=description,
      features=tfds.features.FeaturesDict(FEATURES), metadata=tfds.core.MetadataDict())


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder with no download and no checksums file.

  `code_path = None` stops tfds from probing this package for checksums, which needs the
  optional `importlib_resources` module.
  """
  code_path = None


class ScalingJaxStdlib(_LocalBuilder):
  """The running interpreter's standard library source, split by file; OOD eval splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "stdlib .py files split 90/5/5 by file; ood_prose, ood_numpy."}

  def _info(self) -> tfds.core.DatasetInfo:
    return _info(self, "Python standard library source code (human-written code and "
                 "docstrings), already on every machine that runs Python; OOD splits: "
                 "pydoc topics (English prose) and numpy's source (other authors).")

  def _split_generators(self, dl_manager):
    del dl_manager
    files = corpus.stdlib_files()
    split_of = corpus.assign_splits(files)
    by_split = {s: [f for f in files if split_of[f] == s] for s in ("train", "validation", "test")}
    md = self.info.metadata
    md["stdlib_root_version"] = corpus.stdlib_fingerprint()
    md["files"] = by_split
    md["counts"] = {}
    gens = {s: self._generate_examples(s, fs) for s, fs in by_split.items() if fs}
    for name in corpus.OOD_SETS:
      gens[name] = self._generate_examples(name, None)
    return gens

  def _generate_examples(self, split, files):
    counts = corpus.Counts()
    docs = corpus.ood_docs(split, counts) if files is None else corpus.stdlib_docs(files, counts)
    for key, text in docs:
      yield key, {"text": text}
    self.info.metadata["counts"][split] = counts.as_dict()


@dataclasses.dataclass
class TextFilesConfig(tfds.core.BuilderConfig):
  files: tuple[str, ...] = ()


class ScalingJaxTextFiles(_LocalBuilder):
  """A user's .txt/.jsonl corpus; documents split 90/5/5 by a hash of their key."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "text files and jsonl lines, split by document key hash."}
  BUILDER_CONFIG_CLASS = TextFilesConfig

  def _info(self) -> tfds.core.DatasetInfo:
    return _info(self, "Text files given by config.data.paths.")

  def _split_generators(self, dl_manager):
    del dl_manager
    files = [pathlib.Path(f) for f in self.builder_config.files]
    keys = [k for k, _ in corpus.text_file_docs(files, corpus.Counts())]
    if not keys:
      raise DataError(f"the corpus in {len(files)} file(s) ({files[0]}, ...) has no non-empty "
                      "text documents; check config.data.paths")
    split_of = corpus.assign_splits(keys)
    md = self.info.metadata
    md["files"] = [str(f) for f in files]
    md["documents"] = {s: sum(v == s for v in split_of.values()) for s in ("train", "validation", "test")}
    md["counts"] = {}
    return {s: self._generate_examples(s, split_of) for s, n in md["documents"].items() if n}

  def _generate_examples(self, split, split_of):
    counts = corpus.Counts()
    files = [pathlib.Path(f) for f in self.builder_config.files]
    for key, text in corpus.text_file_docs(files, counts):
      if split_of.get(key) == split:
        yield key, {"text": text}
    self.info.metadata["counts"][split] = counts.as_dict()


def _prepare(builder, root: pathlib.Path) -> tfds.core.DatasetBuilder:
  """Builds once (under a lock); returns a builder whose info is read from the finished build."""
  if builder.is_prepared():
    return builder
  with locked(root / "locks" / f"{builder.name}-{builder.builder_config.name}.lock"):
    if not builder.is_prepared():
      log.info("building %s/%s into %s", builder.name, builder.builder_config.name, builder.data_dir)
      tfds.disable_progress_bar()
      builder.download_and_prepare(
          download_dir=str(root / "downloads"),
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return type(builder)(data_dir=str(root / "tfds"), config=builder.builder_config,
                       file_format="array_record")


def stdlib_builder(root: pathlib.Path) -> tfds.core.DatasetBuilder:
  config = tfds.core.BuilderConfig(name=corpus.stdlib_fingerprint(),
                                   description="stdlib of this interpreter + numpy OOD")
  b = ScalingJaxStdlib(data_dir=str(root / "tfds"), config=config, file_format="array_record")
  return _prepare(b, root)


def text_files_builder(root: pathlib.Path, paths) -> tfds.core.DatasetBuilder:
  files = corpus.expand_paths(paths)
  config = TextFilesConfig(name=f"c{corpus.files_fingerprint(files)}",
                           files=tuple(str(f) for f in files))
  b = ScalingJaxTextFiles(data_dir=str(root / "tfds"), config=config, file_format="array_record")
  return _prepare(b, root)


def catalog_builder(name: str, data_dirs: list[str]) -> tfds.core.DatasetBuilder:
  """A TFDS catalog dataset the user already prepared (never downloads)."""
  tried = []
  for d in data_dirs + [None]:
    try:
      b = tfds.builder(name, data_dir=d)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise DataError(
          f"config.data.name={name!r} is neither stdlib, text_files, array nor a TFDS catalog "
          f"dataset ({str(e).splitlines()[0][:120]}); pick one of those") from None
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f"cannot open TFDS dataset {name!r}: {type(e).__name__}: {e}") from None
    tried.append(str(b.data_dir))
    if b.is_prepared():
      fmt = getattr(b.info, "file_format", None)
      fmt = str(getattr(fmt, "value", fmt) or "")
      if "array_record" not in fmt:
        raise DataError(f"TFDS dataset {name!r} at {b.data_dir} is stored as {fmt or 'tfrecord'}, "
                        f"which needs TensorFlow; rebuild it with `tfds build {name} "
                        "--file_format=array_record`")
      return b
  raise DataError(f"TFDS dataset {name!r} is not prepared (looked in {', '.join(tried)}) and "
                  f"nothing is downloaded; run `tfds build {name} --file_format=array_record` "
                  "or set config.data.data_dir to where it is")


def text_feature(builder) -> str:
  """The name of the text feature of a catalog dataset ('text' in lm1b, c4, wikitext)."""
  feats = builder.info.features
  if "text" in feats:
    return "text"
  for k, f in feats.items():
    if isinstance(f, tfds.features.Text):
      return k
  raise DataError(f"TFDS dataset {builder.name!r} has no text feature ({list(feats)}); "
                  "only text datasets can be tokenized")


def split_names(builder) -> list[str]:
  return list(builder.info.splits.keys())


def iter_texts(builder, split: str, key: str = "text") -> Iterator[str]:
  """Documents of a split in the stored (deterministic) order, decoded to str."""
  source = builder.as_data_source(split=split)
  for i in range(len(source)):
    value = source[i][key]
    yield value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
