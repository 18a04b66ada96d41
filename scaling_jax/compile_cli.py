"""`scaling-jax compile --config FILE --topology v5p-128 [--config.F=V]`: does it fit, how fast?

Compiles the real train step (`train.make_train_step`: the config's mesh, remat,
micro-batches and GNS) ahead of time for a Cloud TPU slice, on a machine without TPUs: libtpu
(`pip install -e '.[tpu]'`) describes the slice's devices
(`jax.experimental.topologies.get_topology_desc`) and XLA's TPU compiler builds the SPMD
program one chip runs, from abstract (sharded ShapeDtypeStruct) inputs, so nothing the size
of the model is allocated. What the compiled program says:
- memory per device (XLA's buffer assignment) against the chip's HBM (`hardware.CHIPS`);
- FLOPs per step (XLA's cost analysis) against the accounting (6N and the exact count);
- the collectives in the compiled HLO: kinds, how many, bytes;
- a roofline estimate of the step time and MFU from the chip's peak FLOP/s and HBM
  bandwidth. An estimate: it ignores communication and assumes perfect overlap.

Topologies are named as Cloud TPU names them: v4-N and v5p-N count TensorCores (two per
chip; JAX runs a chip's two as one "megacore" device, so v5p-128 is 64 devices), v5e-N
(also v5litepod-N) and v6e-N count chips. `v4:2x2x4`-style shapes (chips per axis) are
accepted too.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental import topologies

from scaling_jax import accounting, config as config_lib, errors, hardware, losses
from scaling_jax import model as model_lib, optim, sharding, train
from scaling_jax.config import ConfigError
from scaling_jax.train_cli import load_config

# name: (libtpu topology prefix, chip_config_name, TensorCores counted per chip in the name,
#        torus dimensions: 3 or 2)
GENERATIONS = {
    "v4": ("v4", "megacore", 2, 3),
    "v5p": ("v5p", "megacore", 2, 3),
    "v5e": ("v5e", "default", 1, 2),
    "v6e": ("v6e", "default", 1, 2),
}
ALIASES = {"v5litepod": "v5e"}
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4,
               "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8}


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str  # as given: "v5p-128" or "v5p:4x4x4"
  chip: hardware.Chip
  shape: tuple[int, ...]  # chips per torus axis

  @property
  def chips(self) -> int:
    return math.prod(self.shape)

  @property
  def libtpu_name(self) -> str:
    return f"{GENERATIONS[self.chip.name][0]}:{'x'.join(map(str, self.shape))}"


def slice_shape(chips: int, dims: int) -> tuple[int, ...]:
  """Cloud TPU's default shape of a slice of `chips` (a power of two) chips: from 2x2(x1),
  the last of the smallest axes doubles (v4: 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4, 4x4x8, ...;
  v5e: 2x2, 2x4, 4x4, 4x8, 8x8, 8x16, 16x16), as the v4/v5p/v5e/v6e docs list them."""
  if chips == 1:
    return (1,) * dims
  shape = [2, 2] + [1] * (dims - 2)
  while math.prod(shape) < chips:
    smallest = min(shape)
    shape[max(i for i, s in enumerate(shape) if s == smallest)] *= 2
  return tuple(shape)


def parse_topology(name: str) -> Topology:
  """A Cloud TPU accelerator type (`v5p-128`, `v5e-16`) or a shape (`v4:2x2x4`) -> Topology."""
  fix = ("name it as Cloud TPU does: v4-N or v5p-N (N TensorCores, 2 per chip), v5e-N or "
         "v6e-N (N chips), e.g. v5p-128, v5e-16; or give the chip grid as v4:2x2x4")
  m = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+)|:(\d+(?:x\d+)+))", name.strip().lower())
  gen = ALIASES.get(m.group(1), m.group(1)) if m else None
  if gen not in GENERATIONS:
    raise ConfigError(f"unknown TPU topology {name!r}; {fix}")
  _, _, cores_per_chip, dims = GENERATIONS[gen]
  chip = hardware.TPU_CHIPS[gen]
  if m.group(3):
    shape = tuple(int(s) for s in m.group(3).split("x"))
    if len(shape) != dims or min(shape) < 1:
      raise ConfigError(f"topology {name!r}: {gen} slices have {dims} axes; {fix}")
    return Topology(name, chip, shape)
  count = int(m.group(2))
  chips = count // cores_per_chip
  if count % cores_per_chip or chips < 1 or (chips & (chips - 1)) or chips in (2,) or (
      cores_per_chip == 2 and chips < 4):
    raise ConfigError(
        f"topology {name!r} is not a slice this command can shape: {gen}-N takes "
        f"{'N = 8, 16, 32, ... TensorCores' if cores_per_chip == 2 else 'N = 1, 4, 8, 16, ... chips'}"
        f"; for other sizes give the chip grid, e.g. {gen}:{'x'.join(['4'] * dims)}")
  return Topology(name, chip, slice_shape(chips, dims))


def topology_devices(topology: Topology):
  """The slice's devices, from libtpu, without TPUs attached (one per chip)."""
  if importlib.util.find_spec("libtpu") is None:
    raise ConfigError("compiling for a TPU needs libtpu: pip install -e '.[tpu]' (or "
                      "pip install 'jax[tpu]' at this jax version)")
  # libtpu takes a machine-wide lock file, held by any other jax process that loaded it; a
  # compile-only client needs no TPU, so it may share the library.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  shape = topology.shape
  chips_per_host = tuple(min(s, 2) for s in shape[:2]) + (1,)
  wrap = tuple(s >= 4 for s in shape) if len(shape) == 3 else tuple(s == 16 for s in shape)
  _, chip_config, _, _ = GENERATIONS[topology.chip.name]
  desc = topologies.get_topology_desc(
      platform="tpu", topology_name=topology.libtpu_name, chip_config_name=chip_config,
      chips_per_host_bounds=chips_per_host, num_slices=1, wrap=wrap + (False,) * (3 - len(wrap)))
  return desc.devices


def for_tpu(config):
  """A copy of `config` with the backend-dependent defaults resolved as a TPU resolves them
  (this process's own backend is a CPU): attention `auto` -> XLA's, the fused loss's chunk
  sized for an accelerator. `train.max_pass_tokens=-1` already follows the mesh's devices."""
  config = config.copy_and_resolve_references()
  if config.model.attention == "auto":
    config.model.attention = "xla"
  if config.model.loss_chunk_tokens == -1:
    config.model.loss_chunk_tokens = losses.auto_chunk_tokens(config.model.vocab_size, "tpu")
  return config


@dataclasses.dataclass(frozen=True)
class Memory:
  """Bytes per device of the compiled step (XLA's buffer assignment)."""
  arguments: int
  outputs: int
  aliased: int  # outputs written into donated arguments (counted once)
  temporaries: int
  code: int

  @property
  def total(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


@dataclasses.dataclass(frozen=True)
class Collective:
  kind: str
  count: int  # ops in the compiled HLO text (an op inside a loop body counts once)
  bytes: int  # their result sizes summed, per device


@dataclasses.dataclass(frozen=True)
class CompileReport:
  topology: Topology
  devices: int
  mesh: dict[str, int]
  tokens_per_step: int
  compile_s: float
  memory: Memory | None  # None: the compiler refused the program (out of memory)
  error: str  # the compiler's out-of-memory message, "" if it compiled
  param_bytes_per_device: int  # the parameters' shards on one device
  xla_flops: float  # per step, all devices: XLA's cost analysis (`step_flops`)
  xla_bytes_per_device: float  # HBM bytes accessed by one device: the compiled step's cost
                               # analysis, which counts a loop body once (a lower bound)
  flops_6n: float  # per step, all devices: 6N x tokens (Kaplan's C)
  flops_exact: float  # per step, all devices: accounting.flops_per_token_exact x tokens
  collectives: tuple[Collective, ...]

  @property
  def hbm_bytes(self) -> int:
    return self.topology.chip.hbm_bytes

  @property
  def fits(self) -> bool:
    return self.memory is not None and self.memory.total <= self.hbm_bytes

  @property
  def compute_s(self) -> float:
    return self.xla_flops / self.devices / self.topology.chip.peak("bfloat16")

  @property
  def hbm_s(self) -> float:
    return self.xla_bytes_per_device / self.topology.chip.hbm_bytes_per_s

  @property
  def step_s_estimate(self) -> float:
    """Roofline: the slower of compute at peak and HBM traffic at full bandwidth."""
    return max(self.compute_s, self.hbm_s)

  @property
  def mfu_estimate(self) -> float:
    """Exact model FLOPs per device over peak, at the roofline step time."""
    peak = self.topology.chip.peak("bfloat16")
    return self.flops_exact / self.devices / (self.step_s_estimate * peak)


def _shape_bytes(shape_text: str) -> int:
  """Bytes of an HLO result shape: `bf16[8,768]{1,0}` or a tuple `(f32[2], bf16[4,4])`."""
  total = 0
  for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", shape_text):
    if dtype in DTYPE_BYTES:
      total += DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
  return total


def collectives_in(hlo_text: str) -> tuple[Collective, ...]:
  """Kinds, counts and result bytes of the collectives in compiled HLO text (async pairs
  `-start`/`-done` count once, at their start)."""
  found: dict[str, list[int]] = {}
  pattern = re.compile(r"=\s*(.+?)\s+(" + "|".join(COLLECTIVES) + r")(-start)?\(")
  for line in hlo_text.splitlines():
    m = pattern.search(line)
    if m:
      entry = found.setdefault(m.group(2), [0, 0])
      entry[0] += 1
      entry[1] += _shape_bytes(m.group(1))
  return tuple(Collective(k, c, b) for k, (c, b) in sorted(found.items()))


def _oom_bytes(message: str) -> str:
  """The compiler's out-of-memory line (`Ran out of memory in memory space hbm ...`)."""
  for line in message.splitlines():
    if "memory" in line.lower():
      return line.strip()
  return message.strip().splitlines()[0] if message.strip() else "out of memory"


def lower_train_step(config, mesh, donate: bool = True):
  """(lowered `train.make_train_step` for `mesh`, the abstract state it takes): from abstract
  (sharded ShapeDtypeStruct) inputs, nothing allocated."""
  model = model_lib.build(config.model)
  opt, lr = optim.make(config.optim, int(config.train.num_steps),
                       accounting.counts(config.model).n_params)
  abstract = train.abstract_state(config, model, opt, mesh)
  batch = jax.ShapeDtypeStruct((config.train.batch_size, config.model.n_ctx + 1), jnp.int32,
                               sharding=sharding.batch_sharding(mesh))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    step = jax.jit(train.make_train_step(config, model, opt, lr, mesh),
                   donate_argnums=0 if donate else ())
    return step.lower(abstract, batch), abstract


def step_flops(config) -> float:
  """FLOPs of one train step of `config`, all devices together, from XLA's cost analysis of
  the step lowered for one CPU device as a single pass (no micro-batch, pass or loss-chunk
  loops: XLA's analysis counts a loop body once, whatever its trip count). The same
  arithmetic as the step itself (rematerialisation included) but the few norms GNS adds."""
  config = config.copy_and_resolve_references()
  config.gns.enabled = False
  config.train.update(grad_accum=1, max_pass_tokens=0)
  config.model.loss_chunk_tokens = 0
  config.mesh.update(data=1, fsdp=1, tensor=1)
  lowered, _ = lower_train_step(config, sharding.make_mesh(config, jax.devices("cpu")[:1]),
                                donate=False)
  return float(lowered.cost_analysis()["flops"])


def shard_bytes(abstract_tree) -> int:
  """Bytes one device holds of a tree of sharded ShapeDtypeStructs (device 0's shards)."""
  total = 0
  for x in jax.tree.leaves(abstract_tree):
    shard = x.sharding.shard_shape(x.shape)
    total += math.prod(shard) * x.dtype.itemsize
  return total


def analyse(config, topology: Topology) -> CompileReport:
  """Validates `config` for the slice (ConfigError before compiling), compiles its train
  step for it and reads the compiled program."""
  config = for_tpu(config)
  devices = topology_devices(topology)
  config_lib.validate(config, num_devices=len(devices))
  mesh = sharding.make_mesh(config, devices)
  model_lib.check_shardings(config, mesh)
  counts = accounting.counts(config.model)
  tokens = int(config.train.batch_size * config.model.n_ctx)
  lowered, abstract = lower_train_step(config, mesh)
  t0 = time.perf_counter()
  try:
    compiled, error = lowered.compile(), ""
  except jax.errors.JaxRuntimeError as e:  # the TPU compiler refuses a program over HBM
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    compiled, error = None, _oom_bytes(str(e))
  compile_s = time.perf_counter() - t0
  memory, bytes_accessed, colls = None, float("nan"), ()
  if compiled is not None:
    m = compiled.memory_analysis()
    memory = Memory(m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes,
                    m.temp_size_in_bytes, m.generated_code_size_in_bytes)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    bytes_accessed = float(cost.get("bytes accessed", 0.0))
    colls = collectives_in(compiled.as_text())
  return CompileReport(
      topology=topology, devices=len(devices), mesh=dict(mesh.shape), tokens_per_step=tokens,
      compile_s=compile_s, memory=memory, error=error,
      param_bytes_per_device=shard_bytes(abstract.params),
      xla_flops=step_flops(config), xla_bytes_per_device=bytes_accessed,
      flops_6n=counts.flops_per_token * tokens, flops_exact=counts.flops_per_token_exact * tokens,
      collectives=colls)


def _gib(n: float) -> str:
  return f"{n / hardware.GiB:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def format_report(r: CompileReport, config) -> str:
  chip, t = r.topology.chip, r.topology
  lines = [
      f"{t.name}: {r.devices} x TPU {chip.name} ({t.libtpu_name}), mesh {r.mesh}; "
      f"{config.train.batch_size} x {config.model.n_ctx} tokens per step, "
      f"{config_lib.num_micro_batches(config)} micro-batches, remat={config.model.remat}, "
      f"GNS {'on' if config.gns.enabled else 'off'}",
      "",
      f"memory per device (XLA buffer assignment; HBM {_gib(chip.hbm_bytes)}):"]
  if r.memory is None:
    lines += [f"  does NOT fit: the TPU compiler refused it: {r.error}"]
  else:
    m = r.memory
    lines += [f"  arguments {_gib(m.arguments)} (parameters {_gib(r.param_bytes_per_device)}),"
              f" outputs {_gib(m.outputs)}, donated/aliased -{_gib(m.aliased)}, "
              f"temporaries {_gib(m.temporaries)}, code {_gib(m.code)}",
              f"  total {_gib(m.total)} = {m.total / chip.hbm_bytes:.0%} of HBM: "
              + ("fits" if r.fits else "does NOT fit")]
  lines += [
      "", "FLOPs per step (all devices):",
      f"  XLA cost analysis {r.xla_flops:.4g} (the step as one pass; per device "
      f"{r.xla_flops / r.devices:.4g})",
      f"  accounting: 6N {r.flops_6n:.4g} (XLA / 6N = {r.xla_flops / r.flops_6n:.2f}), exact "
      f"{r.flops_exact:.4g} (XLA / exact = {r.xla_flops / r.flops_exact:.2f})"]
  if r.memory is not None:
    lines += [
        "", "collectives in the compiled HLO (per device; an op in a loop body counts once):"]
    lines += [f"  {c.kind:<20} {c.count:>4} ops  {c.bytes / 2**20:10.1f} MiB"
              for c in r.collectives] or ["  none"]
    lines += [
        "", f"roofline ESTIMATE (peak {chip.peak('bfloat16') / 1e12:.0f} TFLOP/s bf16, HBM "
        f"{chip.hbm_bytes_per_s / 1e9:.0f} GB/s; no communication, perfect overlap, HBM "
        "traffic with loop bodies counted once):",
        f"  step ~ {r.step_s_estimate * 1e3:.1f} ms (compute {r.compute_s * 1e3:.1f} ms, HBM "
        f"traffic {r.hbm_s * 1e3:.1f} ms), MFU ~ {r.mfu_estimate:.0%}, "
        f"{r.tokens_per_step / r.step_s_estimate:.3g} tokens/s"]
  lines += ["", f"compiled in {r.compile_s:.1f} s"]
  return "\n".join(lines)


@errors.boundary("compile")
def main(argv: list[str]) -> int:
  parser = errors.ArgumentParser(
      prog="scaling-jax compile",
      description="Compile the train step for a Cloud TPU slice (no TPU needed): memory per "
                  "device vs HBM, FLOPs, collectives, a roofline estimate.")
  parser.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
  parser.add_argument("--topology", required=True,
                      help="v4-N / v5p-N (TensorCores), v5e-N / v6e-N (chips), or v4:2x2x4")
  args, overrides = parser.parse_known_args(argv)
  bad = [o for o in overrides if not o.startswith("--config.")]
  if bad:
    parser.error(f"unknown arguments {bad}; config fields are set as --config.FIELD=VALUE")
  try:
    topology = parse_topology(args.topology)
    config = load_config(args.config, overrides)
    report = analyse(config, topology)
  except ConfigError as e:
    print(f"scaling-jax compile: error: {e}", file=sys.stderr)
    return 2
  print(format_report(report, for_tpu(config)))
  return 0 if report.fits else 1
