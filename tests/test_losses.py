"""The fused (chunked) unembedding + cross-entropy against the plain logits path."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_jax import config as config_lib, losses, model as model_lib, sharding
from scaling_jax.sharding import strip_boxes


def _plain(x_BTD, w_DV, t_BT):
  logits = jnp.einsum("btd,dv->btv", x_BTD, w_DV)
  return losses.token_losses(logits, t_BT).mean()


def _inputs(b=4, t=12, d=16, v=37, seed=0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(b, t, d)), dtype)
  w = jnp.asarray(rng.normal(size=(d, v)) * 0.3, jnp.float32)
  tgt = jnp.asarray(rng.integers(0, v, (b, t)), jnp.int32)
  return x, w, tgt


@pytest.mark.parametrize("n_chunks", [1, 2, 3, 12])
def test_fused_loss_and_gradients_equal_the_plain_ones(n_chunks):
  x, w, t = _inputs()
  ref, (gx_ref, gw_ref) = jax.value_and_grad(_plain, (0, 1))(x, w, t)
  fused = lambda x, w: losses.fused_mean_loss(x, w, t, n_chunks)
  val, (gx, gw) = jax.jit(jax.value_and_grad(fused, (0, 1)))(x, w)
  np.testing.assert_allclose(val, ref, rtol=1e-6)
  np.testing.assert_allclose(gx, gx_ref, atol=1e-6)
  np.testing.assert_allclose(gw, gw_ref, atol=1e-6)
  np.testing.assert_allclose(jax.jit(fused)(x, w), ref, rtol=1e-6)  # the forward-only path


def test_fused_loss_scales_with_the_cotangent():
  """The gradient is computed in the forward pass; the backward must still scale it."""
  x, w, t = _inputs(seed=1)
  g = jax.grad(lambda x: 3.0 * losses.fused_mean_loss(x, w, t, 4) + jnp.sum(x))(x)
  g_ref = jax.grad(lambda x: 3.0 * _plain(x, w, t) + jnp.sum(x))(x)
  np.testing.assert_allclose(g, g_ref, atol=1e-6)


def _plain_f32_logits(x_BTD, w_DV, t_BT):  # the model's plain path: f32 logits from bf16
  logits = jnp.einsum("btd,dv->btv", x_BTD, w_DV.astype(x_BTD.dtype),
                      preferred_element_type=jnp.float32)
  return losses.token_losses(logits, t_BT).mean()


def test_fused_loss_in_bf16_matches_bf16_autodiff_and_keeps_dtypes():
  x, w, t = _inputs(dtype=jnp.bfloat16)
  val, (gx, gw) = jax.value_and_grad(
      lambda x, w: losses.fused_mean_loss(x, w, t, 3), (0, 1))(x, w)
  assert gx.dtype == jnp.bfloat16 and gw.dtype == jnp.float32
  ref, (gx_ref, gw_ref) = jax.value_and_grad(_plain_f32_logits, (0, 1))(x, w, t)
  np.testing.assert_allclose(val, ref, rtol=1e-6)  # same f32 logits: the same loss
  for g, g_ref in ((gw, gw_ref), (gx, gx_ref)):  # bf16 gradients: within bf16 rounding
    g, g_ref = np.asarray(g, np.float32), np.asarray(g_ref, np.float32)
    assert np.max(np.abs(g - g_ref)) <= 1e-2 * np.max(np.abs(g_ref))


@pytest.mark.parametrize("batch, n_pos, vocab, chunk, expected", [
    (4, 128, 1000, 10_000, 1),  # everything fits: one chunk
    (4, 128, 1000, 256, 2),  # 64 positions per chunk
    (4, 128, 1000, 100, 8),  # 25 positions wanted -> 16 (divides 128)
    (4, 12, 1000, 20, 3),  # 5 wanted -> 4 positions
    (64, 128, 1000, 16, 128),  # fewer tokens than the batch: one position per chunk
])
def test_num_chunks_divides_the_sequence(batch, n_pos, vocab, chunk, expected):
  n = losses.num_chunks(batch, n_pos, vocab, chunk)
  assert n == expected and n_pos % n == 0


def test_auto_chunks_hold_the_cpu_budget_of_logits():
  assert losses.auto_chunk_tokens(4096, "cpu") == 256  # 4 MiB of f32 logits
  assert losses.auto_chunk_tokens(50257, "gpu") == 5341  # 1 GiB
  assert losses.num_chunks(32, 128, 4096, -1) == 16  # 32 sequences x 8 positions
  assert losses.num_chunks(32, 128, 4096, -1, shards=8) == 2  # 4 per device x 64 positions


@pytest.mark.parametrize("tied, dtype", [(False, "float32"), (True, "float32"),
                                         (False, "bfloat16")])
def test_model_loss_is_the_same_fused_or_not(tied, dtype):
  cfg = config_lib.default_config().model
  cfg.update(n_layer=1, d_model=32, n_heads=2, d_ff=64, n_ctx=16, vocab_size=50,
             tie_embeddings=tied, dtype=dtype)
  tokens = jax.random.randint(jax.random.key(2), (4, 17), 0, 50)
  params = strip_boxes(model_lib.build(cfg).init(jax.random.key(0), tokens[:, :-1]))["params"]

  def loss(chunk):
    cfg.loss_chunk_tokens = chunk
    model = model_lib.build(cfg)
    return jax.jit(jax.value_and_grad(lambda p: model.apply(
        {"params": p}, tokens[:, :-1], targets_BT=tokens[:, 1:])))(params)

  (ref, g_ref), (val, g) = loss(0), loss(8)  # unfused vs chunks of 2 positions
  logits = model_lib.build(cfg).apply({"params": params}, tokens[:, :-1])
  f32 = dtype == "float32"  # bf16: the body's rounding differs between programs
  np.testing.assert_allclose(ref, losses.token_losses(logits, tokens[:, 1:]).mean(),
                             rtol=1e-6 if f32 else 1e-4)
  np.testing.assert_allclose(val, ref, rtol=1e-6 if f32 else 1e-4)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-6 if f32 else 3e-2 * float(np.max(np.abs(b))))


def _while_bodies(hlo: str) -> dict[str, str]:
  """name -> text of every computation a while loop of `hlo` uses as its body."""
  names = set(re.findall(r"body=%([\w.\-]+)", hlo))
  comps = {}
  for block in re.split(r"\n(?=%?[\w.\-]+ \()", hlo):
    name = block.split(" ", 1)[0].lstrip("%")
    if name in names:
      comps[name] = block
  return comps


def test_fused_loss_loop_has_no_collectives_under_fsdp():
  """Under FSDP the unembedding is gathered once before the loop over chunks and its
  gradient summed over devices once after it: nothing crosses devices chunk by chunk."""
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()).reshape(1, 8, 1), ("data", "fsdp", "tensor"),
                           axis_types=(jax.sharding.AxisType.Auto,) * 3)
  x, w, t = _inputs(b=16, t=12, d=16, v=40)
  spec = jax.sharding.PartitionSpec
  x = jax.device_put(x, jax.sharding.NamedSharding(mesh, spec("fsdp")))
  w = jax.device_put(w, jax.sharding.NamedSharding(mesh, spec("fsdp")))
  grad = jax.jit(jax.value_and_grad(lambda x, w: losses.fused_mean_loss(x, w, t, 4), (0, 1)))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    hlo = grad.lower(x, w).compile().as_text()
    val, (gx, gw) = grad(x, w)
  bodies = _while_bodies(hlo)
  assert bodies, "the chunk loop disappeared"
  for name, body in bodies.items():
    collective = r"(all-reduce|all-gather|reduce-scatter|all-to-all)(-start)?\("
    assert not re.search(collective, body), name
  assert "all-reduce" in hlo or "reduce-scatter" in hlo  # the once-per-step sum is there
  ref, (gx_ref, gw_ref) = jax.value_and_grad(_plain, (0, 1))(*_inputs(b=16, t=12, d=16, v=40))
  np.testing.assert_allclose(val, ref, rtol=1e-6)
  np.testing.assert_allclose(gw, gw_ref, atol=1e-6)
  np.testing.assert_allclose(gx, gx_ref, atol=1e-6)
