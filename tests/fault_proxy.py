"""A fault-injecting HTTP proxy for the GCS emulator (issue #27): storage that answers some
requests with 503, as a real bucket does under load, so that tests and benchmarks can see
what the libraries' retries cost a run and that the run says so.

Every request is forwarded to the emulator, except a deterministic fraction that is
answered 503 (with GCS's JSON error body) without reaching it: request i (counting from 0,
in arrival order) fails iff the i-th draw of `random.Random(seed)` is below `fail`. The
proxy counts requests and injected faults, per client (gcsfs or tensorstore, told apart by
their User-Agent), and serves those counts at GET STATS_PATH (neither counted nor failed).

Both libraries reach the proxy when the environment that points them at the emulator
points at the proxy instead: `gcs_emulator.environment(proxy.url)`.

In-process (a thread):     with FaultProxy(emulator_url, fail=1/3, seed=0) as proxy: ...
As a subprocess:           with spawn(emulator_url, fail=0.2) as proxy: proxy.stats()
                           (python -m tests.fault_proxy --upstream URL --fail 0.2 --port N)
It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import pathlib
import random
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from typing import Any, Iterator

STATS_PATH = "/__fault_proxy__/stats"
CLIENTS = ("gcsfs", "tensorstore", "other")
# Hop-by-hop headers (RFC 9110 7.6.1) and the framing the proxy redoes itself.
_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "expect", "content-length"}
_FAULT_BODY = json.dumps({"error": {"code": 503, "message": "injected by tests/fault_proxy.py",
                                    "errors": [{"reason": "backendError"}]}}).encode()


def client_of(user_agent: str) -> str:
  """'gcsfs', 'tensorstore' or 'other': which library sent a request, by its User-Agent."""
  agent = user_agent.lower()
  if "gcsfs" in agent:
    return "gcsfs"
  if "tensorstore" in agent or "curl" in agent:  # tensorstore talks HTTP through libcurl
    return "tensorstore"
  return "other"


class _Counts:
  """Requests and injected faults, in total and per client; the seeded fault schedule."""

  def __init__(self, fail: float, seed: int):
    self.fail, self.seed = float(fail), int(seed)
    self._rng = random.Random(seed)
    self._lock = threading.Lock()
    self.requests = 0
    self.faults = 0
    self.abandoned = 0  # answers the client hung up before reading (a cancelled request)
    self.by_client = {c: {"requests": 0, "faults": 0} for c in CLIENTS}

  def next_fails(self, client: str) -> bool:
    """Counts one request; True if it is to be answered 503 (the schedule's next draw)."""
    with self._lock:
      fails = self._rng.random() < self.fail
      self.requests += 1
      self.by_client[client]["requests"] += 1
      if fails:
        self.faults += 1
        self.by_client[client]["faults"] += 1
      return fails

  def hung_up(self) -> None:
    with self._lock:
      self.abandoned += 1

  def snapshot(self) -> dict[str, Any]:
    with self._lock:
      return {"requests": self.requests, "faults": self.faults, "abandoned": self.abandoned,
              "fail": self.fail,
              "seed": self.seed, "by_client": json.loads(json.dumps(self.by_client))}


class _Handler(http.server.BaseHTTPRequestHandler):
  """Forwards one request to the upstream server (a fresh connection each: the emulator
  speaks HTTP/1.0), or answers 503; keeps the client's connection alive (HTTP/1.1)."""

  protocol_version = "HTTP/1.1"
  server: "_Server"

  def _body(self) -> bytes:
    """The request body, whether framed by Content-Length or chunked."""
    length = self.headers.get("Content-Length")
    if length:
      return self.rfile.read(int(length))
    if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
      data = b""
      while True:
        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
          while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
          return data
        data += self.rfile.read(size)
        self.rfile.readline()
    return b""

  def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    self.send_response(status)
    for k, v in headers:
      if k.lower() not in _HOP:
        self.send_header(k, v)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def _handle(self) -> None:
    body = self._body()  # read even when failing: the connection stays in step
    if self.command == "GET" and self.path == STATS_PATH:
      stats = json.dumps(self.server.counts.snapshot()).encode()
      self._reply(200, [("Content-Type", "application/json")], stats)
      return
    if self.server.counts.next_fails(client_of(self.headers.get("User-Agent", ""))):
      self._reply(503, [("Content-Type", "application/json")], _FAULT_BODY)
      return
    up = self.server.upstream
    conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
    try:
      headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
      if body or self.command in ("POST", "PUT", "PATCH"):
        headers["Content-Length"] = str(len(body))
      conn.request(self.command, self.path, body=body, headers=headers)
      resp = conn.getresponse()
      data = resp.read()
      self._reply(resp.status, resp.getheaders(), data)
    finally:
      conn.close()

  def _handle_quietly(self) -> None:
    try:
      self._handle()
    except (BrokenPipeError, ConnectionResetError):
      # gcsfs asks for an object and its listing at once and drops the slower request.
      self.server.counts.hung_up()
      self.close_connection = True

  do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle_quietly

  def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base's name
    del format, args  # silent: a run's stderr is what the tests read


class _Server(http.server.ThreadingHTTPServer):
  daemon_threads = True

  def __init__(self, port: int, upstream: str, counts: _Counts):
    self.upstream = urllib.parse.urlsplit(upstream)
    self.counts = counts
    super().__init__(("127.0.0.1", port), _Handler)

  def handle_error(self, request: Any, client_address: Any) -> None:
    """A client that hangs up (between requests of a kept-alive connection, or before its
    answer) is no error of the proxy's; anything else is printed as usual."""
    if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
      super().handle_error(request, client_address)


class FaultProxy:
  """The proxy in a thread of this process. `url` is what to point the clients at; `stats()`
  the counts so far: {"requests", "faults", "abandoned" (answers that found the client gone:
  a request it had dropped), "fail", "seed", "by_client": {client: {"requests", "faults"}}}."""

  def __init__(self, upstream: str, fail: float = 0.0, seed: int = 0, port: int = 0):
    if not 0.0 <= fail <= 1.0:
      raise ValueError(f"fail={fail}: a fraction of requests, in [0, 1]")
    self.upstream = upstream.rstrip("/")
    self.counts = _Counts(fail, seed)
    self._server = _Server(port, self.upstream, self.counts)
    self._thread: threading.Thread | None = None

  @property
  def port(self) -> int:
    return self._server.server_address[1]

  @property
  def url(self) -> str:
    return f"http://127.0.0.1:{self.port}"

  def start(self) -> "FaultProxy":
    self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                    name=f"fault-proxy-{self.port}")
    self._thread.start()
    return self

  def stop(self) -> None:
    self._server.shutdown()
    self._server.server_close()
    if self._thread is not None:
      self._thread.join(timeout=10)

  def stats(self) -> dict[str, Any]:
    return self.counts.snapshot()

  def __enter__(self) -> "FaultProxy":
    return self.start()

  def __exit__(self, *exc: Any) -> None:
    self.stop()


class ProxyProcess:
  """A handle on a proxy started by `spawn`: its `url` and `stats()` (over HTTP)."""

  def __init__(self, url: str, proc: subprocess.Popen):
    self.url, self.proc = url, proc

  def stats(self) -> dict[str, Any]:
    with urllib.request.urlopen(self.url + STATS_PATH, timeout=30) as r:
      return json.loads(r.read())


@contextlib.contextmanager
def spawn(upstream: str, fail: float = 0.0, seed: int = 0) -> Iterator[ProxyProcess]:
  """The proxy as a subprocess (`python -m tests.fault_proxy`), stopped on exit."""
  from tests import gcs_emulator
  port = gcs_emulator.free_port()
  proc = subprocess.Popen([sys.executable, "-m", "tests.fault_proxy", "--upstream", upstream,
                           "--fail", str(fail), "--seed", str(seed), "--port", str(port)],
                          cwd=pathlib.Path(__file__).resolve().parents[1],
                          stdout=subprocess.DEVNULL)
  try:
    gcs_emulator.wait_for_port(port, proc)
    yield ProxyProcess(f"http://127.0.0.1:{port}", proc)
  finally:
    proc.terminate()
    proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--upstream", required=True, help="the emulator's URL")
  parser.add_argument("--fail", type=float, default=0.0, help="fraction of requests failed")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
  args = parser.parse_args(argv)
  proxy = FaultProxy(args.upstream, args.fail, args.seed, args.port)
  print(proxy.url, flush=True)
  try:
    proxy._server.serve_forever()
  except KeyboardInterrupt:
    pass
  return 0


if __name__ == "__main__":
  sys.exit(main())
