"""Checks before training starts: is the run directory usable, is there room for it?

A scaling study fails expensively when it finds out after hours that the disk is full or
that `--workdir` points at someone else's run. `check(config, workdir)` finds what can be
found up front and raises PreflightError (a ConfigError: the CLI prints one line and exits
2) with what to do:
- the workdir can be created and written (a probe file is written, fsync'ed, removed);
- the free space holds the checkpoints the run keeps (estimated from the parameter count,
  dtype and optimizer) plus its metrics;
- an existing run there was written by this scaling_jax version (rundir.check_versions)
  and its config.json is not damaged (rundir.DamagedRunFile, exit 2, nothing touched).
`check_output_dir` does the same for the other commands' output directories (--out).
A remote workdir (gs://) is refused in one line unless its backend (gcsfs) is installed,
and must accept a probe object; an object store has no free-space figure to check.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile

from scaling_jax import accounting, checkpoint, rundir
from scaling_jax.config import ConfigError

# Optimizer state per parameter, in units of one parameter: AdamW keeps two moments of the
# parameter's dtype; Adafactor's factored moments are far smaller (1 is an upper bound).
OPT_STATE_FACTOR = {"adamw": 2.0, "adafactor": 1.0}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
CHECKPOINT_OVERHEAD_BYTES = 1 << 20  # Orbax metadata, the data iterator state
METRICS_BYTES_PER_RECORD = 2048  # one metrics.jsonl line plus its TensorBoard events


class PreflightError(ConfigError):
  """The run cannot start as asked (unwritable workdir, too little disk, foreign run)."""


@dataclasses.dataclass(frozen=True)
class Report:
  checkpoint_bytes: int  # one checkpoint
  needed_bytes: int  # what the run may still write (checkpoints kept + one in flight + logs)
  free_bytes: int
  warnings: tuple[str, ...] = ()


def checkpoint_bytes(config) -> int:
  """Estimated size of one checkpoint: parameters plus optimizer state, plus overhead."""
  n = accounting.counts(config.model).n_params_total
  per_param = DTYPE_BYTES.get(config.model.param_dtype, 4)
  factor = 1.0 + OPT_STATE_FACTOR.get(config.optim.name, 2.0)
  return int(n * per_param * factor) + CHECKPOINT_OVERHEAD_BYTES


def _dir_bytes(path: str) -> int:  # local only: check_disk skips object stores
  total = 0
  for dirpath, _, filenames in os.walk(path):
    for name in filenames:
      try:
        total += os.path.getsize(os.path.join(dirpath, name))
      except OSError:
        pass
  return total


def _fmt(n: float) -> str:
  for unit in ("B", "KB", "MB", "GB", "TB"):
    if abs(n) < 1024 or unit == "TB":
      return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
    n /= 1024
  return f"{n:.1f} TB"


def check_remote(workdir: str) -> None:
  """A remote workdir: its backend is installed and a probe object can be written."""
  rundir.check_backend(workdir)  # RemoteBackendError (a ConfigError): what to install
  probe = rundir.path(workdir) / f".preflight.{os.getpid()}"
  try:
    rundir.write_bytes(probe, b"x")
    rundir.remove(probe)
  except Exception as e:  # noqa: BLE001 -- auth, missing bucket, network: one line each
    raise PreflightError(f"cannot write to --workdir {workdir} ({rundir.describe_error(e, 200)}); "
                         "check the bucket name and the credentials (gcloud auth "
                         "application-default login)") from None


def check_writable(workdir: str) -> None:
  """Creates `workdir` if needed and proves it can be written; PreflightError if not."""
  if rundir.is_remote(workdir):
    check_remote(workdir)
    return
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise PreflightError(f"--workdir {workdir} exists and is not a directory; choose "
                         "another --workdir")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise PreflightError(f"cannot create --workdir {workdir} ({e.strerror or e}); choose a "
                         "writable location") from None
  probe = os.path.join(workdir, f".preflight.{os.getpid()}")
  try:
    with open(probe, "wb") as f:
      f.write(b"x" * 4096)
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    raise PreflightError(f"--workdir {workdir} is not writable ({e.strerror or e}); fix its "
                         "permissions or free disk space, or choose another --workdir") from None
  finally:
    try:
      os.remove(probe)
    except OSError:
      pass


def check_output_dir(out: str, flag: str) -> None:
  """PreflightError, before any work, when output directory `out` (named by option `flag`)
  is under a file or cannot be written (a probe file in its nearest existing ancestor is
  created and removed). Creates nothing."""
  if rundir.is_remote(out):
    rundir.check_backend(out)
    return
  existing = os.path.abspath(out)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise PreflightError(f"{flag} {out}: {existing} is not a directory; choose another {flag}")
  try:
    with tempfile.NamedTemporaryFile(dir=existing, prefix=".scaling_jax_probe."):
      pass
  except OSError as e:
    raise PreflightError(f"{flag} {out}: cannot write in {existing} ({e.strerror or e}); "
                         f"choose another {flag}") from None


def check_disk(config, workdir: str) -> Report:
  """PreflightError when the free space cannot hold what the run will still write."""
  one = checkpoint_bytes(config)
  if rundir.is_remote(workdir):  # a bucket has no free-space figure
    return Report(checkpoint_bytes=one, needed_bytes=0, free_bytes=-1)
  keep = max(int(config.train.keep_checkpoints), 1)
  ckpt_dir = os.path.join(workdir, rundir.CHECKPOINT_DIR)
  already = _dir_bytes(ckpt_dir) if os.path.isdir(ckpt_dir) else 0
  # Orbax writes a new step before deleting the oldest: keep + 1 exist at the peak; the
  # ones already on disk count towards that.
  records = int(config.train.num_steps) // max(int(config.train.log_every), 1) + 1
  needed = max((keep + 1) * one - already, one) + records * METRICS_BYTES_PER_RECORD
  free = shutil.disk_usage(workdir).free
  if free < needed:
    raise PreflightError(
        f"--workdir {workdir} has {_fmt(free)} free but this run needs about {_fmt(needed)} "
        f"({keep} kept + 1 in-flight checkpoint(s) of ~{_fmt(one)} each, plus metrics); free "
        f"space, lower config.train.keep_checkpoints, or choose another --workdir")
  return Report(checkpoint_bytes=one, needed_bytes=needed, free_bytes=free)


def check_versions(workdir: str) -> list[str]:
  """Warnings about a run dir written by other library versions (VersionMismatch if
  scaling_jax itself differs; see rundir.check_versions for the policy)."""
  existing = rundir.read_config(workdir)
  if existing is None:
    return []
  return rundir.check_versions(workdir, existing.get("versions"), rundir.code_versions())


def check(config, workdir: str, *, verbose: bool = True) -> Report:
  """All the checks, in order; the warnings go to stderr when `verbose`."""
  check_writable(workdir)
  if config.train.init_from:  # a branch: the checkpoint it starts from exists
    checkpoint.branch_step(config.train.init_from, int(config.train.init_step))
  warnings = check_versions(workdir)
  report = dataclasses.replace(check_disk(config, workdir), warnings=tuple(warnings))
  if verbose:
    for w in warnings:
      print(f"WARNING: {w}", file=sys.stderr, flush=True)
  return report
