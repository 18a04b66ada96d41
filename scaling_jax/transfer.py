"""Copying files and directory trees between local disk and an object store (gs://), either
way, through `rundir`'s etils.epath primitives.

Files are streamed (a token array may be larger than memory) and appear whole: a local file
is written to a temp name and renamed, a remote one is a single object upload. Used by the
remote data directory's local mirror (`scaling_jax.data.sources`) and by
`launch/sweep_fanout.py collect` from a bucket.
"""

from __future__ import annotations

import os
import shutil

from scaling_jax import rundir

CHUNK_BYTES = 16 * 2**20


def copy_file(src: rundir.PathLike, dst: rundir.PathLike) -> None:
  """Streams the file `src` to `dst` (local or remote each), creating local parent dirs."""
  source = rundir.path(src)
  if rundir.is_remote(dst):
    with source.open("rb") as r, rundir.path(dst).open("wb") as w:
      shutil.copyfileobj(r, w, CHUNK_BYTES)
    return
  dst = os.fspath(dst)
  os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
  tmp = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.part{os.getpid()}")
  try:
    with source.open("rb") as r, open(tmp, "wb") as w:
      shutil.copyfileobj(r, w, CHUNK_BYTES)
    os.replace(tmp, dst)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def copy_tree(src: rundir.PathLike, dst: rundir.PathLike, skip: tuple[str, ...] = (),
              missing_only: bool = False) -> list[str]:
  """Copies every file under `src` to the same relative path under `dst`; directories named
  in `skip` are not entered, hidden files (temp files being written) are left out, and with
  `missing_only` a file already at `dst` is kept. Returns the files written."""
  top = str(rundir.path(src))
  written = []
  for d, dirnames, filenames in rundir.walk(src):
    dirnames[:] = [n for n in dirnames if n not in skip]
    rel = str(d)[len(top):].lstrip("/")
    for name in filenames:
      if name.startswith("."):
        continue
      target = os.path.join(os.fspath(dst), rel, name) if rel else os.path.join(os.fspath(dst), name)
      if missing_only and rundir.exists(target):
        continue
      copy_file(d / name, target)
      written.append(target)
  return written
