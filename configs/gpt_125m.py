"""Paper-scale preset: n_layer=12, d_model=768, n_heads=12 (GPT-3 table shapes)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _paper import paper_config  # noqa: E402


def get_config():
  return paper_config(n_layer=12, d_model=768, n_heads=12, remat="none")
