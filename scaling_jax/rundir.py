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
from typing import Any

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
CHECKPOINT_DIR = "checkpoints"
STATUSES = ("running", "finished", "failed", "preempted")


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON through a temp file + rename, so readers never see half a file."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
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
