"""Decoder-only pre-LN Transformer (Kaplan et al. 2020, §2) in Flax linen.

Every parameter carries logical axis names (`embed`, `mlp`, `heads`, `kv`, `vocab`,
`length`); `sharding.py` maps them onto the mesh, so changing the parallelism is a
config change. Activations carry `act_*` names for the same reason.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from scaling_jax import losses, sharding

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The shape of a model; `from_config` reads it from a run config's `model` field."""
  n_layer: int
  d_model: int
  n_heads: int
  d_ff: int
  n_ctx: int
  vocab_size: int
  tie_embeddings: bool = False
  param_dtype: str = "float32"
  dtype: str = "float32"
  attention: str = "auto"
  remat: str = "none"
  arch: str = "transformer"
  loss_chunk_tokens: int = -1

  @classmethod
  def from_config(cls, model_cfg) -> "ModelConfig":
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(model_cfg).items() if k in fields})

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads


def _init(names, scale=0.02):
  return nn.with_logical_partitioning(nn.initializers.normal(stddev=scale), names)


def _layer_norm(cfg: ModelConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=1e-5, dtype=DTYPES[cfg.dtype], param_dtype=DTYPES[cfg.param_dtype],
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
      name=name)


def attention_impl(cfg: ModelConfig) -> str | None:
  """Which causal attention a config gets. `auto`: cuDNN's fused kernel on GPU in bf16, the
  einsum form on CPU (the fastest there, bench/bench_profile.py), else None (JAX's choice
  in `jax.nn.dot_product_attention`)."""
  if cfg.attention != "auto":
    return cfg.attention
  backend = jax.default_backend()
  if backend == "gpu" and cfg.dtype == "bfloat16":
    return "cudnn"
  return "einsum" if backend == "cpu" else None


def einsum_attention(q_BTNH, k_BTNH, v_BTNH):
  """Causal softmax attention as two batched matmuls around a masked float32 softmax."""
  t, h = q_BTNH.shape[1], q_BTNH.shape[-1]
  s_BNTS = jnp.einsum("btnh,bsnh->bnts", q_BTNH, k_BTNH,
                      preferred_element_type=jnp.float32) * (h ** -0.5)
  s_BNTS = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s_BNTS, -1e30)
  p_BNTS = jax.nn.softmax(s_BNTS, axis=-1).astype(v_BTNH.dtype)
  return jnp.einsum("bnts,bsnh->btnh", p_BNTS, v_BTNH)


def causal_attention(cfg: ModelConfig, q_BTNH, k_BTNH, v_BTNH):
  impl = attention_impl(cfg)
  if impl == "einsum":
    return einsum_attention(q_BTNH, k_BTNH, v_BTNH)
  return jax.nn.dot_product_attention(q_BTNH, k_BTNH, v_BTNH, is_causal=True, implementation=impl)


class CausalSelfAttention(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BTD):
    cfg = self.cfg
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    d, n, h = cfg.d_model, cfg.n_heads, cfg.head_dim
    zeros = nn.initializers.zeros
    w_qkv = self.param("qkv_kernel", _init(("embed", None, "heads", "kv")), (d, 3, n, h), pdtype)
    b_qkv = self.param("qkv_bias", nn.with_logical_partitioning(zeros, (None, "heads", "kv")),
                       (3, n, h), pdtype)
    out_scale = 0.02 / (2 * cfg.n_layer) ** 0.5  # GPT-2's scaled residual init
    w_out = self.param("out_kernel", _init(("heads", "kv", "embed"), out_scale), (n, h, d), pdtype)
    b_out = self.param("out_bias", nn.with_logical_partitioning(zeros, ("embed",)), (d,), pdtype)
    qkv_BT3NH = jnp.einsum("btd,dknh->btknh", x_BTD.astype(dtype), w_qkv.astype(dtype))
    qkv_BT3NH = qkv_BT3NH + b_qkv.astype(dtype)
    q_BTNH, k_BTNH, v_BTNH = qkv_BT3NH[:, :, 0], qkv_BT3NH[:, :, 1], qkv_BT3NH[:, :, 2]
    q_BTNH = nn.with_logical_constraint(q_BTNH, ("act_batch", "act_length", "act_heads", None))
    o_BTNH = causal_attention(cfg, q_BTNH, k_BTNH, v_BTNH)
    return jnp.einsum("btnh,nhd->btd", o_BTNH, w_out.astype(dtype)) + b_out.astype(dtype)


class Mlp(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BTD):
    cfg = self.cfg
    dtype, pdtype = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
    h_BTF = nn.Dense(
        cfg.d_ff, dtype=dtype, param_dtype=pdtype, kernel_init=_init(("embed", "mlp")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)), name="fc")(x_BTD)
    h_BTF = nn.with_logical_constraint(jax.nn.gelu(h_BTF), ("act_batch", "act_length", "act_mlp"))
    return nn.Dense(
        cfg.d_model, dtype=dtype, param_dtype=pdtype,
        kernel_init=_init(("mlp", "embed"), 0.02 / (2 * cfg.n_layer) ** 0.5),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        name="proj")(h_BTF)


class Block(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BTD):
    x_BTD = x_BTD + CausalSelfAttention(self.cfg, name="attn")(_layer_norm(self.cfg, "ln1")(x_BTD))
    x_BTD = x_BTD + Mlp(self.cfg, name="mlp")(_layer_norm(self.cfg, "ln2")(x_BTD))
    return nn.with_logical_constraint(x_BTD, ("act_batch", "act_length", "act_embed"))


REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole block
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def block_class(cfg: ModelConfig):
  """`Block`, wrapped in nn.remat with the config's rematerialisation policy if any."""
  if cfg.remat == "none":
    return Block
  return nn.remat(Block, policy=REMAT_POLICIES[cfg.remat])


class Embed(nn.Module):
  """Token + learned position embeddings."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens_BT):
    cfg = self.cfg
    pdtype = DTYPES[cfg.param_dtype]
    wte = self.param("wte", _init(("vocab_in", "embed")), (cfg.vocab_size, cfg.d_model), pdtype)
    wpe = self.param("wpe", _init(("length", "embed"), 0.01), (cfg.n_ctx, cfg.d_model), pdtype)
    t = tokens_BT.shape[1]
    x_BTD = jnp.take(wte, tokens_BT, axis=0) + wpe[None, :t]
    return x_BTD.astype(DTYPES[cfg.dtype]), wte


class Transformer(nn.Module):
  """tokens [B, T] -> float32 logits [B, T, V]; with `targets_BT` [B, T] the mean next-token
  loss instead (fused, `head`); with `return_hidden` the final hidden states."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens_BT, targets_BT=None, return_hidden: bool = False):
    cfg = self.cfg
    x_BTD, wte = Embed(cfg, name="embed")(tokens_BT)
    x_BTD = nn.with_logical_constraint(x_BTD, ("act_batch", "act_length", "act_embed"))
    block = block_class(cfg)
    for i in range(cfg.n_layer):
      x_BTD = block(cfg, name=f"block_{i}")(x_BTD)
    x_BTD = _layer_norm(cfg, "ln_f")(x_BTD)
    if return_hidden:
      return x_BTD
    return head(self, cfg, x_BTD, wte, targets_BT)


def head(module: nn.Module, cfg: ModelConfig, x_BTD, wte_VD, targets_BT=None):
  """float32 logits [B, T, V] from the final hidden states, or given `targets_BT` the mean
  next-token loss (the unembedding fused with the cross-entropy, `losses.py`).

  The unembedding is tied (wte^T) or a separate `unembed` matrix.
  """
  if cfg.tie_embeddings:
    w_DV = wte_VD.T
  else:
    w_DV = module.param("unembed", _init(("embed", "vocab")), (cfg.d_model, cfg.vocab_size),
                        DTYPES[cfg.param_dtype])
  if targets_BT is not None and cfg.loss_chunk_tokens != 0:
    b, t = targets_BT.shape
    n = losses.num_chunks(b, t, cfg.vocab_size, cfg.loss_chunk_tokens,
                          sharding.axis_shards("act_batch"))
    return losses.fused_mean_loss(x_BTD, w_DV, targets_BT, n)
  logits_BTV = jnp.einsum("btd,dv->btv", x_BTD, w_DV.astype(x_BTD.dtype),
                          preferred_element_type=jnp.float32)  # as the fused loss computes them
  logits_BTV = nn.with_logical_constraint(logits_BTV, ("act_batch", "act_length", "act_vocab"))
  if targets_BT is not None:
    return losses.token_losses(logits_BTV, targets_BT).mean()
  return logits_BTV


def check_shardings(config, mesh) -> None:
  """sharding.ShardingError (one line, with the fix) if a mesh axis does not divide a
  parameter dimension it shards: before anything is built or compiled, never a silent
  replication (e.g. vocab 50257 under tensor=2)."""
  model = build(config.model)
  tokens_BT = jax.ShapeDtypeStruct((1, config.model.n_ctx), jnp.int32)
  rng = jax.random.key(0)  # outside the mesh: it may be an abstract TPU slice (compile_cli)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    boxed = jax.eval_shape(lambda r, t: model.init(r, t)["params"], rng, tokens_BT)
    sharding.logical_shardings(boxed, mesh)


def build(model_cfg) -> nn.Module:
  """The network a run config names (`model.arch`)."""
  cfg = ModelConfig.from_config(model_cfg)
  if cfg.arch == "transformer":
    return Transformer(cfg)
  from scaling_jax import model_variants  # LSTM and the recurrent ("Universal") Transformer
  return model_variants.build(cfg)
