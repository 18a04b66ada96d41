"""Per-device memory of a GPT-style training step: does a preset fit a slice?

    python launch/memory.py            # the table in launch/README.md

Parameters are `scaling_jax.accounting`'s counts (N: the blocks' weight matrices; the total
with biases, norms and the embeddings, tied as in the presets), the presets are the
`configs/gpt_*.py` files themselves and the chips' HBM is `scaling_jax.hardware.CHIPS`.

What is counted (bytes per device):
  state        16 B/param: f32 master weights (4) + f32 gradients (4) + Adam m and v (4 + 4),
               divided over the `fsdp` devices (ZeRO-3 style sharding of all four).
  gathered     FSDP only: bf16 copy of 2 layers' weight matrices (the layer in use + the
               prefetched next one, 2·N/n_layer) that the all-gather materialises on every
               device.
  activations  bf16, per layer per sequence (Korthikanti et al. 2022, Table 2 without dropout):
               32·s·h bytes (layer norms, QKV, attention output, MLP in/GeLU in/out) plus
               2·a·s² (softmax probabilities; 0 with flash/cuDNN attention).
               remat "full": only each block's input (2·s·h) is kept, plus one block's
               activations live again while it is recomputed in the backward pass.
  attention    without flash/cuDNN attention, the backward pass of one block holds the f32
               scores, probabilities and their two gradients at once: 16·a·s² bytes per
               sequence (seen in XLA's buffer assignment, bench/bench_memory.py).
  loss         the unembedding + cross-entropy. Fused (the default, `scaling_jax/losses.py`):
               f32 logits and their gradient for one chunk of c tokens, 8·c·V, plus the
               f32 gradient of the unembedding it accumulates, 4·h·V, and the whole
               unembedding in the compute dtype, 2·h·V; c is what `losses.num_chunks` picks
               for the accelerator budget (1 GiB of logits).
               Unfused (`model.loss_chunk_tokens=0`): 8·s·V bytes per sequence.
Not counted: XLA temporaries/fragmentation (keep ~10-20% headroom), the data pipeline,
the optimizer's transient update buffers.
"""

from __future__ import annotations

import importlib

from scaling_jax import accounting, hardware, losses
from scaling_jax.model import ModelConfig

GiB = hardware.GiB


def param_count(n_layer: int, d_model: int, n_ctx: int, vocab: int,
                tie_embeddings: bool = False) -> accounting.Counts:
  """`scaling_jax.accounting`'s counts for a GPT-2/3 block stack with d_ff = 4·d_model."""
  return accounting.transformer_counts(ModelConfig(
      n_layer=n_layer, d_model=d_model, n_heads=1, d_ff=4 * d_model, n_ctx=n_ctx,
      vocab_size=vocab, tie_embeddings=tie_embeddings))


def estimate_memory(n_layer: int, d_model: int, n_heads: int, n_ctx: int, vocab: int,
                    batch_per_device: int, fsdp: int = 1, remat: str | bool = "none", *,
                    flash_attention: bool = False, fused_loss: bool = True,
                    tie_embeddings: bool = False, act_bytes: int = 2) -> dict[str, int]:
  """Bytes per device of one training step; see the module docstring for what is counted.

  `batch_per_device` is the micro-batch each device holds at once (sequences);
  `fsdp` the number of devices the parameters and optimizer state are sharded over;
  `act_bytes` the bytes of a stored activation (2: bf16; 4 where bf16 is computed in f32,
  as XLA:CPU does).
  """
  remat = {True: "full", False: "none"}.get(remat, remat)
  if remat not in ("none", "full"):
    raise ValueError(f"remat={remat!r} must be 'none' or 'full'")
  if fsdp < 1 or batch_per_device < 0:
    raise ValueError(f"fsdp={fsdp} must be >= 1 and batch_per_device >= 0")
  counts = param_count(n_layer, d_model, n_ctx, vocab, tie_embeddings)
  s, h, a, b = n_ctx, d_model, n_heads, batch_per_device
  state = 16 * counts.n_params_total // fsdp
  gathered = 2 * 2 * counts.n_params // n_layer if fsdp > 1 else 0
  per_layer_act = b * (32 * s * h + (0 if flash_attention else 2 * a * s * s)) * act_bytes // 2
  if remat == "none":
    activations = n_layer * per_layer_act
  else:
    activations = n_layer * b * s * h * act_bytes + per_layer_act
  attention = 0 if flash_attention else 16 * a * s * s * b
  if fused_loss:
    chunk_tokens = losses.auto_chunk_tokens(vocab, backend="gpu")
    c = b * s // losses.num_chunks(b, s, vocab, chunk_tokens) if b else 0
    loss = 8 * c * vocab + 4 * h * vocab + act_bytes * h * vocab
  else:
    loss = 8 * b * s * vocab
  total = state + gathered + activations + attention + loss
  return {"n_params": counts.n_params_total, "n_params_non_embedding": counts.n_params,
          "state": state, "gathered_params": gathered, "activations": activations,
          "attention_backward": attention, "loss": loss, "total": total}


# name: the preset's module in configs/ (shipped as scaling_jax.configs)
PRESETS = {"125M": "gpt_125m", "350M": "gpt_350m", "1.3B": "gpt_1_3b"}
# name: (JAX devices, chip); one JAX device per chip (v4 and v5p: a megacore device)
SLICES = {"v5e-16": (16, "v5e"), "v4-32": (16, "v4"), "v6e-16": (16, "v6e"),
          "v5p-32": (16, "v5p"), "8xH100": (8, "h100")}
CHIPS = {c.name: c for c in hardware.CHIPS}


def preset_config(name: str):
  """A preset's run config (configs/gpt_*.py)."""
  return importlib.import_module(f"scaling_jax.configs.{PRESETS[name]}").get_config()


def estimate_preset(name: str, batch_per_device: int, fsdp: int, remat: str) -> dict[str, int]:
  """`estimate_memory` for a preset as its config defines it (shape, tied embeddings)."""
  m = preset_config(name).model
  return estimate_memory(m.n_layer, m.d_model, m.n_heads, m.n_ctx, m.vocab_size,
                         batch_per_device, fsdp=fsdp, remat=remat,
                         tie_embeddings=m.tie_embeddings)


def _cell(m: dict[str, int], hbm_bytes: int) -> str:
  return f"{m['total'] / GiB:.1f} {'ok' if m['total'] <= 0.85 * hbm_bytes else 'NO'}"


def table(micro: int = 8) -> str:
  """Markdown: total GiB/device per preset x slice ('ok' = fits with 15% headroom)."""
  rows = [f"| preset (N total) | slice (HBM/device) | seq/device | no remat | full remat "
          f"| micro-batch {micro}, no remat | micro-batch {micro}, full remat |",
          "|---|---|---|---|---|---|---|"]
  for name in PRESETS:
    for slice_name, (devices, chip) in SLICES.items():
      hbm = CHIPS[chip].hbm_bytes
      per_device = preset_config(name).train.batch_size // devices
      cells = []
      for b in (per_device, micro):
        for remat in ("none", "full"):
          m = estimate_preset(name, b, devices, remat)
          cells.append(_cell(m, hbm))
      rows.append(f"| {name} ({m['n_params'] / 1e6:.1f}M) | {slice_name} ({hbm / GiB:.1f} GiB) "
                  f"| {per_device} | " + " | ".join(cells) + " |")
  return "\n".join(rows)


def breakdown(name: str, slice_name: str, batch_per_device: int, remat: str) -> str:
  m = estimate_preset(name, batch_per_device, SLICES[slice_name][0], remat)
  parts = ", ".join(f"{k} {m[k] / GiB:.2f}" for k in
                    ("state", "gathered_params", "activations", "attention_backward", "loss",
                     "total"))
  return f"{name} on {slice_name}, {batch_per_device} seq/device, remat {remat}: {parts} GiB"


if __name__ == "__main__":
  print(table())
  print()
  for args in (("125M", "v4-32", 32, "none"), ("1.3B", "8xH100", 64, "full"),
               ("1.3B", "v5e-16", 8, "full")):
    print(breakdown(*args))
