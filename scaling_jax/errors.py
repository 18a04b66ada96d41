"""Expected errors and the one error boundary every `scaling-jax` command runs inside.

Two kinds of failure, told apart on purpose:
- `UserError` (and its subclasses: ConfigError, SweepError, FitError, DamagedRunFile, ...):
  the input cannot work -- a bad config or override, a bad or damaged file, an unwritable
  output, a sweep file that raises. `run_command` prints ONE line on stderr,
  `scaling-jax CMD: error: what was wrong; what to do`, and the exit code is 2.
- anything else is a bug in scaling-jax: it keeps its traceback (exit 1).

An OSError is a user error only where a path the user named is written (`writing` turns it
into one there, saying which path) or read (the readers of config, sweep, table and run
files say which file), never by catching everything. This module imports nothing of
scaling_jax, so every module can import it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import sys
from typing import Callable, Iterator, Sequence

EXIT_USER_ERROR = 2


class UserError(Exception):
  """Input that cannot work; the message says what was wrong and what to do."""


class UsageError(UserError):
  """Command-line arguments argparse rejects."""


class OutputError(UserError):
  """An output path the user named cannot be written."""


def one_line(e: BaseException) -> str:
  """The message of `e` on one line (its lines joined with '; ')."""
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  return "; ".join(lines) or type(e).__name__


def run_command(name: str, main: Callable[[list[str]], int | None], argv: Sequence[str]) -> int:
  """Runs a command's `main(argv)`: a UserError becomes one stderr line and exit code 2."""
  try:
    return int(main(list(argv)) or 0)
  except UserError as e:
    print(f"scaling-jax {name}: error: {one_line(e)}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


def boundary(name: str):
  """Decorator: `main(argv=None)` of command `name` runs inside `run_command`, so a module
  run on its own (`python -m scaling_jax.sweep`) or called from a test fails the same way."""

  def wrap(main):
    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None) -> int:
      return run_command(name, main, sys.argv[1:] if argv is None else argv)
    return wrapped

  return wrap


@contextlib.contextmanager
def writing(path: os.PathLike | str, flag: str) -> Iterator[None]:
  """OSError inside the block -> OutputError naming `path` and the option (`flag`) to change."""
  try:
    yield
  except OSError as e:
    raise OutputError(f"cannot write {os.fspath(path)} ({e.strerror or e}); choose a "
                      f"writable {flag}") from None


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose errors are UsageErrors: one line through `run_command`, not usage + error."""

  def error(self, message: str):
    raise UsageError(f"{message}; see `{self.prog} --help`")


def _number(kind: type, test: Callable[[float], bool], rule: str) -> Callable[[str], float]:
  def parse(text: str):
    try:
      value = kind(text)
    except ValueError:
      noun = "an integer" if kind is int else "a number"
      raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if not (math.isfinite(value) and test(value)):
      raise argparse.ArgumentTypeError(f"{text!r} must be {rule}")
    return value
  return parse


# argparse `type=` for options that are counts or positive numbers
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
