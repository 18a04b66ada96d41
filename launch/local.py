"""Run N processes of one command on this machine, wired up as one JAX job.

    python launch/local.py -n 2 --cpu-devices 4 -- scaling-jax train --config configs/tiny.py --workdir runs/x

Process i gets SCALING_JAX_COORDINATOR=127.0.0.1:PORT, SCALING_JAX_NUM_PROCESSES=N and
SCALING_JAX_PROCESS_ID=i, which `scaling_jax.distributed.initialize()` reads. Output
lines are prefixed with [pI]; the exit status is the first failing process's. Good for
testing multi-host code paths on one box.

When one process fails the others have lost a peer: they end on their own (a collective
fails, or JAX's heartbeat check aborts them within ~100 s), so they get `--peer-grace`
seconds (default PEER_GRACE_S) before SIGTERM, then SIGKILL 5 s later. If the command trains
(`--workdir W`) and W's status.json still says `running` afterwards (JAX aborted the
survivors, or the launcher killed them), the launcher records the run as failed with the
lost process and the checkpoint that rerunning resumes from (`record_lost_processes`).
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make `scaling_jax` importable from a checkout
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scaling_jax import checkpoint, errors, rundir  # noqa: E402

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
PEER_GRACE_S = 120.0  # > JAX's 100 s heartbeat timeout: survivors of a lost peer end by then


def free_port() -> int:
  """A TCP port that was free a moment ago (bind to port 0, let the OS pick)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(i: int, n: int, port: int, cpu_devices: int | None = None,
                base: dict[str, str] | None = None,
                gpus_per_process: int | None = None) -> dict[str, str]:
  """The variables process i adds to (or replaces in) its parent's environment."""
  env = {
      "SCALING_JAX_COORDINATOR": f"127.0.0.1:{port}",
      "SCALING_JAX_NUM_PROCESSES": str(n),
      "SCALING_JAX_PROCESS_ID": str(i),
  }
  if gpus_per_process:  # process i sees only its own GPUs
    k = gpus_per_process
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(i * k, (i + 1) * k))
  if cpu_devices is not None:
    base = os.environ if base is None else base
    kept = [f for f in base.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_COUNT_FLAG)]
    env["XLA_FLAGS"] = " ".join(kept + [f"{DEVICE_COUNT_FLAG}={cpu_devices}"])
    env["JAX_PLATFORMS"] = "cpu"
  return env


def describe(command: Sequence[str], envs: list[dict[str, str]]) -> list[str]:
  """One shell line per process: `K=V ... command` (what --dry-run prints)."""
  return [" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(command)
          for env in envs]


def _pump(i: int, stream, out, lock: threading.Lock) -> None:
  for line in iter(stream.readline, ""):
    with lock:
      out.write(f"[p{i}] {line}" if line.endswith("\n") else f"[p{i}] {line}\n")
      out.flush()
  stream.close()


def _stop(procs: list[subprocess.Popen], grace_s: float = 5.0) -> list[int]:
  """SIGTERM the still-running children's process groups, SIGKILL after `grace_s`; the
  indices of those it had to signal."""
  alive = [p for p in procs if p.poll() is None]
  for p in alive:
    try:
      os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
      pass
  deadline = time.monotonic() + grace_s
  for p in alive:
    try:
      p.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      try:
        os.killpg(p.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      p.wait()
  return [procs.index(p) for p in alive]


def _wait_all(procs: list[subprocess.Popen], timeout_s: float) -> None:
  """Waits up to `timeout_s` for every process to end by itself."""
  deadline = time.monotonic() + timeout_s
  while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
    time.sleep(0.05)


def workdir_of(command: Sequence[str]) -> str | None:
  """The run directory a command trains into (`--workdir W` or `--workdir=W`), or None."""
  for i, arg in enumerate(command):
    if arg == "--workdir" and i + 1 < len(command):
      return command[i + 1]
    if arg.startswith("--workdir="):
      return arg.split("=", 1)[1]
  return None


def describe_exit(code: int) -> str:
  """'exited with 3', 'was killed by signal 9 (SIGKILL)', ... for a Popen return code."""
  if code >= 0:
    return f"exited with {code}"
  if -code == signal.SIGABRT:  # how JAX ends the survivors of a lost peer (heartbeats)
    return "was aborted (SIGABRT: JAX's end for a process whose peer is lost)"
  try:
    name = signal.Signals(-code).name
  except ValueError:
    name = "?"
  return f"was killed by signal {-code} ({name})"


def record_lost_processes(command: Sequence[str], codes: Sequence[int | None],
                          stopped: Sequence[int]) -> str | None:
  """Marks the run of `command` failed if its status.json still says `running` after the
  job ended with a failure: the processes that died and those the launcher stopped. Returns
  the message written, or None (no run, or the survivors recorded it themselves)."""
  workdir = workdir_of(command)
  if workdir is None or rundir.read_status(workdir)["status"] != "running":
    return None
  died = [f"process {i} {describe_exit(c)}" for i, c in enumerate(codes)
          if i not in stopped and c not in (None, 0)]
  reason = "; ".join(died + [f"the launcher stopped process {i} after its peer was lost"
                             for i in stopped])
  return checkpoint.record_peer_lost(workdir, reason)


def run(command: Sequence[str], n: int, port: int = 0, cpu_devices: int | None = None,
        timeout_s: float | None = None, out=None, gpus_per_process: int | None = None,
        peer_grace_s: float = PEER_GRACE_S) -> int:
  """Starts the N processes, streams prefixed output; 0 iff all exit 0. After a process
  fails the others get `peer_grace_s` to end by themselves (see the module docstring)."""
  out = sys.stdout if out is None else out
  port = port or free_port()
  procs: list[subprocess.Popen] = []
  threads = []
  lock = threading.Lock()
  try:
    for i in range(n):
      env = {**os.environ, **process_env(i, n, port, cpu_devices,
                                         gpus_per_process=gpus_per_process)}
      p = subprocess.Popen(list(command), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, bufsize=1,
                           start_new_session=True)  # own group: we can stop its children too
      procs.append(p)
      t = threading.Thread(target=_pump, args=(i, p.stdout, out, lock), daemon=True)
      t.start()
      threads.append(t)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    rc = 0
    while True:
      codes = [p.poll() for p in procs]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        i, rc = failed[0]
        with lock:
          out.write(f"[launch] process {i} {describe_exit(rc)}; the others get up to "
                    f"{peer_grace_s:.0f} s to end before they are stopped\n")
        _wait_all(procs, peer_grace_s)
        break
      if all(c == 0 for c in codes):
        break
      if deadline is not None and time.monotonic() > deadline:
        with lock:
          out.write(f"[launch] timeout after {timeout_s} s; stopping all processes\n")
        rc = 124
        break
      time.sleep(0.05)
  except KeyboardInterrupt:
    rc = 130
  finally:
    stopped = _stop(procs)
    for t in threads:
      t.join(timeout=5)
  if rc not in (0, 124, 130):  # a process failed: record what the survivors could not
    message = record_lost_processes(command, [p.returncode for p in procs], stopped)
    if message:
      out.write(f"[launch] recorded in status.json: {message}\n")
  return rc


@errors.boundary("launch/local.py")
def main(argv: list[str]) -> int:
  if "--" not in argv:
    raise errors.UsageError("usage: launch/local.py [-n N] [--port P] [--cpu-devices K | "
                            "--gpus-per-process K] [--dry-run] -- COMMAND...")
  split = argv.index("--")
  parser = errors.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("-n", "--num-processes", type=errors.positive_int, default=2)
  parser.add_argument("--port", type=errors.non_negative_int, default=0, help="coordinator port; 0 = a free one")
  parser.add_argument("--cpu-devices", type=errors.positive_int, default=None,
                      help="simulated CPU devices per process (sets XLA_FLAGS, JAX_PLATFORMS=cpu)")
  parser.add_argument("--gpus-per-process", type=errors.positive_int, default=None,
                      help="give process i GPUs i*K..i*K+K-1 (sets CUDA_VISIBLE_DEVICES)")
  parser.add_argument("--timeout", type=errors.positive_float, default=None,
                      help="seconds before stopping all")
  parser.add_argument("--peer-grace", type=errors.positive_float, default=PEER_GRACE_S,
                      help="seconds the others get to end after one process fails")
  parser.add_argument("--dry-run", action="store_true", help="print env + command per process")
  args = parser.parse_args(argv[:split])
  command = argv[split + 1:]
  if not command:
    parser.error("no command after --")
  port = args.port or free_port()
  if args.dry_run:
    envs = [process_env(i, args.num_processes, port, args.cpu_devices,
                        gpus_per_process=args.gpus_per_process)
            for i in range(args.num_processes)]
    print("\n".join(describe(command, envs)))
    return 0
  return run(command, args.num_processes, port, args.cpu_devices, args.timeout,
             gpus_per_process=args.gpus_per_process, peer_grace_s=args.peer_grace)


if __name__ == "__main__":
  sys.exit(main())
