"""Run configuration: defaults, loading with overrides, value validation, resume diffs.

Every run is described by one `ml_collections.ConfigDict`. `configs/*.py` start from
`default_config()` and override fields. `load_config` is the one loader of a config file
and its `--config.FIELD=VALUE` overrides (train, sweep, data, demo and compile all use it);
`validate()` checks every field's value against `RULES` (types, ranges, finiteness, the
allowed names) and the fields' consistency, raising a one-line ConfigError that says what
to change, before anything is built or compiled.
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import math
import os
import sys
from typing import Any, Mapping

import ml_collections
from absl import flags
from ml_collections import config_flags

from scaling_jax.errors import UserError, one_line

OVERRIDE_PREFIX = "--config."


class ConfigError(UserError, ValueError):
  """A run config that cannot work; the message says what to change."""


def default_config() -> ml_collections.ConfigDict:
  """The defaults every config file starts from (a tiny CPU-sized model)."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.arch = "transformer"  # transformer | universal | lstm
  c.model.n_layer = 2
  c.model.d_model = 64
  c.model.n_heads = 4
  c.model.d_ff = 256  # Kaplan's default is 4 * d_model
  c.model.n_ctx = 64
  c.model.vocab_size = 1024
  c.model.tie_embeddings = False
  c.model.param_dtype = "float32"
  c.model.dtype = "float32"  # compute dtype: float32 | bfloat16
  # auto | einsum | xla | cudnn (xla and cudnn: jax.nn.dot_product_attention's implementations)
  c.model.attention = "auto"
  c.model.remat = "none"  # none | full | dots (rematerialisation policy per block)
  # Training loss: the unembedding fused with the cross-entropy over chunks of about this many
  # tokens per device (never the whole [B, T, V] logits); -1 = sized for the backend (4 MiB of
  # f32 logits on CPU, 1 GiB on accelerators), 0 = unfused.
  c.model.loss_chunk_tokens = -1

  c.data = ml_collections.ConfigDict()
  c.data.name = "stdlib"  # stdlib | text_files | array | any TFDS catalog name
  c.data.paths = ""  # text_files: comma-separated files, directories or globs
  c.data.data_dir = ""  # where datasets and tokenizers are built/cached ("" = default)
  c.data.tokenizer_vocab_size = -1  # -1: use model.vocab_size
  c.data.max_tokens = -1  # D: train on exactly the first D tokens (epochs repeat); -1 = all
  c.data.eval_sets = ("validation",)  # tagged eval sets, e.g. validation, ood_docs, ood_lib
  c.data.eval_batches = 4
  c.data.shuffle = True
  c.data.worker_count = 0
  c.data.array_path = ""  # data.name == "array": a .npy of token ids

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 16  # global batch in sequences
  c.train.num_steps = 100
  c.train.grad_accum = 1  # micro-batches per step (gradient accumulation)
  # Cap on tokens per device in one forward/backward pass: bigger micro-batches run in several
  # passes, gradients summed (same result, smaller working set). -1: 1024 on CPU, no cap on
  # accelerators; 0: no cap.
  c.train.max_pass_tokens = -1
  c.train.log_every = 10
  c.train.eval_every = 50
  c.train.ckpt_every = 50
  c.train.keep_checkpoints = 2
  c.train.async_checkpointing = False
  c.train.nan_policy = "stop"  # stop | skip
  c.train.max_skipped_steps = 10
  c.train.progress = True
  c.train.peak_flops_per_device = -1.0  # -1: from the device table or measured
  # A branch (scaling-jax critical-batch): start from another run's checkpoint (params and
  # optimizer state, its data position; step, GNS and LR schedule start afresh here).
  c.train.init_from = ""  # that run's directory ("" = start from scratch)
  c.train.init_step = -1  # its checkpoint step (-1: its newest)
  c.train.stop_loss = -1.0  # stop (finished) once the first eval set's loss is <= this; -1: off

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adamw"  # adamw | adafactor
  c.optim.lr = 1e-3
  c.optim.lr_rule = "fixed"  # fixed | kaplan (LR(N) = 0.003239 - 0.0001395 log N)
  c.optim.schedule = "cosine"  # cosine (linear warmup, cosine to zero) | constant
  c.optim.warmup_steps = 10
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.0
  c.optim.clip_norm = 1.0  # global-norm clipping; <= 0 disables

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1: all the devices the other axes leave
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.gns = ml_collections.ConfigDict()
  c.gns.enabled = True
  c.gns.num_small = 2  # small batches per step when grad_accum == 1
  c.gns.ema = 0.95
  return c


# --- loading: one config file + `--config.FIELD=VALUE` overrides, for every command ---------

def parse_overrides(items: list[str]) -> dict[str, str]:
  """{"model.d_model": "128"} from ["--config.model.d_model=128", ...]; ConfigError for any
  item that is not of that form."""
  bad = [o for o in items if not o.startswith(OVERRIDE_PREFIX) or "=" not in o]
  if bad:
    raise ConfigError(f"unknown arguments {bad}; set config fields as --config.FIELD=VALUE")
  return dict(o[len(OVERRIDE_PREFIX):].split("=", 1) for o in items)


def format_override(key: str, value: Any) -> str:
  """`--config.model.d_model=128`; tuples/lists in the form ml_collections parses."""
  if isinstance(value, (list, tuple)):
    value = repr(tuple(value))
  return f"{OVERRIDE_PREFIX}{key}={value}"


def load_user_module(path: str, name: str):
  """Runs the Python file `path` as a fresh module (never one cached in sys.modules, so a
  file without get_config() cannot inherit the last one's). Raises what the file raises."""
  loader = importlib.machinery.SourceFileLoader(name, path)  # any file extension
  spec = importlib.util.spec_from_file_location(name, path, loader=loader)
  module = importlib.util.module_from_spec(spec)
  loader.exec_module(module)
  return module


def _from_file(config_file: str) -> ml_collections.ConfigDict:
  """get_config() of a config file (`FILE:ARG` calls get_config(ARG), as ml_collections)."""
  path, _, arg = config_file.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist; pass one of the configs/*.py files")
  try:
    get_config = getattr(load_user_module(path, "_scaling_jax_config"), "get_config", None)
    if not callable(get_config):
      raise ConfigError(f"config file {path!r} defines no get_config(); it must define one "
                        "that returns default_config() with fields changed")
    config = get_config(arg) if arg else get_config()
  except ConfigError:
    raise
  except Exception as e:  # noqa: BLE001 -- the user's file: syntax error, get_config() raising
    raise ConfigError(f"cannot load config file {path!r}: {type(e).__name__}: "
                      f"{one_line(e)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config() of {path!r} returned a {type(config).__name__}; it must "
                      "return default_config() with fields changed")
  return config


def load_config(config_file: str | None, overrides: list[str] | Mapping[str, Any] = ()):
  """A config file's get_config() (None: `default_config()`) with the overrides applied,
  typed by ml_collections (`--config.a.b=v` strings, or a {"a.b": v} mapping), then
  `validate`d without the device count.

  Raises ConfigError for a missing or broken file, an unknown field, a value of the wrong
  type or out of its range.
  """
  if isinstance(overrides, Mapping):
    overrides = [format_override(k, v) for k, v in overrides.items()]
  overrides = list(overrides)
  parse_overrides(overrides)  # every item is --config.FIELD=VALUE
  source = config_file or "the default config"
  base = default_config() if config_file is None else _from_file(config_file)
  fv = flags.FlagValues()
  argv = [sys.argv[0] if sys.argv else "scaling-jax", *overrides]
  try:
    # sys_argv: the override flags are defined from these, not the process's own sys.argv
    config_flags.DEFINE_config_dict("config", base, flag_values=fv, lock_config=True,
                                    sys_argv=argv)
    fv(argv)
    config = fv.config
  except flags.Error as e:
    raise ConfigError(f"{one_line(e)}; give the field a value of its type (see "
                      f"{source})") from None
  except (AttributeError, KeyError) as e:
    name = str(e).strip("'\" ")
    used = [o.split("=")[0] for o in overrides if name in o.split("=")[0].split(".")]
    raise ConfigError(f"unknown config field {name!r} ({', '.join(used) or overrides}); check "
                      f"the field names in {source}") from None
  validate(config)
  return config


# --- values: one rule per field -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Float:
  """A finite number in the interval (open at an end where `*_open`), or an `also` value
  (value: what it means)."""
  lo: float | None = None
  hi: float | None = None
  lo_open: bool = False
  hi_open: bool = False
  also: Mapping[float, str] = dataclasses.field(default_factory=dict)
  noun = "a finite number"

  def is_kind(self, v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

  def ok(self, v) -> bool:
    if not self.is_kind(v):
      return False
    if v in self.also:
      return True
    above = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
    below = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
    return above and below

  def rule(self) -> str:
    if self.lo is not None and self.hi is not None:
      left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
      where = f" in {left}{self.lo}, {self.hi}{right}"
    elif self.lo is not None:
      where = f" {'>' if self.lo_open else '>='} {self.lo}"
    else:
      where = ""
    return self.noun + where + "".join(f", or {k} ({m})" for k, m in self.also.items())


@dataclasses.dataclass(frozen=True)
class Int(Float):
  """An integer (not a bool) in [lo, hi], or an `also` value."""
  noun = "an integer"

  def is_kind(self, v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class OneOf:
  values: tuple
  verb = "is not"  # "config.optim.name='sgd' is not one of (...)"

  def ok(self, v) -> bool:
    return isinstance(v, str) and v in self.values

  def rule(self) -> str:
    return f"one of {self.values}"


@dataclasses.dataclass(frozen=True)
class Bool:
  def ok(self, v) -> bool:
    return isinstance(v, bool)

  def rule(self) -> str:
    return "True or False"


@dataclasses.dataclass(frozen=True)
class Str:
  nonempty: bool = False

  def ok(self, v) -> bool:
    return isinstance(v, str) and (bool(v.strip()) or not self.nonempty)

  def rule(self) -> str:
    return "a non-empty string" if self.nonempty else "a string"


@dataclasses.dataclass(frozen=True)
class Names:
  """A tuple of non-empty strings (may be empty)."""

  def ok(self, v) -> bool:
    return isinstance(v, (tuple, list)) and all(isinstance(x, str) and x.strip() for x in v)

  def rule(self) -> str:
    return "a tuple of non-empty names, e.g. ('validation',)"


POSITIVE = Int(1)
UNIT = Float(0.0, 1.0, hi_open=True)

# Every field's rule. A field missing here (a new one) is held to its default's type (an int
# stays an int, a float finite, ...): add it here to give it a range.
RULES: dict[str, Any] = {
    "seed": Int(0, 2**31 - 1),
    "model.arch": OneOf(("transformer", "universal", "lstm")),
    "model.n_layer": POSITIVE, "model.d_model": POSITIVE, "model.n_heads": POSITIVE,
    "model.d_ff": POSITIVE, "model.n_ctx": POSITIVE, "model.vocab_size": POSITIVE,
    "model.param_dtype": OneOf(("float32", "bfloat16")),
    "model.dtype": OneOf(("float32", "bfloat16")),
    "model.attention": OneOf(("auto", "einsum", "xla", "cudnn")),
    "model.remat": OneOf(("none", "full", "dots")),
    "model.loss_chunk_tokens": Int(1, also={-1: "sized for the backend", 0: "unfused"}),
    "data.name": Str(nonempty=True),
    "data.tokenizer_vocab_size": Int(1, also={-1: "model.vocab_size"}),
    "data.max_tokens": Int(1, also={-1: "all"}),
    "data.eval_sets": Names(),
    "data.eval_batches": POSITIVE,  # eval off: data.eval_sets=() (validate)
    "data.worker_count": Int(0),
    "train.batch_size": POSITIVE, "train.num_steps": POSITIVE, "train.grad_accum": POSITIVE,
    "train.max_pass_tokens": Int(1, also={-1: "the backend's default", 0: "no cap"}),
    "train.log_every": POSITIVE, "train.eval_every": POSITIVE, "train.ckpt_every": POSITIVE,
    "train.keep_checkpoints": POSITIVE,  # 0 would leave nothing to resume from
    "train.nan_policy": OneOf(("stop", "skip")),
    "train.max_skipped_steps": Int(0),
    "train.peak_flops_per_device": Float(0.0, lo_open=True, also={-1.0: "from the device table"}),
    "train.init_from": Str(),
    "train.init_step": Int(0, also={-1: "the newest"}),
    "train.stop_loss": Float(0.0, lo_open=True, also={-1.0: "off"}),
    "optim.name": OneOf(("adamw", "adafactor")),
    "optim.lr": Float(0.0, lo_open=True),
    "optim.lr_rule": OneOf(("fixed", "kaplan")),
    "optim.schedule": OneOf(("cosine", "constant")),
    "optim.warmup_steps": Int(0),
    "optim.b1": UNIT, "optim.b2": UNIT,
    "optim.eps": Float(0.0, lo_open=True),
    "optim.weight_decay": Float(0.0),
    "optim.clip_norm": Float(),  # <= 0 disables clipping
    "mesh.data": Int(1, also={-1: "all the devices the other axes leave"}),
    "mesh.fsdp": Int(1, also={-1: "all the devices the other axes leave"}),
    "mesh.tensor": Int(1, also={-1: "all the devices the other axes leave"}),
    "gns.num_small": Int(2),
    "gns.ema": UNIT,
}

# What to do, where the rule alone does not say it.
HINTS = {
    "data.eval_batches": "to train without evaluation set config.data.eval_sets=()",
    "train.keep_checkpoints": "a run keeps at least one checkpoint to resume from",
    "optim.lr": "a learning rate such as 1e-3, or optim.lr_rule=kaplan",
    "gns.num_small": "the gradient noise scale compares at least 2 micro-batches",
}

_RULE_OF_TYPE = {bool: Bool(), int: Int(), float: Float(), str: Str(), list: Names()}


def _rule_for(name: str, defaults: dict[str, Any]):
  if name in RULES:
    return RULES[name]
  return _RULE_OF_TYPE.get(type(defaults.get(name)))


def num_micro_batches(config) -> int:
  """Micro-batches per step: grad_accum, or gns.num_small if GNS needs more."""
  k = int(config.train.grad_accum)
  if config.gns.enabled and k < 2:
    k = int(config.gns.num_small)
  return k


def validate(config, num_devices: int | None = None) -> None:
  """Raises ConfigError with a one-line fix for a field out of its range (RULES) or fields
  that contradict each other; with `num_devices`, also for a mesh that cannot hold them."""
  defaults = _flatten(default_config().to_dict())  # tuples as lists
  for name, value in _flatten(config.to_dict()).items():
    rule = _rule_for(name, defaults)
    if rule is not None and not rule.ok(value):
      hint = f"; {HINTS[name]}" if name in HINTS else ""
      verb = getattr(rule, "verb", "must be")
      raise ConfigError(f"config.{name}={value!r} {verb} {rule.rule()}{hint}")
  m, t = config.model, config.train
  if m.d_model % m.n_heads:
    raise ConfigError(
        f"config.model.n_heads={m.n_heads} does not divide config.model.d_model={m.d_model}; "
        f"pick n_heads among {[h for h in range(1, m.d_model + 1) if m.d_model % h == 0][:12]}")
  if config.optim.schedule == "cosine" and config.optim.warmup_steps >= t.num_steps:
    raise ConfigError(
        f"config.optim.warmup_steps={config.optim.warmup_steps} leaves no steps for the cosine "
        f"decay of a {t.num_steps}-step run; use fewer warmup steps or schedule=constant")
  if t.stop_loss > 0 and not config.data.eval_sets:
    raise ConfigError("config.train.stop_loss stops on the first eval set's loss; set "
                      "config.data.eval_sets or train.stop_loss=-1")
  k = num_micro_batches(config)
  if t.batch_size % k:
    raise ConfigError(
        f"config.train.batch_size={t.batch_size} is not divisible by the {k} micro-batches "
        f"(grad_accum / gns.num_small); use a multiple of {k}")
  if num_devices is not None:
    from scaling_jax import sharding  # local import: config stays importable without jax
    dims = sharding.mesh_shape(config, num_devices)
    batch_par = dims["data"] * dims["fsdp"]
    micro = t.batch_size // k
    if micro % batch_par:
      raise ConfigError(
          f"config.train.batch_size={t.batch_size} gives micro-batches of {micro} sequences, "
          f"not divisible by the {batch_par} data-parallel devices (data x fsdp); use a "
          f"batch_size that is a multiple of {batch_par * k}")
    if m.n_heads % dims["tensor"] or m.d_ff % dims["tensor"]:
      raise ConfigError(
          f"config.mesh.tensor={dims['tensor']} must divide model.n_heads={m.n_heads} and "
          f"model.d_ff={m.d_ff}")


# Fields that may differ when a run is resumed (they do not change its results).
RESUME_FREE = ("train.progress", "train.peak_flops_per_device", "data.worker_count",
               "train.async_checkpointing", "data.data_dir")


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = list(v) if isinstance(v, tuple) else v
  return out


def config_diff(old: dict, new: dict) -> list[str]:
  """Human-readable differences between two config dicts, ignoring RESUME_FREE fields.

  A field that `old` lacks (written before the field existed) counts as its default.
  """
  a, b = _flatten(old), _flatten(new)
  defaults = _flatten(default_config().to_dict())
  diffs = []
  for key in sorted(set(a) | set(b)):
    if key in RESUME_FREE:
      continue
    va, vb = a.get(key, defaults.get(key, "<absent>")), b.get(key, "<absent>")
    if isinstance(va, tuple):
      va = list(va)
    if va != vb:
      diffs.append(f"{key}: {va!r} there vs {vb!r} now")
  return diffs
