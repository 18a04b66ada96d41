"""Model shapes, parameter accounting against the real tree, and FLOP formulas."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_jax import accounting, model as model_lib
from scaling_jax.config import default_config
from scaling_jax.sharding import strip_boxes


def _params(cfg):
  model = model_lib.build(cfg)
  boxed = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, cfg.n_ctx), jnp.int32))
  return strip_boxes(boxed)["params"]


SHAPES = [  # n_layer, d_model, n_heads, d_ff, n_ctx, vocab, tied
    (2, 32, 4, 128, 16, 100, False),
    (3, 48, 6, 96, 32, 257, True),
    (1, 64, 1, 512, 8, 64, False),
    (4, 128, 8, 512, 128, 4096, False),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_counts_match_parameter_tree(shape):
  n_layer, d, h, f, t, v, tied = shape
  cfg = default_config().model
  cfg.update(n_layer=n_layer, d_model=d, n_heads=h, d_ff=f, n_ctx=t, vocab_size=v,
             tie_embeddings=tied)
  params = _params(cfg)
  c = accounting.counts(cfg)
  assert c.n_params_total == accounting.count_tree(params)
  # N: the weight matrices of the blocks (Kaplan's definition), read off the tree.
  block_matrices = sum(
      int(np.prod(x.shape)) for path, x in jax.tree_util.tree_leaves_with_path(params)
      if str(path[0].key).startswith("block_") and "kernel" in jax.tree_util.keystr(path))
  assert c.n_params == block_matrices == 2 * d * n_layer * (2 * d + f)
  embed = int(np.prod(params["embed"]["wte"].shape) + np.prod(params["embed"]["wpe"].shape))
  if not tied:
    embed += int(np.prod(params["unembed"].shape))
  assert c.n_params_embedding == embed


def test_flops_formulas():
  cfg = default_config().model
  cfg.update(n_layer=12, d_model=768, n_heads=12, d_ff=3072, n_ctx=1024, vocab_size=50257)
  c = accounting.counts(cfg)
  n = 12 * 12 * 768**2  # 12 n_layer d_model^2 when d_ff = 4 d_model
  assert c.n_params == n == 84_934_656
  assert c.flops_per_token_fwd == 2 * n + 2 * 12 * 1024 * 768
  assert c.flops_per_token == 6 * n
  assert c.flops_per_token_exact == 3 * (2 * n + 2 * 12 * 1024 * 768 + 2 * 768 * 50257)


def test_forward_shapes_and_causality():
  cfg = default_config().model
  cfg.update(n_layer=2, d_model=32, n_heads=4, d_ff=64, n_ctx=16, vocab_size=50)
  model = model_lib.build(cfg)
  tokens = jax.random.randint(jax.random.key(1), (3, 16), 0, 50)
  params = strip_boxes(model.init(jax.random.key(0), tokens))
  logits = model.apply(params, tokens)
  assert logits.shape == (3, 16, 50) and logits.dtype == jnp.float32
  # Changing a later token must not change earlier logits (causal masking).
  tokens2 = tokens.at[:, 10].set((tokens[:, 10] + 1) % 50)
  logits2 = model.apply(params, tokens2)
  np.testing.assert_allclose(logits[:, :10], logits2[:, :10], atol=1e-5)
  assert not np.allclose(logits[:, 10:], logits2[:, 10:])


def test_every_parameter_has_logical_names():
  cfg = default_config().model
  model = model_lib.build(cfg)
  boxed = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, cfg.n_ctx), jnp.int32))
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))
  assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
  for x in leaves:
    assert len(x.names) == len(x.value.shape)


def test_bf16_compute_with_f32_params():
  cfg = default_config().model
  cfg.update(dtype="bfloat16", param_dtype="float32")
  model = model_lib.build(cfg)
  tokens = jnp.zeros((2, cfg.n_ctx), jnp.int32)
  params = strip_boxes(model.init(jax.random.key(0), tokens))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  assert model.apply(params, tokens).dtype == jnp.float32  # logits in f32, as the loss's


def test_einsum_attention_matches_jax_attention_and_its_gradients():
  rng = np.random.default_rng(0)
  q, k, v, do = (jnp.asarray(rng.normal(size=(3, 16, 4, 8)), jnp.float32) for _ in range(4))

  def grads(fn):
    return jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v) * do), (0, 1, 2))(q, k, v)

  ref = grads(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True))
  out = grads(model_lib.einsum_attention)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, atol=2e-5)
  # causal: the first position attends to itself only
  np.testing.assert_allclose(model_lib.einsum_attention(q, k, v)[:, 0], v[:, 0], atol=1e-6)


@pytest.mark.parametrize("attention, expected", [("auto", "einsum"), ("xla", "xla"),
                                                 ("einsum", "einsum")])
def test_attention_choice_on_cpu(attention, expected):
  cfg = default_config().model
  cfg.attention = attention
  assert model_lib.attention_impl(model_lib.ModelConfig.from_config(cfg)) == expected


def test_einsum_and_xla_attention_give_the_same_model():
  cfg = default_config().model
  tokens = jax.random.randint(jax.random.key(1), (2, cfg.n_ctx), 0, cfg.vocab_size)
  params = strip_boxes(model_lib.build(cfg).init(jax.random.key(0), tokens))
  logits = {}
  for impl in ("einsum", "xla"):
    cfg.attention = impl
    logits[impl] = model_lib.build(cfg).apply(params, tokens)
  np.testing.assert_allclose(logits["einsum"], logits["xla"], atol=2e-5)
