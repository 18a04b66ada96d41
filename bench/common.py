"""Shared helpers of the bench/ scripts: BENCHMARKS.md sections and an environment line."""

from __future__ import annotations

import os
import pathlib
import platform
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "BENCHMARKS.md"
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))


def write_section(text: str, heading: str, path: pathlib.Path = BENCHMARKS) -> None:
  """Replaces (or appends) the `heading` section of BENCHMARKS.md with `text`."""
  old = path.read_text() if path.exists() else "# Benchmarks\n"
  start = old.find(heading)
  if start < 0:
    new = old.rstrip("\n") + "\n\n" + text
  else:
    end = old.find("\n## ", start + len(heading))
    new = old[:start] + text + ("" if end < 0 else old[end:])
  path.write_text(new if new.endswith("\n") else new + "\n")


def publish(lines: list[str], heading: str, write: bool = True) -> str:
  """Prints a section and (unless `write` is False) puts it into BENCHMARKS.md."""
  text = "\n".join(lines) + "\n"
  print(text)
  if write:
    write_section(text, heading)
  return text


def environment() -> str:
  """One line: machine, cores, Python and the versions that matter for speed."""
  import jax
  import numpy as np
  dev = jax.devices()[0]
  return (f"{platform.machine()} with {os.cpu_count()} CPU cores, device {dev.platform}:"
          f"{dev.device_kind} x{jax.device_count()}; Python {platform.python_version()}, "
          f"jax {jax.__version__}, numpy {np.__version__}")
