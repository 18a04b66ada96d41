"""`scaling-jax compile`: the real train step compiled for Cloud TPU slices, with no TPU.

The TPU tests need libtpu (`pip install -e '.[tpu]'`, which `make install` does); where it
is absent they are skipped with that reason. Topology names and HLO parsing need nothing.
"""

import importlib.util
import subprocess
import sys

import pytest

from scaling_jax import accounting, compile_cli, hardware
from scaling_jax.config import ConfigError
from scaling_jax.sharding import ShardingError
from scaling_jax.train_cli import load_config

needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu is not installed (pip install -e '.[tpu]'); it is the TPU compiler")


@pytest.mark.parametrize("name, chip, shape", [
    ("v4-8", "v4", (2, 2, 1)), ("v4-32", "v4", (2, 2, 4)), ("v4-128", "v4", (4, 4, 4)),
    ("v5p-128", "v5p", (4, 4, 4)), ("v5p-512", "v5p", (4, 8, 8)),
    ("v5e-1", "v5e", (1, 1)), ("v5e-8", "v5e", (2, 4)), ("v5litepod-16", "v5e", (4, 4)),
    ("v6e-128", "v6e", (8, 16)), ("v6e-256", "v6e", (16, 16)), ("v4:4x4x12", "v4", (4, 4, 12)),
])
def test_topologies_are_named_as_cloud_tpu_names_them(name, chip, shape):
  """v4-N / v5p-N count TensorCores (two per chip), v5e-N / v6e-N chips; the shapes are the
  ones the Cloud TPU pages list for those accelerator types."""
  t = compile_cli.parse_topology(name)
  assert (t.chip.name, t.shape) == (chip, shape)


@pytest.mark.parametrize("name", ["v3-8", "v5p-12", "v4-4", "v5e-2", "v5e-3", "v4:2x2", "tpu"])
def test_unknown_or_unshapeable_topologies_are_one_line_errors(name):
  with pytest.raises(ConfigError) as e:
    compile_cli.parse_topology(name)
  assert "\n" not in str(e.value) and "e.g." in str(e.value)


def test_collectives_are_read_from_hlo_text():
  hlo = "\n".join([
      "  %ag = bf16[16,768]{1,0} all-gather(bf16[1,768]{1,0} %p), dimensions={0}",
      "  %ars = (f32[512]{0}, f32[2,3]{1,0}) all-reduce-start(f32[512]{0} %a, f32[2,3] %b)",
      "  %ard = (f32[512]{0}, f32[2,3]{1,0}) all-reduce-done(%ars)",
      "  %rs.1 = f32[4,8]{1,0} reduce-scatter(f32[64,8]{1,0} %g), dimensions={0}",
      "  %ag.2 = bf16[8,8]{1,0} all-gather(bf16[1,8]{1,0} %q), dimensions={0}",
      "  %add = f32[4]{0} add(f32[4]{0} %x, f32[4]{0} %y)",
  ])
  found = {c.kind: (c.count, c.bytes) for c in compile_cli.collectives_in(hlo)}
  assert found == {"all-gather": (2, 16 * 768 * 2 + 8 * 8 * 2),
                   "all-reduce": (1, 512 * 4 + 6 * 4), "reduce-scatter": (1, 32 * 4)}


@pytest.fixture(scope="module")
def tiny_v5e_4():
  return compile_cli.analyse(load_config("configs/tiny.py", []),
                             compile_cli.parse_topology("v5e-4"))


@needs_libtpu
def test_tiny_config_compiles_for_a_v5e_slice(tiny_v5e_4):
  r = tiny_v5e_4
  assert r.devices == 4 and r.mesh == {"data": 4, "fsdp": 1, "tensor": 1}
  assert r.fits and 0 < r.memory.total < r.hbm_bytes
  # Data parallel: every chip holds all the f32 parameters, and the gradients are
  # all-reduced across the 4 chips.
  config = load_config("configs/tiny.py", [])
  assert r.param_bytes_per_device == 4 * accounting.counts(config.model).n_params_total
  all_reduce = {c.kind: c for c in r.collectives}["all-reduce"]
  assert all_reduce.bytes >= r.param_bytes_per_device
  # XLA's FLOPs: more than the accounting's exact count (softmax, norms, Adam), not much more.
  assert 1.0 < r.xla_flops / r.flops_exact < 1.4
  assert r.xla_flops > r.flops_6n
  assert 0 < r.mfu_estimate <= 1 and r.step_s_estimate > 0


@needs_libtpu
def test_fsdp_parameter_bytes_per_device_fall_as_the_slice_grows():
  """FSDP over the whole slice: each chip holds 1/devices of the parameters, so 4x the chips
  is 1/4 the parameter bytes per chip, in the compiled program's arguments too."""
  config = load_config("configs/tiny.py", ["--config.mesh.data=1", "--config.mesh.fsdp=-1",
                                           "--config.train.batch_size=64"])
  reports = [compile_cli.analyse(config, compile_cli.parse_topology(t))
             for t in ("v5e-1", "v5e-4", "v5e-16")]
  params = [r.param_bytes_per_device for r in reports]
  assert params[0] > params[1] > params[2]
  assert params[0] / params[2] > 10  # ~16x: biases that 16 does not divide stay whole
  args = [r.memory.arguments for r in reports]
  assert args[0] > args[1] > args[2]
  assert [r.mesh["fsdp"] for r in reports] == [1, 4, 16]
  assert "all-gather" in {c.kind for c in reports[2].collectives}  # FSDP gathers weights


@needs_libtpu
def test_config_errors_are_caught_before_compiling(monkeypatch):
  def must_not_compile(*args, **kwargs):
    raise AssertionError("compiled a config that was invalid")
  monkeypatch.setattr(compile_cli, "lower_train_step", must_not_compile)
  v5e_4 = compile_cli.parse_topology("v5e-4")
  with pytest.raises(ConfigError, match="n_heads=5 does not divide"):
    compile_cli.analyse(load_config("configs/tiny.py", ["--config.model.n_heads=5"]), v5e_4)
  with pytest.raises(ShardingError, match="model.vocab_size = 511 is not divisible"):
    compile_cli.analyse(load_config("configs/tiny.py", [
        "--config.model.vocab_size=511", "--config.mesh.tensor=2"]), v5e_4)
  with pytest.raises(ConfigError, match="not divisible by the 16 data-parallel devices"):
    compile_cli.analyse(load_config("configs/tiny.py", []), compile_cli.parse_topology("v5e-16"))


@needs_libtpu
@pytest.mark.slow
def test_gpt2_small_width_with_micro_batches_compiles_and_fits_a_v5e_16():
  """The GPT-2-small preset's width (d_model 768, 12 heads, vocab 50257, n_ctx 1024) with 2 of
  its 12 layers on 16 v5e chips (16 GB each), FSDP, micro-batches of 2 sequences per chip:
  fits, with XLA's FLOPs near the exact accounting. (The whole 12-layer preset takes the TPU
  compiler minutes on 2 cores; `bench/bench_tpu_compile.py` records which presets fit which
  slices.)"""
  config = load_config("configs/gpt_125m.py", ["--config.train.grad_accum=16",
                                               "--config.model.n_layer=2"])
  r = compile_cli.analyse(config, compile_cli.parse_topology("v5e-16"))
  assert r.mesh == {"data": 1, "fsdp": 16, "tensor": 1}
  assert r.fits, r.memory
  # 53.56M f32 parameters (39.39M of them the embeddings) over 16 chips: ~13.4 MB each (a few
  # small biases whole)
  assert 53_561_088 * 4 / 16 <= r.param_bytes_per_device < 1.05 * 53_561_088 * 4 / 16
  assert 1.0 < r.xla_flops / r.flops_exact < 1.2
  kinds = {c.kind for c in r.collectives}
  assert "all-gather" in kinds and kinds & {"reduce-scatter", "all-reduce"}


def test_cli_bad_topology_is_one_line_exit_2(repo_root):
  proc = subprocess.run(
      [sys.executable, "-m", "scaling_jax.cli", "compile", "--config", "configs/tiny.py",
       "--topology", "v9-8"], cwd=repo_root, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().count("\n") == 0 and "unknown TPU topology 'v9-8'" in proc.stderr


def test_the_chip_table_is_the_one_mfu_uses():
  assert hardware.table_peak("TPU v5 lite", "bfloat16") == compile_cli.parse_topology(
      "v5e-4").chip.peak("bfloat16") == 197e12
  assert hardware.chip_of("TPU v4").hbm_bytes == 32 * 2**30
