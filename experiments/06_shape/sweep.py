"""Experiment 6 sweep, shape at fixed N: depth, aspect ratio, d_ff/d_model and heads.

Three families around one N (CPU: ~9.8e4, the 2 x 64 model; pod: ~8.5e7, 12 x 768): n_layer at
d_ff = 4 d_model (which also sweeps the aspect ratio d_model/n_layer), d_ff/d_model at the
base depth, and n_heads at the base shape. d_model is rounded to a multiple of 8 (CPU) or
64 (pod), so N matches within ~15%; the analysis corrects for the rest with alpha_N.
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402

import math  # noqa: E402


def _d_model(n_target: float, n_layer: int, ff_ratio: float, multiple: int) -> int:
  """d_model giving N = 2 d n_layer (2 d + ff_ratio d) closest to n_target."""
  d = math.sqrt(n_target / (2 * n_layer * (2 + ff_ratio)))
  return max(multiple, int(round(d / multiple)) * multiple)


def get_sweep(scale: str | None = None) -> list[dict]:
  scale = common.resolve_scale(scale)
  cpu = scale == "cpu"
  base_n, base_d, mult = (2, 64, 8) if cpu else (12, 768, 64)
  n_target = 12 * base_n * base_d**2
  depths = (1, 2, 4, 8) if cpu else (2, 4, 6, 12, 24, 48)
  heads = (1, 2, 8) if cpu else (4, 8, 16)  # the base's own count is in depths
  out = []
  for n in depths:
    d = _d_model(n_target, n, 4, mult)
    out.append(common.entry(f"depth_n{n}_d{d}", scale,
                            common.shape(n, d, scale, n_heads=4 if cpu else d // 64)))
  for r in (1, 2, 8):  # r = 4 is the base shape, already among the depths
    d = _d_model(n_target, base_n, r, mult)
    out.append(common.entry(f"ffn_r{r}_d{d}", scale,
                            common.shape(base_n, d, scale, d_ff=r * d,
                                         n_heads=4 if cpu else d // 64)))
  for h in heads:
    out.append(common.entry(f"heads_h{h}", scale,
                            common.shape(base_n, base_d, scale, n_heads=h)))
  return out
