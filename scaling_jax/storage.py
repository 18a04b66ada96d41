"""Storage retries made visible (issue #27): a run slowed by its bucket says so.

A bucket that answers some requests with 503 (or 429, 5xx) does not fail a run: the
libraries retry with exponential backoff (gcsfs, which rundir and metrics reach gs://
through, in `gcsfs.retry.retry_request`; tensorstore, which writes Orbax's checkpoints, in
C++). Measured with tests/fault_proxy.py, 1 request in 3 failed made a run 17x slower
without a line of output. The retries stay in those libraries; this module only counts them
and says so:

- gcsfs logs each retry ("... retrying after exception: ...") at DEBUG on the "gcsfs"
  logger: a filter on that logger counts them, and passes on only the records the logger
  would have passed without it (the logger is lowered to DEBUG so that the records exist;
  its child loggers keep the level they had).
- tensorstore counts its retries in its metric registry (/tensorstore/kvstore/gcs/retries):
  read at each poll, relative to its value when watching started.
- A checkpoint save (Orbax's commit included) slower than SLOW_WRITE_S is a slow write,
  whatever the cause (`timed_write`, used by scaling_jax.checkpoint).

Once the retries reach WARN_AFTER, or a write was slow, one line goes to stderr with the
counts; then at most one line every WARN_EVERY_S seconds, and only if the counts grew.
The trainer needs three calls: `watch(workdir)` before the run's first storage access,
`metrics()` into each logged record (the key `storage/retries` of metric_keys), and
`finish()` at the end (a closing line if anything was retried). A local workdir is not
watched: `metrics()` then returns {} and the records keep their keys.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any, Callable, Iterator, TextIO

from scaling_jax import metric_keys as keys
from scaling_jax import rundir

WARN_AFTER = 10  # retries before the first warning line
WARN_EVERY_S = 300.0  # at most one warning line per this many seconds after the first
SLOW_WRITE_S = 60.0  # a checkpoint save longer than this is slow (override: SLOW_WRITE_ENV)
SLOW_WRITE_ENV = "SCALING_JAX_SLOW_WRITE_S"

GCSFS_LOGGER = "gcsfs"
# gcsfs's child loggers: pinned to their level while "gcsfs" is lowered to DEBUG, so that their
# DEBUG lines (which the filter on "gcsfs" never sees) do not reach the root's handlers.
GCSFS_CHILD_LOGGERS = ("gcsfs.credentials", "gcsfs.zonal_file", "gcsfs.gcsfuse")
GCSFS_RETRY = "retrying after exception"  # gcsfs.retry.retry_request's DEBUG line
GCSFS_GAVE_UP = "out of retries"  # ... and its line when the last try failed
TENSORSTORE_METRICS = "/tensorstore/kvstore/"  # counters named .../<driver>/retries


def tensorstore_retries() -> int:
  """Retries tensorstore's key-value stores (gcs, gcs_grpc, s3, ...) have made in this
  process; 0 when tensorstore is not loaded (then nothing of it can have retried)."""
  ts = sys.modules.get("tensorstore")
  if ts is None:
    return 0
  total = 0
  for metric in ts.experimental_collect_matching_metrics(TENSORSTORE_METRICS):
    if metric["name"].endswith("/retries"):
      total += sum(int(v.get("value", 0)) for v in metric["values"])
  return total


def slow_write_s() -> float:
  """The slow-write threshold: $SCALING_JAX_SLOW_WRITE_S if set, else SLOW_WRITE_S."""
  value = os.environ.get(SLOW_WRITE_ENV, "")
  return float(value) if value.strip() else SLOW_WRITE_S


class _GcsfsRetryFilter(logging.Filter):
  """Counts gcsfs's retry lines; lets through only what the logger passed before."""

  def __init__(self, monitor: "StorageMonitor", passthrough: int):
    super().__init__()
    self.monitor, self.passthrough = monitor, passthrough

  def filter(self, record: logging.LogRecord) -> bool:
    text = record.getMessage()
    if GCSFS_RETRY in text:
      self.monitor.count_gcsfs_retry(text)
    elif GCSFS_GAVE_UP in text:
      self.monitor.count_gcsfs_gave_up(text)
    return record.levelno >= self.passthrough


class StorageMonitor:
  """Counts storage retries and slow writes of this process from `install()` on, and warns
  (rate-limited) on `stream` (stderr if None). Thread-safe: gcsfs retries are counted on
  its I/O thread."""

  def __init__(self, warn_after: int = WARN_AFTER, warn_every_s: float = WARN_EVERY_S,
               slow_s: float | None = None, stream: TextIO | None = None,
               clock: Callable[[], float] = time.monotonic):
    self.warn_after, self.warn_every_s = int(warn_after), float(warn_every_s)
    self.slow_s = slow_write_s() if slow_s is None else float(slow_s)
    self.stream, self.clock = stream, clock
    self.gcsfs_retries = 0
    self.gcsfs_gave_up = 0  # requests gcsfs retried to its limit and then failed
    self.slow_writes = 0
    self.longest_write_s = 0.0
    self.last_error = ""
    self._tensorstore_base = tensorstore_retries()  # counted from here on
    self._lock = threading.RLock()
    self._filter: _GcsfsRetryFilter | None = None
    self._old_level = logging.NOTSET
    self._pinned: list[logging.Logger] = []  # child loggers install() gave a level
    self._warned_at: float | None = None
    self._warned_counts: tuple[int, int] = (0, 0)
    self.warnings = 0  # lines written so far

  # --- installing ----------------------------------------------------------------------

  def install(self) -> "StorageMonitor":
    """Starts counting: the gcsfs filter, and tensorstore's count so far as the baseline."""
    logger = logging.getLogger(GCSFS_LOGGER)
    if self._filter is None:
      level = logger.getEffectiveLevel()
      self._filter = _GcsfsRetryFilter(self, level)
      logger.addFilter(self._filter)
      self._old_level = logger.level
      if level > logging.DEBUG:
        children = set(GCSFS_CHILD_LOGGERS) | {
            n for n in logging.root.manager.loggerDict if n.startswith(GCSFS_LOGGER + ".")}
        for name in sorted(children):
          child = logging.getLogger(name)
          if child.level == logging.NOTSET:
            child.setLevel(level)
            self._pinned.append(child)
        logger.setLevel(logging.DEBUG)
    self._tensorstore_base = tensorstore_retries()
    return self

  def uninstall(self) -> None:
    """Stops counting gcsfs retries and gives the "gcsfs" logger its level back."""
    if self._filter is not None:
      logger = logging.getLogger(GCSFS_LOGGER)
      logger.removeFilter(self._filter)
      logger.setLevel(self._old_level)
      for child in self._pinned:
        child.setLevel(logging.NOTSET)
      self._filter, self._pinned = None, []

  # --- counting ------------------------------------------------------------------------

  def count_gcsfs_retry(self, text: str) -> None:
    with self._lock:
      self.gcsfs_retries += 1
      self.last_error = text.split(GCSFS_RETRY, 1)[-1].strip(" :")[:120]
    self.maybe_warn()

  def count_gcsfs_gave_up(self, text: str) -> None:
    with self._lock:
      self.gcsfs_gave_up += 1
      self.last_error = text.split(GCSFS_GAVE_UP, 1)[-1].strip(" :")[:120]

  def tensorstore_retries(self) -> int:
    return max(0, tensorstore_retries() - self._tensorstore_base)

  def retries(self) -> int:
    """Storage requests retried so far (gcsfs + tensorstore)."""
    return self.gcsfs_retries + self.tensorstore_retries()

  def count_write(self, what: str, seconds: float) -> bool:
    """Records a write of `seconds`; True (and a warning if due) when it was slow."""
    with self._lock:
      self.longest_write_s = max(self.longest_write_s, seconds)
      slow = seconds > self.slow_s
      if slow:
        self.slow_writes += 1
        self.last_error = self.last_error or f"{what} took {seconds:.0f} s"
    if slow:
      self.maybe_warn()
    return slow

  @contextlib.contextmanager
  def timed_write(self, what: str) -> Iterator[None]:
    """Times the block as one write (`count_write`), also when it raises."""
    start = self.clock()
    try:
      yield
    finally:
      self.count_write(what, self.clock() - start)

  # --- reporting -----------------------------------------------------------------------

  def metrics(self) -> dict[str, int]:
    """The counts to log with a record (metric_keys.STORAGE_*); warns if due."""
    self.maybe_warn()
    return {keys.STORAGE_RETRIES: self.retries(), keys.STORAGE_SLOW_WRITES: self.slow_writes}

  def describe(self) -> str:
    """The counts in one line (no newline)."""
    ts_retries = self.tensorstore_retries()
    text = (f"{self.gcsfs_retries + ts_retries} storage request(s) retried (gcsfs "
            f"{self.gcsfs_retries}, tensorstore {ts_retries})")
    if self.gcsfs_gave_up:
      text += f", {self.gcsfs_gave_up} given up"
    if self.slow_writes:
      text += (f", {self.slow_writes} checkpoint save(s) over {self.slow_s:g} s (the longest "
               f"{self.longest_write_s:.0f} s)")
    return text

  def maybe_warn(self) -> bool:
    """Writes the warning line if the counts passed the threshold and the last line is
    WARN_EVERY_S old (or there was none) and the counts grew since; True if it wrote."""
    with self._lock:
      counts = (self.retries(), self.slow_writes)
      if counts[0] < self.warn_after and not counts[1]:
        return False
      now = self.clock()
      if counts == self._warned_counts or (
          self._warned_at is not None and now - self._warned_at < self.warn_every_s):
        return False
      self._warned_at, self._warned_counts = now, counts
      self.warnings += 1
      line = (f"WARNING: storage is slowing this run: {self.describe()} so far; the bucket "
              f"answers errors and the libraries retry with backoff (last: "
              f"{self.last_error or 'in tensorstore, not shown'}). Logged as "
              f"{keys.STORAGE_RETRIES} in metrics.jsonl")
    print(line, file=self.stream or sys.stderr, flush=True)
    return True


# --- the run's monitor: what the trainer calls -------------------------------------------

_MONITOR: StorageMonitor | None = None


def watch(workdir: rundir.PathLike, **options: Any) -> StorageMonitor | None:
  """Starts counting this run's storage retries if `workdir` is remote (the monitor, else
  None); a monitor of an earlier run in this process is replaced. `options`: those of
  StorageMonitor (thresholds, stream)."""
  global _MONITOR
  finish(report=False)
  if not rundir.is_remote(workdir):
    return None
  _MONITOR = StorageMonitor(**options).install()
  return _MONITOR


def monitor() -> StorageMonitor | None:
  """The monitor `watch` started (None when none is running)."""
  return _MONITOR


def metrics() -> dict[str, int]:
  """{storage/retries, storage/slow_writes} so far in this run, for a logged record ({} when
  nothing is watched: a local run); writes the warning line when one is due."""
  return _MONITOR.metrics() if _MONITOR is not None else {}


@contextlib.contextmanager
def timed_write(what: str) -> Iterator[None]:
  """Times a write (a checkpoint save) for the slow-write count; a no-op when unwatched."""
  if _MONITOR is None:
    yield
  else:
    with _MONITOR.timed_write(what):
      yield


def finish(report: bool = True) -> str | None:
  """Stops watching; with `report`, one closing line on the monitor's stream (stderr) when
  anything was retried or slow. Returns that line (None if nothing was)."""
  global _MONITOR
  mon, _MONITOR = _MONITOR, None
  if mon is None:
    return None
  mon.uninstall()
  if not (mon.retries() or mon.slow_writes or mon.gcsfs_gave_up):
    return None
  line = f"storage: {mon.describe()} in this run"
  if report:
    print(line, file=mon.stream or sys.stderr, flush=True)
  return line
