"""Published reference data shipped with the package (README.md here says where each file
comes from): Kaplan et al.'s constants (`kaplan2020.json`), Epoch's Chinchilla points and
Porian et al.'s isoFLOP data. Every module reads the paper's constants through here."""

from __future__ import annotations

import json
import pathlib
from typing import Any

DIR = pathlib.Path(__file__).resolve().parent


def kaplan() -> dict[str, Any]:
  """The whole of kaplan2020.json (a fresh copy: callers may change it)."""
  with open(DIR / "kaplan2020.json") as f:
    return json.load(f)


def kaplan_value(dotted: str) -> float:
  """One constant of Kaplan et al., e.g. kaplan_value("critical_batch_size.alpha_B")."""
  node: Any = kaplan()
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError):
      raise KeyError(f"kaplan2020.json has no {dotted!r} (at {part!r})") from None
  return float(node["value"] if isinstance(node, dict) else node)


# Eq. 5.3: B_crit(L) = B_* / L^(1/alpha_B), B_* in tokens
KAPLAN_B_CRIT = {"B_star": kaplan_value("critical_batch_size.B_star_tokens"),
                 "alpha_B": kaplan_value("critical_batch_size.alpha_B")}
