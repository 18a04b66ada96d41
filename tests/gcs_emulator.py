"""A local GCS emulator (gcp-storage-emulator) for tests and benchmarks: gs:// run, sweep and
data directories without a network.

The emulator serves gcsfs (our files, through etils.epath) and tensorstore (Orbax's
checkpoints): STORAGE_EMULATOR_HOST and TENSORSTORE_GCS_HTTP_URL point them at it,
GOOGLE_AUTH_TOKEN_FOR_TESTING skips tensorstore's credential lookup, and
GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false skips gcsfs's gRPC bucket-type probe (which an
emulator does not answer: ~60 s of retries per bucket otherwise). The emulator omits the
`x-goog-generation` header of a download, which real GCS sends and tensorstore needs for
its conditional writes (OCDBT manifests): SERVER adds it.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import time
from typing import Iterator

BUCKET = "scaling-jax-test"
ENV_KEYS = ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL",
            "GOOGLE_AUTH_TOKEN_FOR_TESTING", "TENSORSTORE_GCS_HTTP_VERSION")
MODULES = ("gcp_storage_emulator", "gcsfs")  # what a test needs installed

# Read when gcsfs is imported: set before anything imports it.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

SERVER = """
import sys
from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects

def with_generation(handler):
  def handle(request, response, storage, *args, **kwargs):
    try:
      obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
      response["x-goog-generation"] = obj["generation"]
    except Exception:
      pass  # no such object: the handler answers 404
    return handler(request, response, storage, *args, **kwargs)
  return handle

for _, handlers in server.HANDLERS:  # the object GETs: JSON API and media downloads
  for method, handler in list(handlers.items()):
    if method == "GET" and handler in (objects.download, objects.get):
      handlers[method] = with_generation(handler)
host, port, bucket = sys.argv[1:]
server.create_server(host, int(port), in_memory=True, default_bucket=bucket).run()
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
  """Returns once 127.0.0.1:port accepts connections; RuntimeError if `proc` dies first."""
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      return
    except OSError:
      if proc.poll() is not None or time.monotonic() > deadline:
        raise RuntimeError(f"the server on port {port} did not start") from None
      time.sleep(0.2)


def emulator_env(url: str) -> dict[str, str]:
  """The environment that points gcsfs and tensorstore at the server at `url`."""
  return {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
          "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "TENSORSTORE_GCS_HTTP_VERSION": "1"}


@contextlib.contextmanager
def running(work_dir: pathlib.Path, bucket: str = BUCKET) -> Iterator[str]:
  """An in-memory emulator with one bucket, logging to work_dir/emulator.log; yields its URL
  (http://127.0.0.1:PORT). The caller points processes at it with `emulator_env(url)`."""
  work_dir.mkdir(parents=True, exist_ok=True)
  port = free_port()
  with open(work_dir / "emulator.log", "wb") as log:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, "127.0.0.1", str(port), bucket],
                            stdout=log, stderr=subprocess.STDOUT, cwd=work_dir)
    try:
      wait_for_port(port, proc)
      yield f"http://127.0.0.1:{port}"
    finally:
      proc.terminate()
      proc.wait(timeout=30)


@contextlib.contextmanager
def environment(url: str) -> Iterator[None]:
  """This process (and the children it starts) talk to the server at `url` inside the block."""
  saved = {k: os.environ.get(k) for k in ENV_KEYS}
  os.environ.update(emulator_env(url))
  try:
    yield
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
