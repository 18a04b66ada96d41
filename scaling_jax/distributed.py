"""Multi-host start-up: one call that picks the right `jax.distributed.initialize`.

    info = distributed.initialize()        # mode="auto": env vars decide
    if distributed.is_main_process(): ...  # metrics, status.json, plots

`detect(env)` is the pure decision (unit-tested on fake environments); `initialize()`
applies it once. Modes:

  explicit  SCALING_JAX_COORDINATOR=host:port, SCALING_JAX_NUM_PROCESSES=N,
            SCALING_JAX_PROCESS_ID=i (what launch/local.py sets), or the same as arguments.
  slurm     SLURM_NTASKS > 1: coordinator = first host of SLURM_STEP_NODELIST (or
            SLURM_JOB_NODELIST, or SCALING_JAX_COORDINATOR_HOST), port SCALING_JAX_PORT
            (default derived from SLURM_JOB_ID), process id SLURM_PROCID; with several GPU
            tasks on a node each task takes the GPU(s) of its SLURM_LOCALID.
  tpu       a multi-worker TPU slice (TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES with
            several hosts, MEGASCALE_* multi-slice, or SCALING_JAX_DIST=tpu as set by
            launch/tpu_vm.py): jax.distributed.initialize() without arguments, JAX reads
            the TPU metadata itself.
  none      one process: nothing to do.

`auto` picks explicit env vars > SLURM (SLURM_NTASKS > 1) > TPU multi-worker > none;
SCALING_JAX_DIST=<mode> forces a mode.

Who writes what on several hosts: Orbax checkpoints are written by all processes
together (call the CheckpointManager on every process); metrics.jsonl, status.json,
TensorBoard events and plots are written by process 0 only (`main_only`), except when a
peer is lost: then any survivor writes status.json, since process 0 may be the dead one.

A lost peer (a process killed, a host gone): a collective on it fails in the main thread
("Gloo ... Connection closed by peer"), which `is_peer_failure` tells apart from a disk or
data error; the trainer records it (status `failed`, the checkpoint to resume from) and the
command ends with one line (`PeerLost`, `exit_peer_lost`). Where the collective waits
instead, JAX's coordination service notices the missing heartbeats (60-100 s) or the dead
coordinator (at once) and aborts the survivors from a C++ thread (SIGABRT). That abort
cannot be intercepted in-process: jaxlib's runtime client takes a `missed_heartbeat_callback`,
but calling a Python one fails to convert its absl::Status argument (std::bad_cast, measured
with jaxlib 0.10.2) and terminates the process. So the launcher records it instead
(launch/local.py `record_lost_processes`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence, TypeVar

from scaling_jax.errors import UserError, one_line

MODES = ("auto", "none", "explicit", "slurm", "tpu")
ENV_MODE = "SCALING_JAX_DIST"
ENV_COORDINATOR = "SCALING_JAX_COORDINATOR"
ENV_NUM_PROCESSES = "SCALING_JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "SCALING_JAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "SCALING_JAX_LOCAL_DEVICE_IDS"
ENV_COORDINATOR_HOST = "SCALING_JAX_COORDINATOR_HOST"
ENV_PORT = "SCALING_JAX_PORT"
# Seconds without heartbeats before JAX declares a process dead (JAX's default: 100).
ENV_HEARTBEAT_TIMEOUT = "SCALING_JAX_HEARTBEAT_TIMEOUT_S"
DEFAULT_PORT = 61000  # SLURM without a job id; with one: 61000 + job_id % 4000


EXIT_PEER_LOST = 1  # a failed run (docs/RELIABILITY.md): the survivors of a lost peer


class DistributedError(UserError, ValueError):
  """A multi-host setting that cannot work; the message says what to set."""


class PeerLost(RuntimeError):
  """Another process of the job died or stopped responding; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `initialize` will do; `mode == "tpu"` means: let JAX auto-detect."""
  mode: str  # none | explicit | slurm | tpu
  coordinator: str | None = None
  num_processes: int = 1
  process_id: int = 0
  local_device_ids: tuple[int, ...] | None = None
  reason: str = ""


@dataclasses.dataclass(frozen=True)
class DistInfo:
  """Where this process stands after `initialize`."""
  mode: str
  process_index: int
  process_count: int
  local_device_count: int
  device_count: int
  coordinator: str | None = None

  @property
  def is_main(self) -> bool:
    return self.process_index == 0


# ---------------------------------------------------------------------------- nodelists

def _split_top_level(s: str) -> list[str]:
  """Splits on commas that are not inside [...]."""
  parts, depth, cur = [], 0, []
  for ch in s:
    if ch == "[":
      depth += 1
    elif ch == "]":
      depth -= 1
      if depth < 0:
        raise DistributedError(f"unbalanced ']' in SLURM nodelist {s!r}")
    if ch == "," and depth == 0:
      parts.append("".join(cur))
      cur = []
    else:
      cur.append(ch)
  if depth:
    raise DistributedError(f"unbalanced '[' in SLURM nodelist {s!r}")
  parts.append("".join(cur))
  return [p for p in parts if p]


def _expand_range(body: str, nodelist: str) -> list[str]:
  out = []
  for item in body.split(","):
    m = re.fullmatch(r"(\d+)(?:-(\d+))?", item.strip())
    if not m:
      raise DistributedError(f"cannot read range {item!r} in SLURM nodelist {nodelist!r}")
    lo, hi = m.group(1), m.group(2) or m.group(1)
    if int(hi) < int(lo):
      raise DistributedError(f"descending range {item!r} in SLURM nodelist {nodelist!r}")
    width = len(lo)  # SLURM keeps the zero padding of the lower bound
    out += [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
  return out


def expand_nodelist(nodelist: str) -> list[str]:
  """'gpu[001-004,007],login1' -> ['gpu001', ..., 'gpu004', 'gpu007', 'login1'].

  Handles several bracket groups in one name ('r[1-2]n[01-02]' -> r1n01, r1n02, ...)
  and text after a bracket ('node[1-2]-ib').
  """
  hosts: list[str] = []
  for part in _split_top_level(nodelist.strip()):
    m = re.search(r"\[([^\]]*)\]", part)
    if not m:
      hosts.append(part)
      continue
    head, tail = part[:m.start()], part[m.end():]
    for num in _expand_range(m.group(1), nodelist):
      hosts += expand_nodelist(head + num + tail) if "[" in tail else [head + num + tail]
  return hosts


def first_host(nodelist: str) -> str:
  hosts = expand_nodelist(nodelist)
  if not hosts:
    raise DistributedError(f"empty SLURM nodelist {nodelist!r}")
  return hosts[0]


# ---------------------------------------------------------------------------- detection

def _int(env: Mapping[str, str], key: str) -> int:
  try:
    return int(env[key])
  except ValueError:
    raise DistributedError(f"{key}={env[key]!r} must be an integer") from None


def _parse_ids(text: str, key: str) -> tuple[int, ...]:
  try:
    return tuple(int(x) for x in text.split(",") if x.strip())
  except ValueError:
    raise DistributedError(f"{key}={text!r} must be comma-separated integers, e.g. 0,1") from None


def _check_explicit(coordinator: str | None, num_processes: int | None,
                    process_id: int | None, source: str) -> None:
  missing = [name for name, v in (("coordinator", coordinator),
                                  ("num_processes", num_processes),
                                  ("process_id", process_id)) if v is None]
  if missing:
    raise DistributedError(
        f"explicit multi-process start from {source} is missing {', '.join(missing)}; set "
        f"{ENV_COORDINATOR}=host:port, {ENV_NUM_PROCESSES}=N and {ENV_PROCESS_ID}=i together")
  if not re.fullmatch(r"[^:\s]+:\d+", coordinator or ""):
    raise DistributedError(f"coordinator {coordinator!r} must look like host:port, "
                           "e.g. 127.0.0.1:12345")
  if num_processes < 1 or not 0 <= process_id < num_processes:
    raise DistributedError(f"process_id={process_id} must be in [0, num_processes="
                           f"{num_processes})")


def _explicit_from_env(env: Mapping[str, str]) -> Plan | None:
  keys = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
  if not any(k in env for k in keys):
    return None
  coordinator = env.get(ENV_COORDINATOR)
  n = _int(env, ENV_NUM_PROCESSES) if ENV_NUM_PROCESSES in env else None
  i = _int(env, ENV_PROCESS_ID) if ENV_PROCESS_ID in env else None
  _check_explicit(coordinator, n, i, "environment variables")
  ids = (_parse_ids(env[ENV_LOCAL_DEVICE_IDS], ENV_LOCAL_DEVICE_IDS)
         if env.get(ENV_LOCAL_DEVICE_IDS) else None)
  return Plan("explicit", coordinator, n, i, ids, reason=f"{ENV_COORDINATOR} is set")


def _slurm_tasks_per_node(env: Mapping[str, str]) -> int | None:
  if env.get("SLURM_NTASKS_PER_NODE"):
    return _int(env, "SLURM_NTASKS_PER_NODE")
  m = re.match(r"\d+", env.get("SLURM_TASKS_PER_NODE", ""))  # e.g. "8(x4)"
  return int(m.group(0)) if m else None


def _slurm_gpus_on_node(env: Mapping[str, str]) -> int | None:
  if env.get("SLURM_GPUS_ON_NODE"):
    return _int(env, "SLURM_GPUS_ON_NODE")
  visible = env.get("CUDA_VISIBLE_DEVICES")
  return len([v for v in visible.split(",") if v.strip()]) if visible else None


def _slurm_plan(env: Mapping[str, str]) -> Plan:
  for key in ("SLURM_PROCID",):
    if key not in env:
      raise DistributedError(f"SLURM_NTASKS>1 but {key} is unset: start the command with srun")
  n, i = _int(env, "SLURM_NTASKS"), _int(env, "SLURM_PROCID")
  host = env.get(ENV_COORDINATOR_HOST)
  if not host:
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodelist:
      raise DistributedError("SLURM_NTASKS>1 but neither SLURM_STEP_NODELIST nor "
                             "SLURM_JOB_NODELIST is set; start the command with srun "
                             f"or set {ENV_COORDINATOR_HOST}")
    host = first_host(nodelist)
  if env.get(ENV_PORT):
    port = _int(env, ENV_PORT)
  elif env.get("SLURM_JOB_ID", "").isdigit():
    port = DEFAULT_PORT + int(env["SLURM_JOB_ID"]) % 4000  # two jobs on one node differ
  else:
    port = DEFAULT_PORT
  ids = None
  if env.get(ENV_LOCAL_DEVICE_IDS):
    ids = _parse_ids(env[ENV_LOCAL_DEVICE_IDS], ENV_LOCAL_DEVICE_IDS)
  else:
    # Several tasks share a node's GPUs: task LOCALID takes its own slice of them
    # (jax's own SLURM detection does the same: one GPU per task).
    tasks, gpus = _slurm_tasks_per_node(env), _slurm_gpus_on_node(env)
    if tasks and gpus and tasks > 1 and gpus > 1 and "SLURM_LOCALID" in env:
      if gpus % tasks:
        raise DistributedError(f"{gpus} GPUs per node are not divisible by {tasks} tasks per "
                               "node; use --ntasks-per-node equal to --gpus-per-node")
      k, local = gpus // tasks, _int(env, "SLURM_LOCALID")
      ids = tuple(range(local * k, (local + 1) * k))
  return Plan("slurm", f"{host}:{port}", n, i, ids, reason=f"SLURM_NTASKS={n}")


def _tpu_hosts(env: Mapping[str, str]) -> int:
  for key in ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES"):
    if env.get(key):
      return len([h for h in env[key].split(",") if h.strip()])
  return 0


def detect(env: Mapping[str, str], mode: str = "auto") -> Plan:
  """The start-up plan for this process from its environment (pure; no jax calls)."""
  if mode == "auto":
    mode = env.get(ENV_MODE, "").strip().lower() or "auto"
  if mode not in MODES:
    raise DistributedError(f"distributed mode {mode!r} is not one of {MODES} "
                           f"(check {ENV_MODE} or --dist)")
  if mode == "none":
    return Plan("none", reason="single process requested")
  if mode == "explicit":
    plan = _explicit_from_env(env)
    if plan is None:
      _check_explicit(None, None, None, "environment variables")
    return plan
  if mode == "slurm":
    if "SLURM_NTASKS" not in env:
      raise DistributedError("mode slurm but SLURM_NTASKS is unset: run inside sbatch/srun")
    return _slurm_plan(env)
  if mode == "tpu":
    return Plan("tpu", reason="TPU slice (JAX reads the TPU metadata)")
  # auto
  plan = _explicit_from_env(env)
  if plan is not None:
    return plan
  if env.get("SLURM_NTASKS", "").isdigit() and int(env["SLURM_NTASKS"]) > 1:
    return _slurm_plan(env)
  if _tpu_hosts(env) > 1:
    return Plan("tpu", reason=f"{_tpu_hosts(env)} TPU workers in the environment")
  slices = env.get("MEGASCALE_NUM_SLICES", "1")
  if env.get("MEGASCALE_COORDINATOR_ADDRESS") or (slices.isdigit() and int(slices) > 1):
    return Plan("tpu", reason="multi-slice TPU (MEGASCALE_*)")
  return Plan("none", reason="no multi-process environment found")


def plan_from_args(mode: str = "auto", coordinator: str | None = None,
                   num_processes: int | None = None, process_id: int | None = None,
                   local_device_ids: int | Sequence[int] | None = None,
                   env: Mapping[str, str] | None = None) -> Plan:
  """`detect`, with explicit arguments taking precedence over the environment."""
  env = os.environ if env is None else env
  if isinstance(local_device_ids, int):
    local_device_ids = (local_device_ids,)
  ids = tuple(local_device_ids) if local_device_ids is not None else None
  if mode == "explicit" or (mode == "auto" and coordinator is not None):
    plan = _explicit_from_env(env) if coordinator is None else None
    if plan is None:
      _check_explicit(coordinator, num_processes, process_id, "initialize() arguments")
      plan = Plan("explicit", coordinator, num_processes, process_id, ids,
                  reason="initialize() arguments")
    return dataclasses.replace(plan, local_device_ids=ids) if ids is not None else plan
  plan = detect(env, mode)
  return dataclasses.replace(plan, local_device_ids=ids) if ids is not None else plan


# ---------------------------------------------------------------------------- initialize

_INFO: DistInfo | None = None


def _info(mode: str, coordinator: str | None) -> DistInfo:
  import jax
  return DistInfo(mode=mode, process_index=jax.process_index(),
                  process_count=jax.process_count(),
                  local_device_count=jax.local_device_count(),
                  device_count=jax.device_count(), coordinator=coordinator)


def _already_initialized() -> bool:
  try:
    from jax._src import distributed as _jd  # private, but the only way to ask
    return _jd.global_state.client is not None
  except (ImportError, AttributeError):
    return False


def initialize(mode: str = "auto", coordinator: str | None = None,
               num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: int | Sequence[int] | None = None) -> DistInfo:
  """Starts JAX's multi-process runtime as the environment asks; idempotent.

  Call before any other jax computation. A second call returns the first call's
  result; a second call asking for a different multi-process setup raises.
  """
  global _INFO
  plan = plan_from_args(mode, coordinator, num_processes, process_id, local_device_ids)
  if _INFO is not None:
    conflict = plan.mode != "none" and (
        plan.mode != _INFO.mode
        or (plan.mode != "tpu" and plan.num_processes != _INFO.process_count))
    if conflict:
      raise DistributedError(
          f"distributed already initialized as {_INFO.mode} with {_INFO.process_count} "
          f"processes; cannot switch to {plan.mode} with {plan.num_processes}")
    return _INFO
  import jax
  if plan.mode != "none" and not _already_initialized():
    heartbeat = ({"heartbeat_timeout_seconds": _int(os.environ, ENV_HEARTBEAT_TIMEOUT)}
                 if os.environ.get(ENV_HEARTBEAT_TIMEOUT) else {})
    if plan.mode == "tpu":
      jax.distributed.initialize(**heartbeat)
    else:
      # CPU collectives across processes need gloo; harmless on GPU/TPU backends.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
      jax.distributed.initialize(
          coordinator_address=plan.coordinator, num_processes=plan.num_processes,
          process_id=plan.process_id,
          local_device_ids=list(plan.local_device_ids) if plan.local_device_ids else None,
          **heartbeat)
  _INFO = _info(plan.mode, plan.coordinator)
  if plan.mode not in ("none", "tpu") and _INFO.process_count != plan.num_processes:
    raise DistributedError(
        f"expected {plan.num_processes} processes but JAX sees {_INFO.process_count}; "
        "was jax used before distributed.initialize()? call it first")
  return _INFO


# ---------------------------------------------------------------------------- lost peers

# What a lost peer's collective or coordination error says (gloo, the coordination service).
PEER_FAILURE_MARKERS = ("connection closed by peer", "coordination service",
                        "heartbeat", "connection reset by peer", "broken pipe",
                        "task(s) have crashed", "tasks have crashed")


def is_peer_failure(e: BaseException) -> bool:
  """True if `e` (raised by a collective or the runtime) says another process is gone.

  Only in a multi-process job: one process alone has no peer to lose.
  """
  import jax
  if jax.process_count() == 1:
    return False
  chain, seen = [], set()
  while e is not None and id(e) not in seen:  # the error and what it was raised from
    seen.add(id(e))
    chain.append(str(e).lower())
    e = e.__cause__ or e.__context__
  return any(m in text for text in chain for m in PEER_FAILURE_MARKERS)


def exit_peer_lost(message: str) -> None:
  """Prints `scaling-jax: failed: MESSAGE` and ends the process with EXIT_PEER_LOST.

  `os._exit`, not `sys.exit`: JAX's shutdown at interpreter exit waits on a barrier that a
  dead peer never reaches (or aborts the process), which is what this replaces.
  """
  print(f"scaling-jax: failed: {one_line(Exception(message))}", file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(EXIT_PEER_LOST)


# ---------------------------------------------------------------------------- who writes

def is_main_process() -> bool:
  """True on process 0: the one that writes metrics, status.json and plots."""
  import jax
  return jax.process_index() == 0


F = TypeVar("F", bound=Callable[..., Any])


def main_only(fn: F) -> F:
  """Decorator: run `fn` on process 0 only (returns None elsewhere).

  Use for metrics/status/plot writers. Do NOT wrap Orbax saves: every process must
  call the CheckpointManager, Orbax coordinates the multi-host write itself.
  """
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    return fn(*args, **kwargs) if is_main_process() else None
  return wrapper  # type: ignore[return-value]
