"""Checkpoints with Orbax: the train state plus the data iterator position and wall time.

Orbax writes each step into a temporary directory and renames it when complete, so a
process killed mid-save leaves no step that looks finished. A step that is finished but
unreadable (truncated or corrupted files) is skipped with a warning and the next older
one restored: a run never dies on a bad checkpoint while a good one exists.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
  def __init__(self, directory: str, train_cfg):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=int(train_cfg.keep_checkpoints),
        enable_async_checkpointing=bool(train_cfg.async_checkpointing),
        create=True,
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state, extra: dict[str, Any]) -> None:
    """Saves `state` and the JSON-able `extra` (data iterator state, time) at `step`."""
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)))

  def restore_latest(self, abstract_state):
    """(state, extra) of the newest readable step, or None when there is none."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), extra=ocp.args.JsonRestore()))
        return restored["state"], restored["extra"]
      except Exception as e:  # noqa: BLE001 -- any unreadable step is skipped, loudly
        log.warning("checkpoint step %d in %s is unreadable (%s: %s); trying an older one",
                    step, self.directory, type(e).__name__, str(e)[:200])
        print(f"WARNING: skipping unreadable checkpoint step {step} in {self.directory}: "
              f"{type(e).__name__}")
    return None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
