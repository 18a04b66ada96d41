"""Metrics of a run: append-only JSON lines plus TensorBoard events, and a tolerant reader.

Keys carry their units (see README, "Run directory"). Every reader of `metrics.jsonl`
goes through `read_metrics`, which skips a truncated or garbled line left by a crash and
keeps only the last record of a step that a resumed run logged again. The writer only
appends (one fsync'ed line per record); a resumed run first drops the records after its
checkpoint (`truncate_after`, an atomic rewrite), so each step appears once.

On an object store (a gs:// run directory) an object cannot be appended to, only
replaced whole (atomically). There the writer keeps the records of this session in
segments `metrics.jsonl.<first step, 10 digits>`: each record rewrites its segment (at most
SEGMENT_RECORDS lines, ~0.5 MB, so a record costs one bounded put, not a rewrite of the
whole history), and a full segment is closed and a new one started. `read_metrics` merges
metrics.jsonl and the segments in order; `truncate_after` (at each resume) consolidates
them into metrics.jsonl (one put) and then deletes the segments, so a run has at most the
segments of its current session. (Measured on the local emulator: tests/test_gcs.py.)

TensorBoard events: tensorboardX's own gs:// writer needs google-cloud-storage; for a
remote run directory the event file goes through epath instead (`_ObjectRecordWriter`),
with tensorboardX's semantics on an object store: the session's event file is rewritten
whole at each flush (every 120 s, and at close), so a crash loses at most 2 minutes of
events, never metrics.jsonl records.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
from typing import Any, Iterable

from scaling_jax import metric_keys as keys
from scaling_jax import rundir

METRICS_FILE = "metrics.jsonl"
EVENTS_DIR = "events"
SEGMENT_RECORDS = 1000  # lines of one remote segment (each record rewrites its segment)
_SEGMENT_RE = re.compile(re.escape(METRICS_FILE) + r"\.\d{10}")


def _clean(value: Any) -> Any:
  """JSON-safe scalar: numpy/jax scalars to Python, NaN/inf kept as strings."""
  if hasattr(value, "item"):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def _json_line(record: dict[str, Any]) -> str:
  """One strict-JSON line (NaN and inf as the strings "nan", "inf", "-inf", which
  `read_metrics` turns back into floats)."""
  return json.dumps({k: _clean(v) for k, v in record.items()}, allow_nan=False) + "\n"


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


class _ObjectRecordWriter:
  """A tensorboardX record file on an object store: buffered, the object replaced at flush."""

  def __init__(self, path: str):
    self.path, self.buffer = path, io.BytesIO()

  def write(self, data: bytes) -> None:
    self.buffer.write(data)

  def flush(self) -> None:
    rundir.write_bytes(self.path, self.buffer.getvalue())

  def close(self) -> None:
    self.flush()


class _ObjectRecordWriterFactory:
  def open(self, path: str) -> _ObjectRecordWriter:
    return _ObjectRecordWriter(path)

  def directory_check(self, path: str) -> None:
    del path  # directories are name prefixes on an object store


def _summary_writer(logdir: str):
  """tensorboardX's SummaryWriter, imported without torch (seconds of start-up, unused)."""
  blocked = "torch" not in sys.modules
  if blocked:
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail fast
  try:
    from tensorboardX import SummaryWriter  # no TensorFlow needed
    from tensorboardX import record_writer
  finally:
    if blocked:
      del sys.modules["torch"]
  if rundir.is_remote(logdir):
    record_writer.register_writer_factory(logdir.split("://", 1)[0],
                                          _ObjectRecordWriterFactory())
  return SummaryWriter(logdir)


def segment_paths(run_dir) -> list[str]:
  """The remote segments of a run's metrics (see the module docstring), in order."""
  return [p for p in rundir.glob(run_dir, METRICS_FILE + ".*")
          if _SEGMENT_RE.fullmatch(os.path.basename(p))]


class MetricsWriter:
  """Appends one JSON object per record to RUN/metrics.jsonl (and TensorBoard events).

  Only the process with `enabled=True` (process 0) writes. Locally each line is flushed
  and fsync'ed so a crash loses at most the line being written; on an object store each
  record replaces this session's segment object (module docstring).
  """

  def __init__(self, workdir, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self.workdir = os.fspath(workdir)
    self.path = str(rundir.path(workdir) / METRICS_FILE)
    self.remote = rundir.is_remote(workdir)
    self._tb = None
    self._torn = False  # the file ends inside a line (a crash mid-write)
    self._segment: list[str] = []  # remote: the lines of the open segment
    self._segment_path: str | None = None
    if enabled:
      rundir.makedirs(workdir)
      self._torn = not self.remote and _ends_mid_line(self.path)
      if tensorboard:
        self._tb = _summary_writer(str(rundir.path(workdir) / EVENTS_DIR))

  def truncate_after(self, step: int) -> None:
    """Drops records with step > `step` (a resumed run restarts from its checkpoint)."""
    if not self.enabled:
      return
    segments = segment_paths(self.workdir) if self.remote else []
    if not segments and not rundir.exists(self.path):
      return
    kept = [r for r in read_metrics(self.workdir) if r.get(keys.STEP, 0) <= step]
    text = "".join(_json_line(r) for r in kept)
    try:
      rundir.write_text(self.path, text)  # atomic: the old file stays whole if this fails
      for seg in segments:  # after the consolidated file is written: nothing is lost
        rundir.remove(seg)
    except OSError as e:
      raise MetricsWriteError(f"cannot rewrite {self.path} ({e.strerror or e}); free disk "
                              "space and rerun the same command") from e
    self._torn = False

  def write(self, record: dict[str, Any]) -> None:
    if not self.enabled:
      return
    record = {k: _clean(v) for k, v in record.items()}
    line = _json_line(record)
    if self.remote:
      self._write_segment(line, record.get(keys.STEP))
    else:
      self._append(line, record.get(keys.STEP))
    if self._tb is not None:
      step = int(record.get(keys.STEP, 0))
      for k, v in record.items():
        if k != keys.STEP and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(k, v, step)

  def _append(self, line: str, step) -> None:
    if self._torn:  # never glue a record onto a half-written line
      line = "\n" + line
    try:
      with open(self.path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      self._torn = True  # part of the line may have reached the disk
      raise MetricsWriteError(f"cannot append step {step} to {self.path} "
                              f"({e.strerror or e}); free disk space and rerun the same "
                              "command to resume from the last checkpoint") from e
    self._torn = False

  def _write_segment(self, line: str, step) -> None:
    if self._segment_path is None or len(self._segment) >= SEGMENT_RECORDS:
      self._segment = []
      self._segment_path = f"{self.path}.{int(step or 0):010d}"
    self._segment.append(line)
    try:
      rundir.write_text(self._segment_path, "".join(self._segment))
    except OSError as e:
      self._segment.pop()
      raise MetricsWriteError(f"cannot write step {step} to {self._segment_path} ({e}); "
                              "check the bucket's permissions and rerun the same command "
                              "to resume from the last checkpoint") from e

  def close(self) -> None:
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()
      self._tb = None


def _as_float(value: Any) -> Any:
  if isinstance(value, str) and value in ("nan", "inf", "-inf"):
    return float(value)
  return value


def read_metrics(path) -> list[dict[str, Any]]:
  """Records of a metrics file (or a run dir, local or remote), sorted by step, one per step.

  A line cut short by a crash (or garbled) is skipped; a step logged twice (resume) keeps
  the later record, merged over the earlier one (eval and train records of a step merge).
  A remote run dir's segments are read after metrics.jsonl, in order.
  """
  files = [path]
  if rundir.is_dir(path):
    files = [str(rundir.path(path) / METRICS_FILE), *segment_paths(path)]
  lines = []
  for f in files:
    try:
      lines += rundir.read_bytes(f).split(b"\n")
    except FileNotFoundError:
      continue
  by_step: dict[int, dict[str, Any]] = {}
  for line in lines:
    line = line.strip()
    if not line:
      continue
    try:
      record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
      continue  # truncated or garbled line (crash mid-write)
    step = record.get(keys.STEP) if isinstance(record, dict) else None
    if isinstance(step, float) and step.is_integer():
      step = int(step)
    if not isinstance(step, int) or isinstance(step, bool):
      continue  # not a record of ours (garbled into valid JSON, or foreign)
    record = {k: _as_float(v) for k, v in record.items()}
    by_step.setdefault(step, {}).update(record)
  return [by_step[s] for s in sorted(by_step)]


def last_step(run_dir) -> int:
  """The step of the last record a run logged (0 if none): a cheap progress probe. Locally
  it reads only the tail of metrics.jsonl."""
  if rundir.is_remote(run_dir):
    records = read_metrics(run_dir)
    return int(records[-1][keys.STEP]) if records else 0
  try:
    with open(os.path.join(run_dir, METRICS_FILE), "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 8192))
      lines = f.read().split(b"\n")
  except OSError:
    return 0
  for line in reversed(lines):
    try:
      return int(json.loads(line)[keys.STEP])
    except (ValueError, KeyError, TypeError):
      continue
  return 0


def series(records: Iterable[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
  """(steps, values) of the records that have `key`."""
  steps, values = [], []
  for r in records:
    if key in r and isinstance(r[key], (int, float)):
      steps.append(int(r[keys.STEP]))
      values.append(float(r[key]))
  return steps, values
