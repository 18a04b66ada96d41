"""Parameter and FLOP accounting (Kaplan et al. 2020, Table 1).

N counts non-embedding parameters: 2 · d_model · n_layer · (2·d_attn + d_ff), i.e. the
weight matrices of the blocks, without biases, layer norms, embeddings or the unembedding.
Training compute is C ≈ 6N per token (Kaplan's convention, used for `flops` in metrics);
`flops_per_token_exact` adds the attention scores and the unembedding, and is what MFU uses.
"""

from __future__ import annotations

import dataclasses

PF_DAY = 8.64e19  # FLOP in one petaflop/s-day


@dataclasses.dataclass(frozen=True)
class Counts:
  n_params: int  # N: non-embedding (Kaplan)
  n_params_total: int
  n_params_embedding: int  # token + position embeddings (+ untied unembedding)
  flops_per_token_fwd: float  # 2N + 2 n_layer n_ctx d_attn (Kaplan)
  flops_per_token: float  # training, 6N (Kaplan's C per token)
  flops_per_token_exact: float  # training, 3 x (2N + attention + 2 d_model vocab)

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def transformer_counts(m) -> Counts:
  """Counts for the decoder-only Transformer of `model.py` (m: ModelConfig or config.model)."""
  d, n, f, v, t = m.d_model, m.n_layer, m.d_ff, m.vocab_size, m.n_ctx
  n_params = 2 * d * n * (2 * d + f)
  biases_norms = n * (3 * d + d + f + d + 4 * d) + 2 * d  # qkv, out, fc, proj biases; 2 LNs/block; ln_f
  embedding = v * d + t * d + (0 if m.tie_embeddings else d * v)
  attn_fwd = 2 * n * t * d
  fwd_exact = 2 * n_params + attn_fwd + 2 * d * v
  return Counts(
      n_params=n_params,
      n_params_total=n_params + biases_norms + embedding,
      n_params_embedding=embedding,
      flops_per_token_fwd=float(2 * n_params + attn_fwd),
      flops_per_token=float(6 * n_params),
      flops_per_token_exact=float(3 * fwd_exact),
  )


def counts(model_cfg) -> Counts:
  """Counts for the architecture `model_cfg.arch` names."""
  arch = getattr(model_cfg, "arch", "transformer")
  if arch == "transformer":
    return transformer_counts(model_cfg)
  from scaling_jax import model_variants
  return model_variants.counts(model_cfg)


# Training FLOPs per token under the conventions Porian et al. (2024) compare (their
# `param_count`): Kaplan's 6N ("kaplan"), 6N plus the unembedding 6·d_model·vocab
# ("standard"), and the exact count with attention ("attention"; Counts.flops_per_token_exact).
FLOP_CONVENTIONS = ("6N", "6N+unembedding", "exact")


def flops_per_token(model_cfg, convention: str = "6N") -> float:
  """Training FLOPs per token of `model_cfg` under `convention` (one of FLOP_CONVENTIONS)."""
  c = counts(model_cfg)
  if convention == "6N":
    return c.flops_per_token
  if convention == "6N+unembedding":
    return c.flops_per_token + 6.0 * model_cfg.d_model * model_cfg.vocab_size
  if convention == "exact":
    return c.flops_per_token_exact
  raise ValueError(f"FLOP convention {convention!r} is not one of {FLOP_CONVENTIONS}")


def count_tree(params) -> int:
  """Number of scalars in a parameter pytree."""
  import jax
  return sum(int(x.size) for x in jax.tree.leaves(params))
