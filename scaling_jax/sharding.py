"""Meshes and sharding by names (the Flax lm1b / MaxText way).

The mesh has three axes, `data`, `fsdp` and `tensor`, sized from the config with -1 meaning
"the devices the others leave". One table, `RULES`, maps the logical axis names that
parameters and activations carry onto those axes. A parameter dimension that its mesh axes
do not divide is an error (ShardingError, with the config field to change), never a silent
replication of that parameter on every device; the only dimensions replicated are those of
size 1 and optimizer statistics of lower rank than their parameter (Adafactor's factored
moments), which are small.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from scaling_jax.config import ConfigError

AXES = ("data", "fsdp", "tensor")

# Logical axis name -> mesh axes. Parameters: embed/mlp/heads/kv/vocab/length.
# Activations: act_*. The batch of every activation is split over data x fsdp.
RULES = (
    ("act_batch", ("data", "fsdp")),
    ("act_length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("vocab_in", None),  # the input embedding table: a gather, not a matmul
    ("length", None),
    ("layers", None),
    ("lstm", None),  # LSTM gates (model_variants): replicated
)


def mesh_shape(config, num_devices: int) -> dict[str, int]:
  """{"data", "fsdp", "tensor"} sizes for `num_devices`, resolving one -1."""
  dims = {a: int(config.mesh[a]) for a in AXES}
  free = [a for a, v in dims.items() if v == -1]
  if len(free) > 1:
    raise ConfigError(f"config.mesh has -1 for {free}; at most one axis may be -1")
  if any(v == 0 or v < -1 for v in dims.values()):
    raise ConfigError(f"config.mesh {dims}: sizes must be positive or -1")
  fixed = math.prod(v for v in dims.values() if v != -1)
  if free:
    if num_devices % fixed:
      raise ConfigError(
          f"config.mesh {dims} cannot fill {num_devices} devices: the fixed axes "
          f"({fixed} devices) must divide {num_devices}")
    dims[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise ConfigError(
        f"config.mesh {dims} uses {fixed} devices but {num_devices} are present; set one "
        f"axis to -1 or make the product {num_devices}")
  return dims


def make_mesh(config, devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  dims = mesh_shape(config, len(devices))
  shape = tuple(dims[a] for a in AXES)
  try:  # interconnect-aware layout (TPU torus, NVLink islands)
    device_array = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, NotImplementedError, AssertionError):  # odd topologies: plain order
    device_array = np.asarray(devices).reshape(shape)
  return Mesh(device_array, AXES, axis_types=(AxisType.Auto,) * len(AXES))


class ShardingError(ConfigError):
  """A mesh axis does not divide the parameter dimension it is to shard."""


# The config field behind each logical parameter axis, for the error's fix.
FIELD_OF_AXIS = {"vocab": "model.vocab_size", "vocab_in": "model.vocab_size",
                 "embed": "model.d_model", "mlp": "model.d_ff", "heads": "model.n_heads",
                 "kv": "model.d_model / model.n_heads", "length": "model.n_ctx"}


def _fit_spec(spec: P, shape, mesh: Mesh, logical: P | None = None, where: str = "") -> P:
  """`spec` without the mesh axes of size 1; ShardingError if the remaining axes do not
  divide a dimension (of size > 1) they shard. A leaf of lower rank than its spec (Adafactor's
  factored moments) is replicated."""
  if len(spec) > len(shape):
    return P()
  logical = tuple(logical or ()) + (None,) * len(shape)
  out = []
  for i, (dim, axes) in enumerate(zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)))):
    axes_t = () if axes is None else axes if isinstance(axes, tuple) else (axes,)
    kept = tuple(a for a in axes_t if mesh.shape[a] > 1)
    size = math.prod(mesh.shape[a] for a in kept)
    if kept and dim % size and dim > 1:
      field = FIELD_OF_AXIS.get(logical[i], f"dimension {i}")
      mesh_txt = " x ".join(f"config.mesh.{a}={mesh.shape[a]}" for a in kept)
      raise ShardingError(
          f"{where or 'an array'} of shape {tuple(shape)}: {field} = {dim} is not divisible by "
          f"{mesh_txt}, so it could only be replicated on every device; make {field} a "
          f"multiple of {size} (next: {-(-dim // size) * size}) or use a mesh whose "
          f"{'/'.join(kept)} axis divides {dim}")
    out.append(None if not kept or dim % size else (kept if len(kept) > 1 else kept[0]))
  return P(*out)


def strip_boxes(tree):
  """The tree with flax partitioning boxes removed (no sharding constraint applied)."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  return jax.tree.map(lambda x: x.unbox(apply_constraint=False) if is_box(x) else x, tree,
                      is_leaf=is_box)


def logical_shardings(abstract_tree, mesh: Mesh):
  """NamedShardings for a tree of (possibly LogicallyPartitioned) abstract arrays."""
  specs = nn.get_partition_spec(abstract_tree)
  mesh_specs = nn.logical_to_mesh(specs, RULES)
  shapes = strip_boxes(abstract_tree)
  return jax.tree_util.tree_map_with_path(
      lambda path, spec, logical, x: NamedSharding(mesh, _fit_spec(
          spec, x.shape, mesh, logical, "parameter " + jax.tree_util.keystr(path))),
      mesh_specs, specs, shapes, is_leaf=lambda s: isinstance(s, P))


def axis_shards(logical: str) -> int:
  """How many shards the activation axis `logical` (e.g. `act_batch`) has under the current
  mesh (`jax.set_mesh`); 1 outside one."""
  mesh = jax.sharding.get_abstract_mesh()
  axes = dict(RULES)[logical]
  axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
  return 1 if mesh.empty else math.prod(mesh.shape.get(a, 1) for a in axes)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Token batches [B, T]: B split over data x fsdp."""
  return NamedSharding(mesh, P(("data", "fsdp"), None))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local_batch: np.ndarray, mesh: Mesh) -> jax.Array:
  """Assembles each process's rows [B/num_processes, T] into one global sharded array."""
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(local_batch, sharding)
  return jax.make_array_from_process_local_data(sharding, local_batch)
