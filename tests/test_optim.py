"""Schedules, Kaplan's LR(N) rule, clipping, and gradient accumulation averaging."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling_jax import config as config_lib, model as model_lib, optim, sharding, train


def test_kaplan_lr_rule():
  assert optim.kaplan_lr(1e6) == pytest.approx(0.003239 - 0.0001395 * math.log(1e6))
  assert optim.kaplan_lr(1e9) < optim.kaplan_lr(1e6)
  c = config_lib.default_config().optim
  c.lr_rule = "kaplan"
  assert optim.peak_lr(c, 85_000_000) == pytest.approx(0.003239 - 0.0001395 * math.log(85e6))


def test_warmup_cosine_to_zero_and_constant():
  c = config_lib.default_config().optim
  c.update(lr=1e-3, warmup_steps=10, schedule="cosine")
  s = optim.schedule(c, 100, 1000)
  assert float(s(0)) == 0.0
  assert float(s(5)) == pytest.approx(5e-4)
  assert float(s(10)) == pytest.approx(1e-3)
  assert float(s(55)) == pytest.approx(5e-4, rel=1e-3)  # halfway through the cosine
  assert float(s(100)) == pytest.approx(0.0, abs=1e-9)
  c.schedule = "constant"
  s = optim.schedule(c, 100, 1000)
  assert float(s(10)) == float(s(99)) == pytest.approx(1e-3)


def test_clipping_bounds_the_update():
  c = config_lib.default_config().optim
  c.update(name="adamw", lr=1.0, clip_norm=0.5, warmup_steps=0, schedule="constant")
  opt, _ = optim.make(c, 10, 1000)
  params = {"w": jnp.zeros((3, 3))}
  state = opt.init(params)
  # The clip stage sees the raw gradient: its first element is the global-norm clipped grad.
  clip = optim.optax.clip_by_global_norm(0.5)
  g = {"w": jnp.full((3, 3), 10.0)}
  clipped, _ = clip.update(g, clip.init(params))
  assert float(optim.optax.global_norm(clipped)) == pytest.approx(0.5, rel=1e-5)
  updates, _ = opt.update(g, state, params)
  assert np.all(np.isfinite(np.asarray(updates["w"])))


def test_adafactor_trains():
  c = config_lib.default_config().optim
  c.update(name="adafactor", lr=1e-2, warmup_steps=0, schedule="constant")
  opt, _ = optim.make(c, 10, 1000)
  w = {"w": jnp.ones((4, 4))}
  st = opt.init(w)
  loss = lambda p: jnp.sum(p["w"] ** 2)
  for _ in range(5):
    upd, st = opt.update(jax.grad(loss)(w), st, w)
    w = optim.optax.apply_updates(w, upd)
  assert float(loss(w)) < 16.0


def _grads_and_loss(grad_accum, gns, max_pass_tokens=0, num_small=2):
  c = config_lib.default_config()
  c.model.update(n_layer=1, d_model=16, n_heads=2, d_ff=32, n_ctx=8, vocab_size=32)
  c.train.update(batch_size=8, grad_accum=grad_accum, max_pass_tokens=max_pass_tokens)
  c.gns.update(enabled=gns, num_small=num_small)
  c.optim.update(lr=1e-2, warmup_steps=0, schedule="constant", clip_norm=0.0)
  mesh = sharding.make_mesh(c, jax.devices()[:1])
  model = model_lib.build(c.model)
  opt, lr = optim.make(c.optim, 10, 1000)
  _, state = train.init_state(c, model, opt, mesh, jax.random.key(0))
  batch = np.random.default_rng(0).integers(0, 32, size=(8, 9)).astype(np.int32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    step = jax.jit(train.make_train_step(c, model, opt, lr, mesh))
    new, out = step(state, sharding.global_batch(batch, mesh))
  return state, new, out


def test_grad_accumulation_equals_full_batch():
  """4 micro-batches give the full-batch loss, gradient norm and update (averaged, not summed)."""
  _, full, out_full = _grads_and_loss(1, gns=False)
  _, acc, out_acc = _grads_and_loss(4, gns=False)
  assert float(out_acc["loss"]) == pytest.approx(float(out_full["loss"]), rel=1e-5)
  assert float(out_acc["grad_norm"]) == pytest.approx(float(out_full["grad_norm"]), rel=1e-4)
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(acc.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)  # Adam step 1e-2


@pytest.mark.parametrize("gns", [False, True])
def test_passes_give_the_one_pass_step(gns):
  """A micro-batch computed in several passes (max_pass_tokens) is the same step: loss,
  gradient norm, GNS estimates and the update (only the summation order differs)."""
  _, one, out_one = _grads_and_loss(1, gns)
  _, many, out_many = _grads_and_loss(1, gns, max_pass_tokens=16)  # 2 sequences per pass
  keys = ["loss", "grad_norm"] + (["gns/g2", "gns/trace_sigma"] if gns else [])
  for key in keys:
    assert float(out_many[key]) == pytest.approx(float(out_one[key]), rel=1e-4), key
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(many.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_gns_small_batch_norm_is_per_micro_batch_not_per_pass():
  """With 2 micro-batches of 4 sequences in passes of 1, |G_small|^2 is still that of the
  4-sequence micro-batches: the same as 2 micro-batches in one pass each, and different
  from 8 micro-batches of 1."""
  _, _, two = _grads_and_loss(1, True, max_pass_tokens=0)
  _, _, two_in_passes = _grads_and_loss(1, True, max_pass_tokens=8)
  _, _, eight = _grads_and_loss(1, True, num_small=8)
  assert float(two_in_passes["gns/trace_sigma"]) == pytest.approx(
      float(two["gns/trace_sigma"]), rel=1e-4)
  assert float(eight["gns/trace_sigma"]) != pytest.approx(float(two["gns/trace_sigma"]), rel=1e-2)


@pytest.mark.parametrize("batch, k, n_ctx, cap, devices, expected", [
    (32, 2, 128, 1024, 1, 2),  # 16 seqs x 128 = 2048 tokens -> 2 passes of 1024
    (32, 2, 128, 0, 1, 1),  # no cap
    (32, 1, 128, 1000, 1, 8),  # 5 wanted; 8 is the next divisor of 32
    (32, 2, 128, 1024, 8, 1),  # 2 sequences per device already fit
    (32, 2, 128, 64, 8, 2),  # never less than one sequence per device
    (48, 1, 100, 1000, 1, 6),  # 4.8 -> 5 wanted; 6 divides 48
])
def test_passes_per_micro_batch(batch, k, n_ctx, cap, devices, expected):
  c = config_lib.default_config()
  c.model.n_ctx = n_ctx
  c.train.update(batch_size=batch, grad_accum=k, max_pass_tokens=cap)
  c.gns.enabled = False
  mesh = sharding.make_mesh(c, jax.devices()[:devices])
  assert train.passes_per_micro_batch(c, mesh) == expected


def test_cpu_default_caps_passes_at_cpu_pass_tokens():
  c = config_lib.default_config()
  c.model.n_ctx = 128
  c.train.update(batch_size=32, max_pass_tokens=-1)
  mesh = sharding.make_mesh(c, jax.devices()[:1])
  passes = train.passes_per_micro_batch(c, mesh)  # 2 GNS micro-batches of 2048 tokens
  assert passes == 2048 // train.CPU_PASS_TOKENS
