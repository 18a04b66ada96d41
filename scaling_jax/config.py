"""Run configuration: defaults, derived facts and early validation.

Every run is described by one `ml_collections.ConfigDict`. `configs/*.py` start from
`default_config()` and override fields; `validate()` turns mistakes into one-line
errors that say what to change, before anything is compiled.
"""

from __future__ import annotations

import ml_collections


class ConfigError(ValueError):
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


VALID = {
    "model.arch": ("transformer", "universal", "lstm"),
    "model.param_dtype": ("float32", "bfloat16"),
    "model.dtype": ("float32", "bfloat16"),
    "model.attention": ("auto", "einsum", "xla", "cudnn"),
    "model.remat": ("none", "full", "dots"),
    "optim.name": ("adamw", "adafactor"),
    "optim.lr_rule": ("fixed", "kaplan"),
    "optim.schedule": ("cosine", "constant"),
    "train.nan_policy": ("stop", "skip"),
}


def _get(config, dotted):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def num_micro_batches(config) -> int:
  """Micro-batches per step: grad_accum, or gns.num_small if GNS needs more."""
  k = int(config.train.grad_accum)
  if config.gns.enabled and k < 2:
    k = int(config.gns.num_small)
  return k


def validate(config, num_devices: int | None = None) -> None:
  """Raises ConfigError with a one-line fix for any inconsistent field."""
  for dotted, allowed in VALID.items():
    value = _get(config, dotted)
    if value not in allowed:
      raise ConfigError(f"config.{dotted}={value!r} is not one of {allowed}")
  m, t = config.model, config.train
  positive = {
      "model.n_layer": m.n_layer, "model.d_model": m.d_model, "model.n_heads": m.n_heads,
      "model.d_ff": m.d_ff, "model.n_ctx": m.n_ctx, "model.vocab_size": m.vocab_size,
      "train.batch_size": t.batch_size, "train.num_steps": t.num_steps,
      "train.grad_accum": t.grad_accum, "train.log_every": t.log_every,
      "train.eval_every": t.eval_every, "train.ckpt_every": t.ckpt_every,
  }
  for name, value in positive.items():
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ConfigError(f"config.{name}={value!r} must be a positive integer")
  if m.d_model % m.n_heads:
    raise ConfigError(
        f"config.model.n_heads={m.n_heads} does not divide config.model.d_model={m.d_model}; "
        f"pick n_heads among {[h for h in range(1, m.d_model + 1) if m.d_model % h == 0][:12]}")
  if (not isinstance(t.max_pass_tokens, int) or isinstance(t.max_pass_tokens, bool)
      or t.max_pass_tokens < -1):
    raise ConfigError(f"config.train.max_pass_tokens={t.max_pass_tokens!r} must be a positive "
                      "number of tokens, -1 (the backend's default) or 0 (no cap)")
  if (not isinstance(m.loss_chunk_tokens, int) or isinstance(m.loss_chunk_tokens, bool)
      or m.loss_chunk_tokens < -1):
    raise ConfigError(f"config.model.loss_chunk_tokens={m.loss_chunk_tokens!r} must be a "
                      "positive number of tokens, -1 (sized for the backend) or 0 (unfused)")
  if config.optim.lr <= 0:
    raise ConfigError(f"config.optim.lr={config.optim.lr} must be > 0")
  if not 0 <= config.optim.warmup_steps:
    raise ConfigError("config.optim.warmup_steps must be >= 0")
  if config.optim.schedule == "cosine" and config.optim.warmup_steps >= t.num_steps:
    raise ConfigError(
        f"config.optim.warmup_steps={config.optim.warmup_steps} leaves no steps for the cosine "
        f"decay of a {t.num_steps}-step run; use fewer warmup steps or schedule=constant")
  if not 0.0 <= config.gns.ema < 1.0:
    raise ConfigError(f"config.gns.ema={config.gns.ema} must be in [0, 1)")
  k = num_micro_batches(config)
  if config.gns.enabled and k < 2:
    raise ConfigError("GNS needs at least 2 micro-batches: set config.gns.num_small>=2 "
                      "or config.gns.enabled=False")
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
