"""Helpers shared by the launchers: the training command line and template rendering."""

from __future__ import annotations

import os
import re
import shlex
from typing import Any, Mapping, Sequence

from scaling_jax.sweep import format_override  # one home: `scaling-jax sweep` uses it too

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ("scaling-jax", "train")


def train_command(config: str, workdir: str, overrides: Mapping[str, Any] | None = None,
                  extra: Sequence[str] = (), entry: Sequence[str] = TRAIN) -> list[str]:
  """`scaling-jax train --config C --workdir W --config.k=v ...`.

  No distributed flags: the trainer calls scaling_jax.distributed.initialize(), which
  reads the environment the launcher sets up.
  """
  cmd = [*entry, "--config", config, "--workdir", workdir]
  cmd += [format_override(k, v) for k, v in (overrides or {}).items()]
  return cmd + list(extra)


def render(template: str, fields: Mapping[str, Any]) -> str:
  """Fills `{{name}}` fields; a field left unfilled or unused is an error."""
  used = set(re.findall(r"{{(\w+)}}", template))
  missing, unused = used - set(fields), set(fields) - used
  if missing or unused:
    raise KeyError(f"template fields missing {sorted(missing)}, unused {sorted(unused)}")
  return re.sub(r"{{(\w+)}}", lambda m: str(fields[m.group(1)]), template)


def shell_line(argv: Sequence[str]) -> str:
  return shlex.join([str(a) for a in argv])
