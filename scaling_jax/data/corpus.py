"""Raw text documents: the embedded stdlib corpus, the OOD sets and a user's own files.

Pure Python, no TFDS: each function yields `(key, text)` documents and counts what it
had to skip or repair, so the builders only have to write them out.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib.util
import json
import os
import pathlib
import sys
import sysconfig
from typing import Iterable, Iterator

from scaling_jax.config import ConfigError


class DataError(ConfigError):
  """Bad data input (missing path, empty corpus, unknown dataset...); says what to do."""


SPLIT_FRACTIONS = {"validation": 0.05, "test": 0.05}  # the rest is train
TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".jsonl")  # picked up from directories
BIG_TXT_CHARS = 1 << 20  # a .txt file longer than this is cut into several documents
CHUNK_CHARS = 1 << 18
OOD_MAX_CHARS = 3_000_000  # OOD sets only feed a few eval batches; cap their build time


@dataclasses.dataclass
class Counts:
  """What reading a corpus had to skip or repair (recorded in the dataset info)."""
  binary_files: int = 0  # skipped: NUL bytes in the first 8 KiB
  invalid_utf8_files: int = 0  # kept, undecodable bytes replaced by U+FFFD
  bad_jsonl_lines: int = 0  # skipped: not JSON, or no "text" string
  empty_documents: int = 0  # skipped

  def as_dict(self) -> dict[str, int]:
    return dataclasses.asdict(self)


def stable_hash(key: str) -> int:
  return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:8], "little")


def assign_splits(keys: Iterable[str]) -> dict[str, str]:
  """Deterministic train/validation/test assignment by hash of each document key.

  Keys are ordered by hash; the first 5% go to validation, the next 5% to test (at least
  one each once there are 3 keys), so even tiny corpora get non-empty eval splits.
  """
  ordered = sorted(set(keys), key=lambda k: (stable_hash(k), k))
  n = len(ordered)
  out = {}
  start = 0
  for split, frac in SPLIT_FRACTIONS.items():
    k = max(1, round(frac * n)) if n >= 3 else 0
    for key in ordered[start:start + k]:
      out[key] = split
    start += k
  for key in ordered[start:]:
    out[key] = "train"
  return out


def read_text(path: pathlib.Path, counts: Counts) -> str | None:
  """A file's text, or None for a binary file; invalid UTF-8 is replaced and counted."""
  raw = path.read_bytes()
  if b"\x00" in raw[:8192]:
    counts.binary_files += 1
    return None
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    counts.invalid_utf8_files += 1
    return raw.decode("utf-8", errors="replace")


# --- the embedded default corpus: the interpreter's standard library ------------------

def stdlib_root() -> pathlib.Path:
  return pathlib.Path(sysconfig.get_paths()["stdlib"])


def stdlib_files() -> list[str]:
  """Relative paths of the stdlib's .py files (no site-packages, no pydoc_data: OOD)."""
  root = stdlib_root()
  skip = {"site-packages", "dist-packages", "pydoc_data", "__pycache__"}
  files = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in skip)
    for name in sorted(filenames):
      if name.endswith(".py"):
        files.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
  if not files:
    raise DataError(f"found no .py files under the standard library {root}; use "
                    "config.data.name='text_files' with config.data.paths=YOUR_FILES")
  return files


def stdlib_docs(relpaths: Iterable[str], counts: Counts) -> Iterator[tuple[str, str]]:
  root = stdlib_root()
  for rel in relpaths:
    text = read_text(root / rel, counts)
    if text is None:
      continue
    if not text.strip():
      counts.empty_documents += 1
      continue
    yield rel, text


def stdlib_fingerprint() -> str:
  """Names the corpus: Python version (the stdlib changes with it) and numpy's (OOD)."""
  v = sys.version_info
  return f"py{v.major}_{v.minor}_{v.micro}_np{_numpy_version().replace('.', '_')}"


# --- out-of-distribution evaluation sets ----------------------------------------------

OOD_SETS = ("ood_prose", "ood_numpy")


def _numpy_dir() -> pathlib.Path | None:
  spec = importlib.util.find_spec("numpy")
  if spec is None or not spec.submodule_search_locations:
    return None
  return pathlib.Path(list(spec.submodule_search_locations)[0])


def _numpy_version() -> str:
  try:
    from importlib import metadata
    return metadata.version("numpy")
  except Exception:  # pylint: disable=broad-except
    return "none"


def ood_docs(name: str, counts: Counts) -> Iterator[tuple[str, str]]:
  """English prose (pydoc topics) or another project's code (numpy), capped in size."""
  if name == "ood_prose":
    from pydoc_data import topics  # pylint: disable=g-import-not-at-top
    for key in sorted(topics.topics):
      text = topics.topics[key]
      if text.strip():
        yield f"pydoc_topics/{key}", text
  elif name == "ood_numpy":
    root = _numpy_dir()
    if root is None:
      return
    rels = sorted((str(p.relative_to(root)).replace(os.sep, "/") for p in root.rglob("*.py")),
                  key=lambda r: (stable_hash(r), r))
    total = 0
    for rel in rels:
      if total >= OOD_MAX_CHARS:
        break
      text = read_text(root / rel, counts)
      if text and text.strip():
        total += len(text)
        yield f"numpy/{rel}", text
  else:
    raise DataError(f"unknown OOD eval set {name!r}; choose among {OOD_SETS}")


# --- a user's own corpus ----------------------------------------------------------------

def expand_paths(paths: str | Iterable[str]) -> list[pathlib.Path]:
  """Files named by comma-separated files, directories (recursive) or globs, sorted."""
  items = [p.strip() for p in paths.split(",")] if isinstance(paths, str) else list(paths)
  items = [os.path.expanduser(str(p)) for p in items if str(p).strip()]
  if not items:
    raise DataError("config.data.paths is empty; set it to files, directories or globs of "
                    ".txt/.jsonl, e.g. --config.data.paths='corpus/*.txt'")
  files: set[pathlib.Path] = set()
  for item in items:
    matches = glob.glob(item, recursive=True) if glob.has_magic(item) else [item]
    if not matches or not all(os.path.exists(m) for m in matches):
      raise DataError(f"config.data.paths: {item!r} does not exist; fix the path or glob")
    for m in map(pathlib.Path, matches):
      if m.is_dir():
        files.update(p for p in m.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
      elif m.is_file():
        files.add(m)
  if not files:
    raise DataError(f"config.data.paths={','.join(items)!r} contains no {'/'.join(TEXT_SUFFIXES)} "
                    "files; point it at your text")
  return sorted(p.resolve() for p in files)


def files_fingerprint(files: list[pathlib.Path]) -> str:
  """A short hash of the file list with sizes and mtimes: a changed corpus is rebuilt."""
  h = hashlib.sha1()
  for p in files:
    st = p.stat()
    h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
  return h.hexdigest()[:16]


def _chunks(text: str) -> list[str]:
  """Cuts a long text at blank lines into pieces of about CHUNK_CHARS."""
  if len(text) <= BIG_TXT_CHARS:
    return [text]
  out, start = [], 0
  while start < len(text):
    end = text.find("\n\n", start + CHUNK_CHARS)
    end = len(text) if end < 0 else end + 2
    out.append(text[start:end])
    start = end
  return out


def text_file_docs(files: list[pathlib.Path], counts: Counts) -> Iterator[tuple[str, str]]:
  """Documents of text files: a .jsonl line ({"text": ...} or a JSON string) or a text file
  (long ones cut at blank lines)."""
  for path in files:
    text = read_text(path, counts)
    if text is None:
      continue
    if path.suffix.lower() == ".jsonl":
      for lineno, line in enumerate(text.splitlines()):
        if not line.strip():
          continue
        try:
          obj = json.loads(line)
        except json.JSONDecodeError:
          counts.bad_jsonl_lines += 1
          continue
        doc = obj.get("text") if isinstance(obj, dict) else obj
        if not isinstance(doc, str):
          counts.bad_jsonl_lines += 1
        elif not doc.strip():
          counts.empty_documents += 1
        else:
          yield f"{path}:{lineno}", doc
    else:
      if not text.strip():
        counts.empty_documents += 1
        continue
      for i, chunk in enumerate(_chunks(text)):
        yield (f"{path}#{i}" if i else str(path)), chunk
