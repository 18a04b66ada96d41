"""The run directory: the one contract between training and analysis.

    RUN/config.json    {"config": full resolved config, "facts": static facts of the run,
                        "versions": {...}, "devices": {...}}
    RUN/metrics.jsonl  one JSON object per logged step (scaling_jax.metrics)
    RUN/status.json    {"status": running | finished | failed | preempted, "step", "error"}
    RUN/checkpoints/   Orbax
    RUN/events/        TensorBoard

Analysis code (scaling/, report, sweep) reads runs only through this module and
`scaling_jax.metrics.read_metrics`; it never imports the trainer.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from scaling_jax.config import ConfigError

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


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON through a temp file + rename, so readers never see half a file."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=json_default)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def read_config(run_dir: str) -> dict[str, Any] | None:
  """The run's config.json ({"config", "facts", "versions", "devices"}), or None."""
  return read_json(os.path.join(run_dir, CONFIG_FILE))


def read_status(run_dir: str) -> dict[str, Any]:
  """The run's status.json; a directory without one is 'missing'."""
  status = read_json(os.path.join(run_dir, STATUS_FILE))
  return status if status else {"status": "missing"}


def write_status(run_dir: str, status: str, **extra: Any) -> None:
  if status not in STATUSES:
    raise ValueError(f"status {status!r} is not one of {STATUSES}")
  write_json_atomic(os.path.join(run_dir, STATUS_FILE), {"status": status, **extra})


def describe_error(e: BaseException, limit: int | None = None) -> str:
  """'Type: first line of the message' (cut to `limit` characters) -- what status.json, a
  sweep report and checkpoint errors show."""
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return f"{type(e).__name__}: {text[:limit]}" if text else type(e).__name__


def mark_failed(run_dir: str, error: BaseException | str, **extra: Any) -> bool:
  """Best-effort status 'failed' with the error; False (and a note on stderr) if even that
  cannot be written, e.g. on a full disk. Never raises: the caller re-raises the error."""
  message = error if isinstance(error, str) else describe_error(error)
  try:
    write_status(run_dir, "failed", error=message, **extra)
    return True
  except OSError as e:
    print(f"WARNING: could not mark {run_dir} failed ({e}); its status.json is stale",
          file=sys.stderr)
    try:
      os.remove(os.path.join(run_dir, f"{STATUS_FILE}.tmp.{os.getpid()}"))
    except OSError:
      pass
    return False


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


def is_run_dir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, CONFIG_FILE))


def find_runs(root: str) -> list[str]:
  """Run directories at or below `root` (sorted), found by their config.json."""
  if is_run_dir(root):
    return [root]
  runs = []
  for dirpath, dirnames, _ in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in (CHECKPOINT_DIR, "events"))
    if is_run_dir(dirpath):
      runs.append(dirpath)
      dirnames[:] = []
  return sorted(runs)
