"""The LSTM and the recurrent ("Universal") Transformer: accounting vs the real parameter tree,
forward shapes, causality, parameter sharing, scan, logical names, and a short training run."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_jax import accounting, metrics, model as model_lib, model_variants, rundir
from scaling_jax.config import default_config
from scaling_jax.sharding import strip_boxes
from tests.test_experiments import tiny_runs

SHAPES = [  # n_layer, d_model, n_heads, d_ff, n_ctx, vocab, tied
    (1, 32, 4, 128, 16, 100, False),
    (3, 48, 6, 96, 32, 257, True),
    (2, 64, 1, 512, 8, 64, False),
]


def _cfg(arch, n_layer=2, d_model=32, n_heads=4, d_ff=64, n_ctx=16, vocab=50, tied=False):
  cfg = default_config().model
  cfg.update(arch=arch, n_layer=n_layer, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
             n_ctx=n_ctx, vocab_size=vocab, tie_embeddings=tied)
  return cfg


def _params(cfg):
  model = model_lib.build(cfg)
  boxed = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, cfg.n_ctx), jnp.int32))
  return strip_boxes(boxed)["params"]


def _size(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("shape", SHAPES)
def test_universal_counts_match_parameter_tree(shape):
  n_layer, d, h, f, t, v, tied = shape
  cfg = _cfg("universal", n_layer, d, h, f, t, v, tied)
  params = _params(cfg)
  c = accounting.counts(cfg)
  assert c.n_params_total == accounting.count_tree(params)
  block = params["shared"]["block"]
  matrices = sum(int(np.prod(x.shape)) for p, x in jax.tree_util.tree_leaves_with_path(block)
                 if "kernel" in jax.tree_util.keystr(p))
  assert c.n_params == matrices == 2 * d * (2 * d + f)  # the shared block, once
  embed = _size(params["embed"]) + (0 if tied else _size(params["unembed"]))
  assert c.n_params_embedding == embed
  # FLOPs count every application: the same as the Transformer of this shape.
  twin = accounting.counts(_cfg("transformer", n_layer, d, h, f, t, v, tied))
  assert c.flops_per_token == 6 * n_layer * c.n_params == twin.flops_per_token
  assert c.flops_per_token_fwd == twin.flops_per_token_fwd
  assert c.flops_per_token_exact == twin.flops_per_token_exact
  assert twin.n_params == n_layer * c.n_params


@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_counts_match_parameter_tree(shape):
  n_layer, d, h, f, t, v, tied = shape
  cfg = _cfg("lstm", n_layer, d, h, f, t, v, tied)
  params = _params(cfg)
  c = accounting.counts(cfg)
  assert c.n_params_total == accounting.count_tree(params)
  kernels = sum(_size(params[f"lstm_{i}"][g]["kernel"]) for i in range(n_layer)
                for g in ("ii", "if", "ig", "io", "hi", "hf", "hg", "ho"))
  assert c.n_params == kernels == 8 * d * d * n_layer
  assert c.n_params_embedding == _size(params["wte"]) + (0 if tied else _size(params["unembed"]))
  assert c.flops_per_token == 6 * c.n_params
  assert c.flops_per_token_exact == 3 * (2 * c.n_params + 2 * d * v)
  assert "wpe" not in params  # the recurrence carries position


@pytest.mark.parametrize("arch", ["universal", "lstm"])
def test_forward_shapes_and_causality(arch):
  cfg = _cfg(arch, n_ctx=16, vocab=50)
  model = model_lib.build(cfg)
  tokens = jax.random.randint(jax.random.key(1), (3, 16), 0, 50)
  variables = strip_boxes(jax.jit(model.init)(jax.random.key(0), tokens))
  apply = jax.jit(model.apply, static_argnames="return_hidden")
  logits = apply(variables, tokens)
  assert logits.shape == (3, 16, 50) and logits.dtype == jnp.float32
  assert jax.eval_shape(lambda v, t: model.apply(v, t, return_hidden=True), variables,
                        tokens).shape == (3, 16, 32)
  tokens2 = tokens.at[:, 10].set((tokens[:, 10] + 1) % 50)
  logits2 = apply(variables, tokens2)
  np.testing.assert_allclose(logits[:, :10], logits2[:, :10], atol=1e-5)
  assert not np.allclose(logits[:, 10:], logits2[:, 10:])


def test_universal_applies_one_block_n_layer_times():
  tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 50)
  one, three = (model_lib.build(_cfg("universal", n_layer=k)) for k in (1, 3))
  variables = strip_boxes(jax.jit(three.init)(jax.random.key(0), tokens))
  # The parameter tree does not grow with depth: one block, reused.
  shapes = lambda v: jax.tree.map(lambda x: x.shape, v)
  assert shapes(strip_boxes(jax.eval_shape(one.init, jax.random.key(0), tokens))) == shapes(
      variables)
  hidden = lambda m: jax.jit(lambda v, t: m.apply(v, t, return_hidden=True))(variables, tokens)
  # Three applications of the shared block by hand give the same hidden states.
  cfg = model_lib.ModelConfig.from_config(_cfg("universal", n_layer=3))

  @jax.jit
  def by_hand(p, tokens):
    x, _ = model_lib.Embed(cfg).apply({"params": p["embed"]}, tokens)
    for _ in range(3):
      x = model_lib.Block(cfg).apply({"params": p["shared"]["block"]}, x)
    return nn.LayerNorm(epsilon=1e-5).apply({"params": p["ln_f"]}, x)

  np.testing.assert_allclose(hidden(three), by_hand(variables["params"], tokens), atol=1e-5)


def test_lstm_runs_its_time_loop_as_a_scan():
  cfg = _cfg("lstm")
  model = model_lib.build(cfg)
  tokens = jnp.zeros((2, 16), jnp.int32)
  variables = strip_boxes(jax.eval_shape(model.init, jax.random.key(0), tokens))
  jaxpr = str(jax.make_jaxpr(model.apply)(variables, tokens))  # traced, not run
  assert jaxpr.count("scan[") >= cfg.n_layer


@pytest.mark.parametrize("arch", ["universal", "lstm"])
def test_every_parameter_has_logical_names(arch):
  cfg = _cfg(arch)
  boxed = jax.eval_shape(model_lib.build(cfg).init, jax.random.key(0),
                         jnp.zeros((1, cfg.n_ctx), jnp.int32))
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))
  assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
  for x in leaves:
    assert len(x.names) == x.value.ndim


def test_unknown_architecture_is_a_clear_error():
  cfg = model_lib.ModelConfig(n_layer=1, d_model=8, n_heads=1, d_ff=8, n_ctx=4, vocab_size=8,
                              arch="gru")
  with pytest.raises(ValueError, match="pick one of those"):
    model_variants.build(cfg)
  with pytest.raises(ValueError, match="accounting.counts"):
    model_variants.counts(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lstm", "universal"])
def test_train_and_evaluate_each_variant(arch):
  run = os.path.join(tiny_runs("arch"), arch)  # 30 steps on 8 simulated devices
  assert rundir.read_status(run)["status"] == "finished"
  cfg = rundir.read_config(run)
  facts = cfg["facts"]
  counts = accounting.counts(model_lib.ModelConfig.from_config(cfg["config"]["model"]))
  assert facts["arch"] == arch and facts["n_params"] == counts.n_params
  records = metrics.read_metrics(run)
  assert records[-1]["step"] == 30
  assert records[-1]["flops"] == pytest.approx(30 * 16 * 32 * counts.flops_per_token)
  assert records[-1]["loss"] < records[0]["loss"] - 0.1  # it learns
  assert np.isfinite(records[-1]["eval/validation/loss"])
  assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["30"]
