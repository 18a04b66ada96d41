"""Peak memory per device of the paper-scale presets' train step: XLA's figure vs the estimate.

  python bench/bench_memory.py                   # 8 simulated CPU devices (set here)
  python bench/bench_memory.py --run --presets 125M   # on a GPU: its devices + measured peak

Each configuration's train step is compiled for an FSDP mesh over the devices from abstract
(sharded ShapeDtypeStruct) inputs, so nothing the size of the model is allocated; XLA's buffer
assignment then gives the bytes one device needs (arguments + outputs - donated aliases +
temporaries). `launch/memory.py:estimate_memory` is the analytic estimate the README's table
uses. On an accelerator `--run` also runs two steps and reads the device's peak bytes in use.
XLA:CPU's buffer assignment is not a GPU's (bf16 computed in f32, rematerialisation not
honoured, no cuDNN attention; the section's notes measure the second): the CPU figures
check the fused loss's saving and the growth with model size, a GPU run the real figure.
"""

from __future__ import annotations

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import REPO, environment, publish  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(REPO / "launch"))
from memory import GiB, estimate_memory  # noqa: E402

from scaling_jax import accounting, model as model_lib, optim, sharding, train  # noqa: E402
from scaling_jax.train_cli import load_config  # noqa: E402

HEADING = "## Memory per device (paper presets)"
PRESETS = {"125M": "gpt_125m.py", "350M": "gpt_350m.py", "1.3B": "gpt_1_3b.py"}


VARIANTS = {"no-remat": ("none", -1), "no-remat-unfused-loss": ("none", 0),
            "full-remat": ("full", -1)}  # name: (model.remat, model.loss_chunk_tokens)


def preset_config(name: str, seqs_per_device: int, remat: str, devices: int,
                  loss_chunk_tokens: int = -1):
  c = load_config(str(REPO / "configs" / PRESETS[name]), [])
  c.model.update(remat=remat, loss_chunk_tokens=loss_chunk_tokens)
  c.train.update(batch_size=seqs_per_device * devices, grad_accum=1, max_pass_tokens=0)
  c.gns.enabled = False  # one pass of the whole per-device batch: what the estimate counts
  c.mesh.update(data=1, fsdp=-1, tensor=1)
  return c


def compiled_step(config):
  mesh = sharding.make_mesh(config)
  model = model_lib.build(config.model)
  opt, lr = optim.make(config.optim, int(config.train.num_steps),
                       accounting.counts(config.model).n_params)
  abstract = train.abstract_state(config, model, opt, mesh)
  batch = jax.ShapeDtypeStruct(
      (config.train.batch_size, config.model.n_ctx + 1), jnp.int32,
      sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp"))))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    step = jax.jit(train.make_train_step(config, model, opt, lr, mesh), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(abstract, batch).compile()
  return step, compiled, time.perf_counter() - t0, (model, opt, mesh)


def xla_bytes(compiled) -> int:
  m = compiled.memory_analysis()
  return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
             + m.temp_size_in_bytes)


def measured_peak(config, step, parts) -> float | None:
  """Peak bytes in use on device 0 over two real steps (accelerators only). The device's
  peak counts from the start of the process: call it once per process (`--peak-of`)."""
  model, opt, mesh = parts
  stats = jax.local_devices()[0].memory_stats()
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  _, state = train.init_state(config, model, opt, mesh, jax.random.key(0))
  tokens = np.zeros((config.train.batch_size, config.model.n_ctx + 1), np.int32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    for _ in range(2):
      state, out = step(state, sharding.global_batch(tokens, mesh))
    jax.block_until_ready(out)
  return float(jax.local_devices()[0].memory_stats()["peak_bytes_in_use"])


def peak_in_subprocess(name: str, variant: str, seqs: int) -> float | None:
  """`measured_peak` of one configuration in a fresh process (its own peak counter)."""
  out = subprocess.run([sys.executable, __file__, "--peak-of", f"{name}:{variant}",
                        "--seqs", str(seqs)], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def remat_temp_bytes() -> tuple[int, int]:
  """XLA temporaries of the gradient of a 12-layer chain, without and with jax.checkpoint on
  each layer: whether this backend's buffer assignment honours rematerialisation at all."""
  def loss(ws, x, remat):
    layer = lambda w, x: jnp.tanh(x @ w) + x
    for w in ws:
      x = (jax.checkpoint(layer) if remat else layer)(w, x)
    return jnp.sum(x ** 2)
  ws = [jax.ShapeDtypeStruct((256, 256), jnp.float32)] * 12
  x = jax.ShapeDtypeStruct((8192, 256), jnp.float32)
  return tuple(jax.jit(jax.grad(lambda ws, x, r=r: loss(ws, x, r))).lower(ws, x).compile()
               .memory_analysis().temp_size_in_bytes for r in (False, True))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default="125M,350M,1.3B")
  parser.add_argument("--seqs", type=int, default=8, help="sequences per device")
  parser.add_argument("--variants", default=",".join(VARIANTS), help="of: " + ", ".join(VARIANTS))
  parser.add_argument("--run", action="store_true", help="also run steps (accelerators)")
  parser.add_argument("--peak-of", default="", help=argparse.SUPPRESS)  # PRESET:VARIANT
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  devices = jax.device_count()
  if args.peak_of:  # one configuration's measured peak, as JSON, for peak_in_subprocess
    name, variant = args.peak_of.split(":")
    remat, chunk = VARIANTS[variant]
    config = preset_config(name, args.seqs, remat, devices, chunk)
    step, _, _, parts = compiled_step(config)
    print(json.dumps({"peak": measured_peak(config, step, parts)}))
    return 0
  rows = []
  for name in args.presets.split(","):
    for variant in args.variants.split(","):
      remat, chunk = VARIANTS[variant]
      config = preset_config(name, args.seqs, remat, devices, chunk)
      m = config.model
      est = estimate_memory(m.n_layer, m.d_model, m.n_heads, m.n_ctx, m.vocab_size, args.seqs,
                            fsdp=devices, remat=remat, fused_loss=chunk != 0,
                            tie_embeddings=m.tie_embeddings,
                            act_bytes=4 if jax.default_backend() == "cpu" else 2,
                            flash_attention=model_lib.attention_impl(
                                model_lib.ModelConfig.from_config(m)) == "cudnn")
      step, compiled, compile_s, parts = compiled_step(config)
      peak = peak_in_subprocess(name, variant, args.seqs) if args.run else None
      rows.append((name, variant, est["total"], xla_bytes(compiled), peak, compile_s))
      print(f"{name} {variant}: estimate {est['total'] / GiB:.2f} GiB, XLA "
            f"{rows[-1][3] / GiB:.2f} GiB (compiled in {compile_s:.0f} s)"
            + (f", measured peak {peak / GiB:.2f} GiB" if peak else ""), flush=True)
  dev = jax.devices()[0]
  lines = [HEADING, "", f"`python bench/bench_memory.py --seqs {args.seqs}` on {environment()}.",
           "", f"Train step of each preset compiled for FSDP over {devices} {dev.platform} "
           f"devices, {args.seqs} sequences x 1024 tokens per device, bf16 compute, f32 master "
           "weights and Adam state; GiB per device. XLA = arguments + outputs - donated + "
           "temporaries of the compiled step; estimate = `launch/memory.py:estimate_memory`.",
           "", "| preset | variant | estimate (GiB) | XLA buffer assignment (GiB) | XLA / estimate "
           "| measured peak (GiB) |", "| --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {n} | {r} | {e / GiB:.2f} | {x / GiB:.2f} | {x / e:.2f} | "
            f"{'-' if p is None else f'{p / GiB:.2f}'} |" for n, r, e, x, p, _ in rows]
  if dev.platform == "cpu":
    plain, remat = remat_temp_bytes()
    lines += ["", "On CPU, read the figures with two facts of XLA:CPU in mind. It computes bf16 "
              "in f32, so the estimate here counts 4-byte activations (`act_bytes=4`; 2 on "
              "accelerators). And its buffer assignment does not honour rematerialisation: the "
              "gradient of a 12-layer `tanh(x @ w) + x` chain ([8192, 256] activations) needs "
              f"{plain / 2**20:.0f} MiB of temporaries without `jax.checkpoint` and "
              f"{remat / 2**20:.0f} MiB with it, so the full-remat rows keep the no-remat "
              "memory here. What the CPU figures do check: the fused loss saves "
              "memory (no-remat vs no-remat-unfused-loss), and memory grows with the preset "
              "as estimated. The remat rows and the absolute figures need an accelerator: "
              "`python bench/bench_memory.py --run` there adds the measured peak."]
  publish(lines, HEADING, write=not args.no_write)
  return 0


if __name__ == "__main__":
  sys.exit(main())
