"""Meshes from config, and the same training trajectory on every mesh (8 simulated devices)."""

import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from scaling_jax import config as config_lib, model as model_lib, optim, sharding, train
from scaling_jax.config import ConfigError


def _config(**mesh):
  c = config_lib.default_config()
  # Loss chunks of 16 tokens per device: the fused loss loops over chunks. Passes of 16 tokens
  # (one sequence) per device: 8 passes per micro-batch on 1 device, 2 on 4 batch shards.
  c.model.update(n_layer=2, d_model=32, n_heads=4, d_ff=64, n_ctx=16, vocab_size=128,
                 loss_chunk_tokens=16)
  c.train.update(batch_size=16, num_steps=4, max_pass_tokens=16)
  c.optim.update(lr=1e-2, warmup_steps=1)
  c.mesh.update(mesh)
  return c


def _losses(config, devices, steps=4):
  """Train losses of `steps` steps on a mesh over `devices`, from the same init and data."""
  mesh = sharding.make_mesh(config, devices)
  model = model_lib.build(config.model)
  opt, lr = optim.make(config.optim, config.train.num_steps, 1000)
  _, state = train.init_state(config, model, opt, mesh, jax.random.key(0))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    step = jax.jit(train.make_train_step(config, model, opt, lr, mesh), donate_argnums=0)
    batch = np.random.default_rng(0).integers(0, 128, size=(16, 17)).astype(np.int32)
    losses = []
    for _ in range(steps):  # one batch, memorised: the loss must fall
      state, out = step(state, sharding.global_batch(batch, mesh))
      losses.append(float(out["loss"]))
  return np.array(losses), state


def test_mesh_shape_resolves_minus_one():
  assert sharding.mesh_shape(_config(data=-1, fsdp=2, tensor=1), 8) == {
      "data": 4, "fsdp": 2, "tensor": 1}
  assert sharding.mesh_shape(_config(data=2, fsdp=2, tensor=2), 8)["tensor"] == 2


@pytest.mark.parametrize("mesh, fragment", [
    (dict(data=3, fsdp=1, tensor=1), "uses 3 devices but 8 are present"),
    (dict(data=-1, fsdp=3, tensor=1), "cannot fill 8 devices"),
    (dict(data=-1, fsdp=-1, tensor=1), "at most one axis may be -1"),
])
def test_bad_mesh_is_a_one_line_error(mesh, fragment):
  with pytest.raises(ConfigError, match=fragment):
    config_lib.validate(_config(**mesh), num_devices=8)


def test_batch_not_divisible_by_data_parallel_devices():
  c = _config(data=-1)
  c.train.batch_size = 12  # micro-batches of 6 over 8 devices
  with pytest.raises(ConfigError, match="not divisible by the 8 data-parallel devices"):
    config_lib.validate(c, num_devices=8)


def test_heads_not_dividing_d_model():
  c = _config()
  c.model.n_heads = 5
  with pytest.raises(ConfigError, match="does not divide config.model.d_model=32"):
    config_lib.validate(c)


@pytest.mark.slow
def test_all_meshes_match_one_device():
  """DP-only, FSDP and DP x tensor give the single-device losses to 1e-4 (f32 reduction order)."""
  ref, ref_state = _losses(_config(data=1, fsdp=1, tensor=1), jax.devices()[:1])
  assert ref[-1] < ref[0]  # it trains
  for mesh in (dict(data=8, fsdp=1, tensor=1), dict(data=2, fsdp=4, tensor=1),
               dict(data=4, fsdp=1, tensor=2), dict(data=2, fsdp=2, tensor=2)):
    losses, state = _losses(_config(**mesh), jax.devices())
    np.testing.assert_allclose(losses, ref, rtol=1e-4, err_msg=str(mesh))
    w = state.params["block_0"]["mlp"]["fc"]["kernel"]
    if mesh["fsdp"] > 1 or mesh["tensor"] > 1:
      assert len(w.sharding.device_set) == 8 and w.addressable_shards[0].data.shape != w.shape
    np.testing.assert_allclose(np.asarray(w), np.asarray(
        ref_state.params["block_0"]["mlp"]["fc"]["kernel"]), atol=2e-5)


# -------------------------------------------------------- no silent replication (issue 17)

@pytest.mark.parametrize("mesh, field, fragment", [
    (dict(data=4, fsdp=1, tensor=2), dict(vocab_size=127),
     "model.vocab_size = 127 is not divisible by config.mesh.tensor=2"),
    (dict(data=1, fsdp=8, tensor=1), dict(d_model=36, n_heads=4),
     "model.d_model = 36 is not divisible by config.mesh.fsdp=8"),
])
def test_a_dimension_its_mesh_axis_does_not_divide_is_an_error_not_a_replication(
    mesh, field, fragment):
  """Vocab 127 under tensor=2 (like GPT-2's 50257) or d_model 36 under fsdp=8 used to be
  replicated on every device without a word: now one line naming the field and the fix,
  from the preflight check and from the sharding rules themselves."""
  c = _config(**mesh)
  c.model.update(field)
  m = sharding.make_mesh(c)
  with pytest.raises(sharding.ShardingError, match=fragment) as e:
    model_lib.check_shardings(c, m)
  assert "\n" not in str(e.value) and "multiple of" in str(e.value)
  opt, _ = optim.make(c.optim, 4, 1000)
  with pytest.raises(sharding.ShardingError, match=fragment):  # even without the check
    train.abstract_state(c, model_lib.build(c.model), opt, m)


def test_every_parameter_is_sharded_as_its_rule_says_when_the_axes_divide():
  """Divisible shapes keep every mesh axis of their rule (nothing dropped), and Adafactor's
  factored moments (lower rank than their parameter) are still allowed, replicated."""
  c = _config(data=1, fsdp=4, tensor=2)
  m = sharding.make_mesh(c)
  model_lib.check_shardings(c, m)
  c.optim.name = "adafactor"
  opt, _ = optim.make(c.optim, 4, 1000)
  state = train.abstract_state(c, model_lib.build(c.model), opt, m)
  assert state.params["unembed"].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  assert state.params["block_0"]["mlp"]["fc"]["kernel"].sharding.spec == (
      jax.sharding.PartitionSpec("fsdp", "tensor"))


def test_train_refuses_a_replicating_mesh_before_writing_anything(tmp_path, repo_root):
  run = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "scaling_jax.cli", "train", "--config", "configs/tiny.py",
       "--workdir", str(run), "--config.model.vocab_size=511", "--config.mesh.data=4",
       "--config.mesh.tensor=2"],
      cwd=repo_root, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr
  assert "model.vocab_size = 511 is not divisible by config.mesh.tensor=2" in proc.stderr
  assert not run.exists()
