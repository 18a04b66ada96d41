"""Run N processes of one command on this machine, wired up as one JAX job.

    python launch/local.py -n 2 --cpu-devices 4 -- scaling-jax train --config configs/tiny.py --workdir runs/x

Process i gets SCALING_JAX_COORDINATOR=127.0.0.1:PORT, SCALING_JAX_NUM_PROCESSES=N and
SCALING_JAX_PROCESS_ID=i, which `scaling_jax.distributed.initialize()` reads. Output
lines are prefixed with [pI]; if one process fails the others are stopped and the exit
status is the failing one's. Good for testing multi-host code paths on one box.
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

from scaling_jax import errors  # noqa: E402

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


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


def _stop(procs: list[subprocess.Popen], grace_s: float = 5.0) -> None:
  """SIGTERM the still-running children's process groups, SIGKILL after `grace_s`."""
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


def run(command: Sequence[str], n: int, port: int = 0, cpu_devices: int | None = None,
        timeout_s: float | None = None, out=None, gpus_per_process: int | None = None) -> int:
  """Starts the N processes, streams prefixed output; 0 iff all exit 0."""
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
          out.write(f"[launch] process {i} exited with {rc}; stopping the others\n")
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
    _stop(procs)
    for t in threads:
      t.join(timeout=5)
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
  parser.add_argument("--cpu-devices", type=int, default=None,
                      help="simulated CPU devices per process (sets XLA_FLAGS, JAX_PLATFORMS=cpu)")
  parser.add_argument("--gpus-per-process", type=int, default=None,
                      help="give process i GPUs i*K..i*K+K-1 (sets CUDA_VISIBLE_DEVICES)")
  parser.add_argument("--timeout", type=float, default=None, help="seconds before stopping all")
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
             gpus_per_process=args.gpus_per_process)


if __name__ == "__main__":
  sys.exit(main())
