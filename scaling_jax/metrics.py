"""Metrics of a run: append-only JSON lines plus TensorBoard events, and a tolerant reader.

Keys carry their units (see README, "Run directory"). Every reader of `metrics.jsonl`
goes through `read_metrics`, which skips a truncated or garbled line left by a crash and
keeps only the last record of a step that a resumed run logged again. The writer only
appends (one fsync'ed line per record); a resumed run first drops the records after its
checkpoint (`truncate_after`, an atomic rewrite), so each step appears once.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Iterable

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
  """JSON-safe scalar: numpy/jax scalars to Python, NaN/inf kept as strings."""
  if hasattr(value, "item"):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricsWriteError(OSError):
  """metrics.jsonl could not be written (disk full, unwritable); the message says what to do."""


def _ends_mid_line(path: str) -> bool:
  try:
    with open(path, "rb") as f:
      f.seek(0, os.SEEK_END)
      if f.tell() == 0:
        return False
      f.seek(-1, os.SEEK_END)
      return f.read(1) != b"\n"
  except FileNotFoundError:
    return False


def _remove_quietly(path: str) -> None:
  try:
    os.remove(path)
  except OSError:
    pass


def _summary_writer(logdir: str):
  """tensorboardX's SummaryWriter, imported without torch (seconds of start-up, unused)."""
  blocked = "torch" not in sys.modules
  if blocked:
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail fast
  try:
    from tensorboardX import SummaryWriter  # no TensorFlow needed
  finally:
    if blocked:
      del sys.modules["torch"]
  return SummaryWriter(logdir)


class MetricsWriter:
  """Appends one JSON object per record to RUN/metrics.jsonl (and TensorBoard events).

  Only the process with `enabled=True` (process 0) writes. Each line is flushed and
  fsync'ed so a crash loses at most the line being written.
  """

  def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, METRICS_FILE)
    self._tb = None
    self._torn = False  # the file ends inside a line (a crash mid-write)
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._torn = _ends_mid_line(self.path)
      if tensorboard:
        self._tb = _summary_writer(os.path.join(workdir, "events"))

  def truncate_after(self, step: int) -> None:
    """Drops records with step > `step` (a resumed run restarts from its checkpoint)."""
    if not self.enabled or not os.path.exists(self.path):
      return
    kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
    tmp = self.path + ".tmp"
    try:
      with open(tmp, "w") as f:
        for r in kept:
          f.write(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, self.path)  # atomic: the old file stays whole if this fails
    except OSError as e:
      _remove_quietly(tmp)
      raise MetricsWriteError(f"cannot rewrite {self.path} ({e.strerror or e}); free disk "
                              "space and rerun the same command") from e
    self._torn = False

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {k: _clean(v) for k, v in record.items()}
    line = json.dumps(record) + "\n"
    if self._torn:  # never glue a record onto a half-written line
      line = "\n" + line
    try:
      with open(self.path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      self._torn = True  # part of the line may have reached the disk
      raise MetricsWriteError(f"cannot append step {record.get('step')} to {self.path} "
                              f"({e.strerror or e}); free disk space and rerun the same "
                              "command to resume from the last checkpoint") from e
    self._torn = False
    if self._tb is not None:
      step = int(record.get("step", 0))
      for k, v in record.items():
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()
      self._tb = None


def _as_float(value: Any) -> Any:
  if isinstance(value, str) and value in ("nan", "inf", "-inf"):
    return float(value)
  return value


def read_metrics(path: str) -> list[dict[str, Any]]:
  """Records of a metrics file (or a run dir), sorted by step, one per step.

  A line cut short by a crash (or garbled) is skipped; a step logged twice (resume) keeps
  the later record, merged over the earlier one (eval and train records of a step merge).
  """
  if os.path.isdir(path):
    path = os.path.join(path, METRICS_FILE)
  if not os.path.exists(path):
    return []
  by_step: dict[int, dict[str, Any]] = {}
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  for line in lines:
    line = line.strip()
    if not line:
      continue
    try:
      record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
      continue  # truncated or garbled line (crash mid-write)
    step = record.get("step") if isinstance(record, dict) else None
    if isinstance(step, float) and step.is_integer():
      step = int(step)
    if not isinstance(step, int) or isinstance(step, bool):
      continue  # not a record of ours (garbled into valid JSON, or foreign)
    record = {k: _as_float(v) for k, v in record.items()}
    by_step.setdefault(step, {}).update(record)
  return [by_step[s] for s in sorted(by_step)]


def series(records: Iterable[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
  """(steps, values) of the records that have `key`."""
  steps, values = [], []
  for r in records:
    if key in r and isinstance(r[key], (int, float)):
      steps.append(int(r["step"]))
      values.append(float(r[key]))
  return steps, values
