"""The run directory: the one contract between training and analysis.

    RUN/config.json    {"config": full resolved config, "facts": static facts of the run,
                        "versions": {...}, "devices": {...}}
    RUN/metrics.jsonl  one JSON object per logged step (scaling_jax.metrics)
    RUN/status.json    {"status": running | finished | failed | preempted, "step", "error"}
    RUN/checkpoints/   Orbax
    RUN/events/        TensorBoard

Analysis code (scaling/, report, sweep) reads runs only through this module and
`scaling_jax.metrics.read_metrics`; it never imports the trainer.

Local or remote: every path here may be a local path or a URL (`gs://bucket/x`), str or
`etils.epath.Path`; all I/O goes through epath (orbax's own path library), which reaches
gs:// through gcsfs (`pip install 'scaling-jax[gcs]'`). `check_backend` refuses a URL whose
backend is missing, so a remote run directory never becomes a local folder `gs:/bucket/x`.
Atomic writes: locally a temp file is fsync'ed and renamed; on an object store a rename is
a copy + delete (not atomic) but a single-object write is, so a file is written in one put.
The primitives for analysis code (one home for run-directory I/O): `path`, `is_remote`,
`exists`, `is_dir`, `makedirs`, `listdir`, `glob`, `walk`, `read_text`, `read_bytes`,
`write_text`, `write_bytes` (atomic), `remove`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from typing import Any, Union

from etils import epath

from scaling_jax.config import ConfigError
from scaling_jax.errors import UserError

PathLike = Union[str, os.PathLike]

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
CHECKPOINT_DIR = "checkpoints"
STATUSES = ("running", "finished", "failed", "preempted")


def json_default(o: Any) -> Any:
  """JSON for numpy scalars and arrays; anything else as its string."""
  if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:
    return o.item()
  if hasattr(o, "tolist"):
    return o.tolist()
  return str(o)


# --- paths: local or remote, one set of primitives ----------------------------------------

# URL scheme -> the module epath needs for it, and what to install.
REMOTE_BACKENDS = {"gs": ("gcsfs", "pip install 'scaling-jax[gcs]' (gcsfs)"),
                   "s3": ("s3fs", "pip install s3fs")}


class RemoteBackendError(ConfigError):
  """A URL whose filesystem backend is not installed (or whose scheme is unsupported)."""


def is_remote(p: PathLike) -> bool:
  """True for a URL such as gs://bucket/x (an object store, no rename, no append)."""
  return "://" in os.fspath(p)


def check_backend(p: PathLike) -> None:
  """RemoteBackendError (one line: what to install) unless `p` is local or reachable."""
  text = os.fspath(p)
  if not is_remote(text):
    return
  scheme = text.split("://", 1)[0]
  if scheme not in REMOTE_BACKENDS:
    raise RemoteBackendError(f"{text}: {scheme}:// is not supported; use a local path or "
                             f"one of {', '.join(s + '://' for s in REMOTE_BACKENDS)}")
  module, install = REMOTE_BACKENDS[scheme]
  if importlib.util.find_spec(module) is None and importlib.util.find_spec("tensorflow") is None:
    raise RemoteBackendError(f"{text} is a {scheme}:// path but {module} is not installed; "
                             f"{install}, or use a local path")


def path(p: PathLike) -> epath.Path:
  """`p` as an epath.Path (a URL keeps its scheme); RemoteBackendError if unreachable."""
  check_backend(p)
  return epath.Path(p)


def exists(p: PathLike) -> bool:
  return path(p).exists()


def is_dir(p: PathLike) -> bool:
  return path(p).is_dir()


def makedirs(p: PathLike) -> None:
  """mkdir -p (a no-op on an object store, where directories are name prefixes)."""
  path(p).mkdir(parents=True, exist_ok=True)


def listdir(p: PathLike) -> list[str]:
  """Names in directory `p`, sorted; [] if it does not exist."""
  d = path(p)
  return sorted(c.name for c in d.iterdir()) if d.is_dir() else []


def glob(p: PathLike, pattern: str) -> list[str]:
  """Paths under `p` matching `pattern` (one level of `*`; no `**` on object stores)."""
  d = path(p)
  return sorted(str(c) for c in d.glob(pattern)) if d.is_dir() else []


def walk(p: PathLike):
  """os.walk over local or remote directories: (dir as epath.Path, dirnames, filenames),
  top-down; prune by editing dirnames in place. (epath's own walk loses the URL scheme.)"""
  top = path(p)
  if not top.is_dir():
    return
  dirnames, filenames = [], []
  for child in sorted(top.iterdir()):
    (dirnames if child.is_dir() else filenames).append(child.name)
  yield top, dirnames, filenames
  for name in dirnames:
    yield from walk(top / name)


def read_bytes(p: PathLike) -> bytes:
  return path(p).read_bytes()


def read_text(p: PathLike) -> str:
  return path(p).read_text()


def remove(p: PathLike) -> None:
  """Deletes a file (a missing one is fine)."""
  path(p).unlink(missing_ok=True)


def _tmp_name(p: PathLike) -> str:
  return f"{os.fspath(p)}.tmp.{os.getpid()}"


def write_bytes(p: PathLike, data: bytes) -> None:
  """Writes the whole file so that readers never see half of it (see the module docstring)."""
  target = path(p)
  if is_remote(p):
    target.write_bytes(data)  # one object put: atomic on GCS
    return
  tmp = _tmp_name(p)
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, target)
  except OSError:
    try:
      os.remove(tmp)  # a full disk must not also keep half a temp file
    except OSError:
      pass
    raise


def write_text(p: PathLike, text: str) -> None:
  write_bytes(p, text.encode("utf-8"))


def strict_json(obj: Any) -> Any:
  """`obj` as plain JSON values: numpy scalars and arrays as numbers and lists, NaN and
  +-inf as null (strict JSON has no NaN), other objects as their string."""
  if isinstance(obj, dict):
    return {str(k): strict_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [strict_json(v) for v in obj]
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if obj is None or isinstance(obj, (str, int, bool)):
    return obj
  return strict_json(json_default(obj))


def write_json_atomic(path: PathLike, obj: Any) -> None:
  """Writes strict JSON (NaN and inf as null, `strict_json`) so that readers never see half
  a file (write_bytes)."""
  text = json.dumps(strict_json(obj), indent=2, sort_keys=True, allow_nan=False)
  write_bytes(path, text.encode())


class DamagedRunFile(UserError):
  """A run-directory JSON file that is truncated, not UTF-8, not JSON or of the wrong shape.
  Nothing is rewritten or deleted: the message names the file and what to do."""


# What to do about a damaged file, by name; the run's checkpoints and metrics are kept.
DAMAGED_FIX = {
    CONFIG_FILE: "restore it from a copy, or train into a new --workdir (nothing in the run "
                 "was changed)",
    STATUS_FILE: "delete it and rerun: the run resumes from its checkpoints",
}


def _parse_object(data: bytes) -> tuple[dict[str, Any] | None, str]:
  """(the JSON object in `data`, "") or (None, what is wrong with it)."""
  try:
    obj = json.loads(data.decode("utf-8"))
  except UnicodeDecodeError as e:
    return None, f"not UTF-8 ({e.reason} at byte {e.start})"
  except json.JSONDecodeError as e:
    return None, f"not valid JSON, truncated? ({e.msg}: line {e.lineno}, column {e.colno})"
  if not isinstance(obj, dict):
    return None, f"a JSON {type(obj).__name__}, not an object"
  return obj, ""


def read_json(p: PathLike, shape: dict[str, Any] | None = None) -> dict[str, Any] | None:
  """A run-directory JSON object; None if the file is missing. DamagedRunFile (naming the
  file) if it cannot be read or decoded, is not a JSON object, or a key of `shape` holds a
  value of the wrong shape ({key: dict, an object if present; or a tuple of the values
  allowed})."""
  try:
    data = read_bytes(p)
  except FileNotFoundError:
    return None
  except OSError as e:
    problem, obj = f"unreadable ({e.strerror or e})", None
  else:
    obj, problem = _parse_object(data)
  for key, want in (shape or {}).items() if obj is not None else ():
    value = obj.get(key)
    if isinstance(want, tuple) and value not in want:
      problem = f'its "{key}" is {value!r}, not one of {want}'
    elif isinstance(want, type) and key in obj and not isinstance(value, want):
      problem = f'its "{key}" is a JSON {type(value).__name__}, not an object'
    if problem:
      break
  if problem:
    fix = DAMAGED_FIX.get(os.path.basename(os.fspath(p)), "restore it from a copy")
    raise DamagedRunFile(f"{os.fspath(p)} is damaged: {problem}; {fix}")
  return obj


def read_config(run_dir: PathLike) -> dict[str, Any] | None:
  """The run's config.json ({"config", "facts", "versions", "devices"}), None if it has
  none; DamagedRunFile if it is damaged."""
  return read_json(path(run_dir) / CONFIG_FILE,
                   {"config": dict, "facts": dict, "versions": dict, "devices": dict})


def read_status(run_dir: PathLike) -> dict[str, Any]:
  """The run's status.json; a directory without one is 'missing'; DamagedRunFile if it is
  damaged."""
  status = read_json(path(run_dir) / STATUS_FILE, {"status": STATUSES})
  return status if status is not None else {"status": "missing"}


def write_status(run_dir: PathLike, status: str, **extra: Any) -> None:
  if status not in STATUSES:
    raise ValueError(f"status {status!r} is not one of {STATUSES}")
  write_json_atomic(path(run_dir) / STATUS_FILE, {"status": status, **extra})


def describe_error(e: BaseException, limit: int | None = None) -> str:
  """'Type: first line of the message' (cut to `limit` characters) -- what status.json, a
  sweep report and checkpoint errors show."""
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return f"{type(e).__name__}: {text[:limit]}" if text else type(e).__name__


def mark_failed(run_dir: PathLike, error: BaseException | str, **extra: Any) -> bool:
  """Best-effort status 'failed' with the error; False (and a note on stderr) if even that
  cannot be written, e.g. on a full disk. Never raises: the caller re-raises the error."""
  message = error if isinstance(error, str) else describe_error(error)
  try:
    write_status(run_dir, "failed", error=message, **extra)
    return True
  except OSError as e:
    print(f"WARNING: could not mark {run_dir} failed ({e}); its status.json is stale",
          file=sys.stderr)
    return False


def mark_peer_lost(run_dir: PathLike, reason: str, steps: list[int] | None) -> str:
  """Status 'failed' for a run one of whose processes died (`reason`), saying that rerunning
  on every host resumes from the newest of `steps` (its finished checkpoints; None: not
  known). Any process may write it (process 0 may be the dead one). Returns the message."""
  resume = (f"resume from checkpoint step {steps[-1]}" if steps
            else "start again (no checkpoint was written)" if steps == []
            else "resume from its last checkpoint")
  message = (f"a peer process of this job died or stopped responding ({reason}); rerun the "
             f"same command on every host to {resume}")
  mark_failed(run_dir, message, peer_lost=True, **({"step": steps[-1]} if steps else {}))
  return message


# --- code versions: a run dir records the versions that wrote it -------------------------

VERSION_OVERRIDE_ENV = "SCALING_JAX_ALLOW_VERSION_MISMATCH"


def code_versions() -> dict[str, str]:
  """Versions of scaling_jax and the libraries that decide a run's numbers."""
  import flax
  import jax
  import optax
  import orbax.checkpoint as ocp

  import scaling_jax
  return {"scaling_jax": scaling_jax.__version__, "jax": jax.__version__,
          "flax": flax.__version__, "optax": optax.__version__, "orbax": ocp.__version__}


class VersionMismatch(ConfigError):
  """A run directory written by another scaling_jax version; the message says what to do."""


def check_versions(run_dir: str, recorded: dict[str, Any] | None,
                   current: dict[str, str]) -> list[str]:
  """Warnings about a run written by other library versions; raises VersionMismatch when
  scaling_jax itself differs (unless $SCALING_JAX_ALLOW_VERSION_MISMATCH=1).

  Policy: the scaling_jax version decides the model, data order and FLOP accounting, so
  continuing a run under another one would silently splice two experiments: refused.
  Other libraries (jax, flax, optax, orbax) change numerics only in the last bits: warned
  (exact resume is then not guaranteed).
  """
  if not recorded:
    return [f"{run_dir}/config.json records no code versions; cannot check that it was "
            f"written by scaling_jax {current.get('scaling_jax')}"]
  mine, theirs = current.get("scaling_jax"), recorded.get("scaling_jax")
  warnings = []
  if theirs != mine:
    msg = (f"{run_dir} was written by scaling_jax {theirs}, this is {mine}: resuming would "
           f"mix two code versions in one run. Use a new --workdir (or the version that "
           f"wrote it), or set {VERSION_OVERRIDE_ENV}=1 to resume anyway")
    if os.environ.get(VERSION_OVERRIDE_ENV, "") not in ("1", "true", "yes"):
      raise VersionMismatch(msg)
    warnings.append(msg.split(": resuming")[0] + f"; resuming anyway ({VERSION_OVERRIDE_ENV})")
  for lib in sorted(set(recorded) | set(current)):
    if lib != "scaling_jax" and recorded.get(lib) != current.get(lib):
      warnings.append(f"{run_dir} was written with {lib} {recorded.get(lib)}, this is "
                      f"{current.get(lib)}; a resumed curve may differ in the last bits")
  return warnings


def is_run_dir(p: PathLike) -> bool:
  return (path(p) / CONFIG_FILE).is_file()


def find_runs(root: PathLike) -> list[str]:
  """Run directories at or below `root` (sorted), found by their config.json."""
  if is_run_dir(root):
    return [os.fspath(root)]
  runs = []
  for dirpath, dirnames, filenames in walk(root):
    if CONFIG_FILE in filenames:
      runs.append(str(dirpath))
      dirnames[:] = []
    else:
      dirnames[:] = sorted(d for d in dirnames if d not in (CHECKPOINT_DIR, "events"))
  return sorted(runs)
