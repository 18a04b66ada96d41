"""Next-token cross-entropy: from logits, or fused with the unembedding chunk by chunk.

The fused form never holds the [B, T, V] logits: it walks the sequence in chunks of
positions, and for each chunk computes the logits, the loss and (under `jax.grad`) the
gradients of the hidden states and of the unembedding at once, so the backward pass is a
scale by the incoming cotangent. The same 3 matmuls as autodiff, in a working set that
fits in cache on a CPU and in far less memory on an accelerator (V = 50k, 1024 positions).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from scaling_jax import sharding

# f32 logits one device holds at once in the fused loss when model.loss_chunk_tokens = -1.
AUTO_CHUNK_BYTES = {"cpu": 4 << 20}  # ~ a CPU's L2/L3 share (bench_profile sweeps it)
AUTO_CHUNK_BYTES_ACCELERATOR = 1 << 30


def token_losses(logits_BTV, targets_BT):
  """Next-token cross-entropy in nats at every position [B, T], computed in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits_BTV.astype(jnp.float32), targets_BT)


def auto_chunk_tokens(vocab: int, backend: str | None = None) -> int:
  """Tokens per device per chunk for model.loss_chunk_tokens = -1 (AUTO_CHUNK_BYTES of logits)."""
  budget = AUTO_CHUNK_BYTES.get(backend or jax.default_backend(), AUTO_CHUNK_BYTES_ACCELERATOR)
  return max(1, budget // (4 * vocab))


def num_chunks(batch: int, n_pos: int, vocab: int, chunk_tokens: int, shards: int = 1) -> int:
  """How many chunks of positions the fused loss splits `n_pos` into, so that a chunk holds
  about `chunk_tokens` tokens per device (-1: `auto_chunk_tokens`) of a batch of `batch`
  sequences split over `shards` devices.

  The count divides `n_pos` (a chunk is T/n whole positions of every sequence) and is 1 when
  everything fits; a chunk is never less than one position, so with more sequences per
  device than `chunk_tokens` it holds more than that.
  """
  if chunk_tokens < 0:
    chunk_tokens = auto_chunk_tokens(vocab)
  positions = max(1, chunk_tokens // max(batch // max(shards, 1), 1))
  if positions >= n_pos:
    return 1
  return n_pos // max(d for d in range(1, positions + 1) if n_pos % d == 0)


def _split(x_BT, n: int):
  """[B, T, ...] -> [n, B, T/n, ...]: chunk i holds positions i*T/n ... (i+1)*T/n - 1 of
  every sequence, so a batch sharded over devices stays sharded in every chunk."""
  b, t = x_BT.shape[:2]
  return jnp.moveaxis(x_BT.reshape(b, n, t // n, *x_BT.shape[2:]), 1, 0)


def _gathered(w_DV):
  """The unembedding with its d_model axis whole (FSDP shards it): gathered once, before the
  loop over chunks, not once per chunk. Its vocab axis keeps its tensor-parallel sharding."""
  return nn.with_logical_constraint(w_DV, (None, "vocab"))


def _chunk_logits(x_BCD, w_DV):
  logits_BCV = jnp.einsum("bcd,dv->bcv", x_BCD, w_DV, preferred_element_type=jnp.float32)
  return nn.with_logical_constraint(logits_BCV, ("act_batch", "act_length", "act_vocab"))


def _lse_and_target(logits_BCV, targets_BC):
  """(log-sum-exp, the target's logit, softmax probabilities) of one chunk, all float32."""
  m_BC1 = jnp.max(logits_BCV, axis=-1, keepdims=True)
  e_BCV = jnp.exp(logits_BCV - m_BC1)
  s_BC1 = jnp.sum(e_BCV, axis=-1, keepdims=True)
  lse_BC = (m_BC1 + jnp.log(s_BC1))[..., 0]
  if sharding.axis_shards("act_vocab") > 1:  # a masked sum: no gather across vocab shards
    hit_BCV = jax.lax.broadcasted_iota(jnp.int32, logits_BCV.shape, 2) == targets_BC[..., None]
    target_BC = jnp.sum(jnp.where(hit_BCV, logits_BCV, 0.0), axis=-1)
  else:  # the faster form on one vocab shard (CPU: ~5% of a step at 4 x 128)
    target_BC = jnp.take_along_axis(logits_BCV, targets_BC[..., None], axis=-1)[..., 0]
  return lse_BC, target_BC, e_BCV / s_BC1


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def fused_mean_loss(x_BTD, w_DV, targets_BT, n_chunks: int):
  """mean over [B, T] of -log softmax(x W)[target], in float32, `n_chunks` chunks at a time."""
  w_DV = _gathered(w_DV.astype(x_BTD.dtype))

  def body(total, chunk):
    x_BCD, t_BC = chunk
    lse_BC, target_BC, _ = _lse_and_target(_chunk_logits(x_BCD, w_DV), t_BC)
    return total + jnp.sum(lse_BC - target_BC), None
  total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32),
                          (_split(x_BTD, n_chunks), _split(targets_BT, n_chunks)))
  return total / targets_BT.size


def _fused_fwd(x_BTD, w_DV, targets_BT, n_chunks):
  inv_n = 1.0 / targets_BT.size
  vocab = w_DV.shape[1]
  w_param_dtype = w_DV.dtype
  w_DV = _gathered(w_DV.astype(x_BTD.dtype))  # compute dtype: half the gather in bf16
  # The loss and the gradient of W are summed per batch shard (each device its own rows, no
  # communication in the loop), and over the shards once at the end, not once per chunk.
  shards = sharding.axis_shards("act_batch")
  shards = shards if x_BTD.shape[0] % shards == 0 else 1
  per_shard = lambda a: nn.with_logical_constraint(a, ("act_batch", None, "vocab"))

  def body(carry, chunk):
    total_S, dw_SDV = carry
    x_BCD, t_BC = chunk
    logits_BCV = _chunk_logits(x_BCD, w_DV)
    lse_BC, target_BC, p_BCV = _lse_and_target(logits_BCV, t_BC)
    g_BCV = (p_BCV - jax.nn.one_hot(t_BC, vocab, dtype=p_BCV.dtype)) * inv_n
    g_BCV = g_BCV.astype(x_BCD.dtype)
    dx_BCD = jnp.einsum("bcv,dv->bcd", g_BCV, w_DV)
    b, c, d = x_BCD.shape
    dw_SDV = dw_SDV + per_shard(jnp.einsum(
        "sbcd,sbcv->sdv", x_BCD.reshape(shards, b // shards, c, d),
        g_BCV.reshape(shards, b // shards, c, vocab), preferred_element_type=jnp.float32))
    total_S = total_S + jnp.sum((lse_BC - target_BC).reshape(shards, -1), axis=1)
    return (total_S, dw_SDV), dx_BCD

  zeros_S = nn.with_logical_constraint(jnp.zeros((shards,), jnp.float32), ("act_batch",))
  zeros_SDV = per_shard(jnp.zeros((shards, *w_DV.shape), jnp.float32))
  (total_S, dw_SDV), dx_NBCD = jax.lax.scan(
      body, (zeros_S, zeros_SDV), (_split(x_BTD, n_chunks), _split(targets_BT, n_chunks)))
  dx_BTD = jnp.moveaxis(dx_NBCD, 0, 1).reshape(x_BTD.shape)
  dw_DV = nn.with_logical_constraint(jnp.sum(dw_SDV, axis=0), ("embed", "vocab"))
  return jnp.sum(total_S) * inv_n, (dx_BTD, dw_DV.astype(w_param_dtype))


def _fused_bwd(n_chunks, residuals, g):
  dx_BTD, dw_DV = residuals
  return (g * dx_BTD).astype(dx_BTD.dtype), (g * dw_DV).astype(dw_DV.dtype), None


fused_mean_loss.defvjp(_fused_fwd, _fused_bwd)
