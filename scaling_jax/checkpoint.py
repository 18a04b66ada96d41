"""Checkpoints with Orbax: the train state plus the data iterator position and wall time.

What a checkpoint directory guarantees (docs/RELIABILITY.md):
- Orbax writes each step into `<step>.orbax-checkpoint-tmp-*` and renames it when
  complete, so a process killed mid-save leaves no step that looks finished; such
  leftovers are deleted when the next run opens the directory.
- A finished but unreadable step (truncated or garbled files) is skipped with a warning,
  moved aside to `RUN/checkpoints_unreadable/`, and the next older one restored: a run
  never dies on a bad checkpoint while a good one exists, and never silently restarts
  from scratch when all of them are bad (CheckpointError says what to do).
- A failed save (disk full, unwritable directory) raises CheckpointError after removing
  its partial files; the earlier steps are untouched.
The directory may be a gs:// URL: Orbax writes it through tensorstore's GCS driver and
epath; the clean-up and set-aside here go through `rundir`'s epath primitives (a move on
GCS is a copy + delete, which is fine for a step being set aside).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import orbax.checkpoint as ocp

from scaling_jax import distributed, errors, rundir, storage

log = logging.getLogger(__name__)

UNREADABLE_DIR = "checkpoints_unreadable"  # beside checkpoints/: steps that failed to restore
TMP_SUFFIX = ".orbax-checkpoint-tmp"
# What a storage failure's message says (ENOSPC reaches us as a ValueError from tensorstore).
STORAGE_ERROR_WORDS = ("no space", "space left", "permission", "read-only", "errno",
                       "quota", "disk")


class CheckpointError(RuntimeError):
  """A checkpoint could not be written, or none of the existing ones can be read."""


def _describe(e: BaseException) -> str:
  return rundir.describe_error(e, limit=300)


def _is_primary() -> bool:
  import jax
  return jax.process_index() == 0


class Checkpointer:
  def __init__(self, directory: str, train_cfg):
    self.directory = os.fspath(directory) if rundir.is_remote(directory) else os.path.abspath(
        directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=int(train_cfg.keep_checkpoints),
        enable_async_checkpointing=bool(train_cfg.async_checkpointing),
        create=True,
    )
    try:
      self.manager = ocp.CheckpointManager(self.directory, options=options)
    except OSError as e:
      raise CheckpointError(f"cannot open the checkpoint directory {self.directory} "
                            f"({_describe(e)}); make it writable or use another --workdir") from e
    self._remove_partial()  # half-written saves of a killed run (Orbax's own cleanup is async)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, extra: dict[str, Any]) -> None:
    """Saves `state` and the JSON-able `extra` (data iterator state, time) at `step`.

    Raises CheckpointError (the earlier steps intact, this step's partial files removed)
    when the save fails, e.g. with ENOSPC.
    """
    if step in self.manager.all_steps():
      return
    try:
      with storage.timed_write(f"checkpoint step {step}"):  # slowed by retries: says so
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)))
    except Exception as e:  # noqa: BLE001 -- tensorstore reports ENOSPC as ValueError too
      if distributed.is_peer_failure(e):
        raise  # another process died mid-save: not this disk's fault (train: PeerLost)
      self._remove_partial(step)
      raise self._save_error(step, e) from e

  def _save_error(self, step: int, e: BaseException) -> CheckpointError:
    intact = [s for s in self.steps() if s != step]
    resume = (f"rerun the same command to resume from step {intact[-1]}" if intact
              else "rerun the same command to start again")
    # The disk advice only where the error is about storage (tensorstore reports ENOSPC as a
    # ValueError): another error (a bug, a library's) is not told to free space.
    disk_error = isinstance(e, OSError) or any(
        word in str(e).lower() for word in STORAGE_ERROR_WORDS)
    advice = ("Free disk space (or fix the directory's permissions), then " if disk_error
              else "")
    return CheckpointError(
        f"could not write checkpoint step {step} to {self.directory} ({_describe(e)}); "
        f"the earlier checkpoints {intact} are intact. {advice}{resume}")

  def _remove_partial(self, step: int | None = None) -> None:
    """Deletes the temporary directories Orbax left for `step` (None: for any step)."""
    if not _is_primary():
      return
    for path in rundir.glob(self.directory, f"*{TMP_SUFFIX}*"):
      name = os.path.basename(path).split(TMP_SUFFIX)[0]
      if rundir.is_dir(path) and (name == str(step) if step is not None else name.isdigit()):
        log.warning("removing the half-written checkpoint %s", path)
        try:
          rundir.path(path).rmtree()
        except OSError:
          pass

  def restore_latest(self, abstract_state):
    """(state, extra) of the newest readable step, or None when there is no step at all.

    Unreadable newer steps are moved to RUN/checkpoints_unreadable/ (so that the resumed
    run can write those steps again); CheckpointError when no step is readable.
    """
    failures: list[tuple[int, str]] = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), extra=ocp.args.JsonRestore()))
      except Exception as e:  # noqa: BLE001 -- any unreadable step is skipped, loudly
        if distributed.is_peer_failure(e):
          raise  # the step is fine: another process died while restoring it (bench_faults)
        failures.append((step, _describe(e)))
        msg = (f"WARNING: checkpoint step {step} in {self.directory} is unreadable "
               f"({_describe(e)}); trying an older one")
        log.warning(msg)
        print(msg, file=sys.stderr, flush=True)
        continue
      if failures:
        self._set_aside([s for s, _ in failures])
        print(f"WARNING: restored checkpoint step {step} instead of the unreadable newer "
              f"step(s) {[s for s, _ in failures]} (moved to {self._unreadable_dir()})",
              file=sys.stderr, flush=True)
      return restored["state"], restored["extra"]
    if failures:
      raise CheckpointError(
          f"none of the checkpoints {sorted(s for s, _ in failures)} in {self.directory} can "
          f"be read (step {failures[0][0]}: {failures[0][1]}). If the code or config changed "
          f"since they were written, resume with the version that wrote them; to start over "
          f"instead, move {self.directory} away")
    return None

  def _unreadable_dir(self) -> str:
    return str(rundir.path(self.directory).parent / UNREADABLE_DIR)

  def _set_aside(self, steps: list[int]) -> None:
    """Moves unreadable step directories out of Orbax's sight, keeping them for autopsy."""
    if _is_primary():
      aside = rundir.path(self._unreadable_dir())
      aside.mkdir(parents=True, exist_ok=True)
      for step in steps:
        src = rundir.path(self.directory) / str(step)
        dst = aside / str(step)
        n = 1
        while dst.exists():
          dst = aside / f"{step}.{n}"
          n += 1
        if src.is_dir():
          src.rename(dst)
    self._sync("set_aside_unreadable")
    self.manager.reload()

  @staticmethod
  def _sync(name: str) -> None:
    import jax
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"scaling_jax.checkpoint.{name}")

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def wait(self) -> None:
    """Waits for an async save; its failure surfaces here as CheckpointError."""
    try:
      with storage.timed_write("asynchronous checkpoint save"):
        self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"an asynchronous checkpoint save in {self.directory} failed "
                            f"({_describe(e)}); free disk space and rerun the same command "
                            f"to resume from the newest readable step") from e

  def close(self) -> None:
    self.manager.close()


class BranchError(errors.UserError, ValueError):
  """A branch's `train.init_from` / `train.init_step` names no checkpoint there is."""


def _open_base_run(run_dir: str) -> ocp.CheckpointManager:
  """A read-only manager of run `run_dir`'s checkpoints (that run is never changed);
  BranchError when it has none."""
  directory = rundir.path(run_dir) / rundir.CHECKPOINT_DIR
  if not rundir.is_dir(str(directory)):
    raise BranchError(f"train.init_from={run_dir}: no {rundir.CHECKPOINT_DIR}/ there; train "
                      "that run first (its checkpoints are where this run starts)")
  return ocp.CheckpointManager(str(directory), options=ocp.CheckpointManagerOptions(
      read_only=True, create=False))


def finished_steps(run_dir: str) -> list[int]:
  """The finished checkpoint steps of run `run_dir`, oldest first ([] when it has none), read
  without changing anything: what a rerun can resume from (record_peer_lost)."""
  directory = rundir.path(run_dir) / rundir.CHECKPOINT_DIR
  if not rundir.is_dir(str(directory)):
    return []
  return sorted(ocp.utils.checkpoint_steps(directory))  # Orbax's own test of "finalized"


def record_peer_lost(run_dir: str, reason: str) -> str:
  """Status 'failed' for a run that lost a process (`rundir.mark_peer_lost`), naming the
  checkpoint a rerun resumes from; the trainer's survivors and launch/local.py both record
  through here. Returns the message written."""
  try:
    steps = finished_steps(run_dir)
  except Exception:  # noqa: BLE001 -- unreachable too: the message says "last checkpoint"
    steps = None
  return rundir.mark_peer_lost(run_dir, reason, steps)


def _choose_branch_step(manager: ocp.CheckpointManager, run_dir: str, step: int) -> int:
  """`step` (the newest for -1) if the manager holds it, else BranchError naming those it has."""
  steps = sorted(manager.all_steps())
  if step == -1 and steps:
    step = steps[-1]
  if step not in steps:
    raise BranchError(f"train.init_from={run_dir} has no checkpoint at step {step} (it has "
                      f"{steps}); set train.init_step to one of them")
  return step


def branch_step(run_dir: str, step: int) -> int:
  """The checkpoint step of run `run_dir` that a branch starts from: `step`, or the newest for
  -1. BranchError, naming the steps there are, when there is no such checkpoint; cheap (a
  directory listing), so preflight asks before anything is built or compiled."""
  manager = _open_base_run(run_dir)
  try:
    return _choose_branch_step(manager, run_dir, step)
  finally:
    manager.close()


def restore_from_run(run_dir: str, step: int, abstract_state) -> tuple[Any, dict, int]:
  """(state, extra, step) of another run's checkpoint `step` (-1: its newest), opened read-only
  (that run is never changed): where a branch starts. BranchError (as `branch_step`, which
  preflight asks first) when there is no such checkpoint, CheckpointError when it cannot be
  read; the manager is opened once for the listing and the restore."""
  manager = _open_base_run(run_dir)
  try:
    step = _choose_branch_step(manager, run_dir, step)
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), extra=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 -- another config's checkpoint, or a damaged one
      raise CheckpointError(f"cannot restore step {step} of {run_dir} ({_describe(e)}); a branch "
                            "must have that run's model and optimizer") from e
  finally:
    manager.close()
  return restored["state"], restored["extra"], step
