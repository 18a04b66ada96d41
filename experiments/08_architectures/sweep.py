"""Experiment 8 sweep: Transformers, LSTMs and recurrent ("Universal") Transformers.

Transformers and Universal Transformers share the size ladder's shapes (a Universal
Transformer has the FLOPs of its Transformer twin and 1/n_layer of its parameters);
LSTMs are sized to span the same non-embedding N (8 d_model^2 per layer).
"""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])  # the repo root, for `experiments`
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from experiments import common  # noqa: E402

CPU_LSTM = ((1, 64), (2, 96), (2, 160))  # N = 33k .. 410k
POD_LSTM = ((2, 768), (2, 1280), (4, 1536), (4, 2560))  # N = 9M .. 210M


def get_sweep(scale: str | None = None) -> list[dict]:
  scale = common.resolve_scale(scale)
  out = []
  sizes = common.sizes(scale)[:3] if scale == "cpu" else common.sizes(scale)
  for n, d in sizes:
    out.append(common.entry(f"transformer_n{n}_d{d}", scale, common.shape(n, d, scale)))
    out.append(common.entry(f"universal_n{n}_d{d}", scale,
                            {**common.shape(n, d, scale), "model.arch": "universal"}))
  for n, d in (CPU_LSTM if scale == "cpu" else POD_LSTM):
    out.append(common.entry(f"lstm_n{n}_d{d}", scale,
                            {**common.shape(n, d, scale), "model.arch": "lstm"}))
  return out
