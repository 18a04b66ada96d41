"""Training: `train_and_evaluate(config, workdir)` and the jitted, donated train step.

The step splits the global batch into micro-batches (gradient accumulation), which also
gives the gradient noise scale for free: the mean squared norm of the micro-batch
gradients is the small-batch norm, the norm of their mean the big-batch one
(`noise_scale.py`), both on the raw gradient before clipping and Adam.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from scaling_jax import accounting, checkpoint, config as config_lib, distributed, hardware
from scaling_jax import metric_keys as keys, metrics
from scaling_jax import model as model_lib, noise_scale, optim, preflight, rundir, sharding
from scaling_jax import storage


PREEMPTION_SYNC_EVERY = 10  # steps between multi-process checks for a stop signal
EVAL_IN_FLIGHT = 4  # eval batches dispatched before the host waits on them (mean_eval_loss)
CPU_PASS_TOKENS = 1024  # tokens per device in one pass on CPU (bench_profile sweeps 512-4096)


class TrainingDiverged(RuntimeError):
  """The loss or gradient became NaN/Inf (policy `stop`, or too many skipped steps)."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  gns: noise_scale.GNSState
  bad_steps: jax.Array  # non-finite steps so far (their updates were not applied)
  first_bad_step: jax.Array  # -1 if none


def make_loss_fn(model: nn.Module):
  """(params, tokens [B, T+1]) -> mean next-token cross-entropy in nats (float32)."""
  def loss_fn(params, tokens_BT1):
    return model.apply({"params": params}, tokens_BT1[:, :-1], targets_BT=tokens_BT1[:, 1:])
  return loss_fn


def _sq_norm(tree) -> jax.Array:
  return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree))


def passes_per_micro_batch(config, mesh) -> int:
  """Passes each micro-batch is computed in, so one pass holds at most
  `train.max_pass_tokens` tokens per device (-1: CPU_PASS_TOKENS on CPU, no cap elsewhere).

  The passes' gradients are summed: the same gradient as one pass, in a working set that
  stays in a CPU's caches (bench/bench_profile.py measures the gain). Every pass keeps at
  least one sequence per data-parallel device.
  """
  cap = int(config.train.max_pass_tokens)
  if cap < 0:
    cap = CPU_PASS_TOKENS if mesh.devices.flat[0].platform == "cpu" else 0
  if cap == 0:
    return 1
  batch_par = mesh.shape["data"] * mesh.shape["fsdp"]
  seqs = config.train.batch_size // config_lib.num_micro_batches(config) // batch_par
  wanted = -(-seqs * config.model.n_ctx // cap)  # ceil: passes needed to respect the cap
  return next(p for p in range(min(wanted, seqs), seqs + 1) if seqs % p == 0)


def interleave(x_B, k: int):
  """[B, ...] -> [k, B/k, ...]; piece i takes rows i, i+k, ...: every device keeps a share."""
  return x_B.reshape(x_B.shape[0] // k, k, *x_B.shape[1:]).swapaxes(0, 1)


def summed_value_and_grad(grad_fn, params, pieces_PMT1):
  """(summed loss, summed gradient) of `grad_fn` over the passes stacked on the first axis."""
  if pieces_PMT1.shape[0] == 1:
    return grad_fn(params, pieces_PMT1[0])

  def body(carry, piece_MT1):
    l_acc, g_acc = carry
    l, g = grad_fn(params, piece_MT1)
    return (l_acc + l, jax.tree.map(jnp.add, g_acc, g)), None

  zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
  return jax.lax.scan(body, zeros, pieces_PMT1)[0]


def micro_batch_gradients(grad_fn, params, pieces_KPMT1):
  """(summed loss, summed gradient, summed squared norm of each micro-batch's mean gradient)
  over k micro-batches of p passes each: one scan over the micro-batches, each summing its
  passes (`summed_value_and_grad`) and adding its gradient's squared norm in the same body, so
  the GNS's small-batch norms cost one norm per micro-batch and no second pass over memory."""
  p = pieces_KPMT1.shape[1]

  def body(carry, mb_PMT1):
    l_acc, g_acc, sq_acc = carry
    l, g = summed_value_and_grad(grad_fn, params, mb_PMT1)  # sums over p passes
    return (l_acc + l, jax.tree.map(jnp.add, g_acc, g), sq_acc + _sq_norm(g) / p**2), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  return jax.lax.scan(
      body, (jnp.zeros((), jnp.float32), zeros, jnp.zeros((), jnp.float32)), pieces_KPMT1)[0]


def make_train_step(config, model: nn.Module, opt: optax.GradientTransformation, lr_schedule,
                    mesh):
  """(state, batch [B, T+1]) -> (state, metrics), to be jitted with the state donated."""
  k = config_lib.num_micro_batches(config)
  p = passes_per_micro_batch(config, mesh)
  use_gns = bool(config.gns.enabled)
  decay = float(config.gns.ema)
  loss_fn = make_loss_fn(model)
  grad_fn = jax.value_and_grad(loss_fn)
  pieces_sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(None, None, ("data", "fsdp"), None))

  def step_fn(state: TrainState, batch_BT1):
    b = batch_BT1.shape[0]
    if k * p == 1:
      loss, grads = grad_fn(state.params, batch_BT1)
      small_sq = jnp.zeros((), jnp.float32)
    else:
      # Micro-batch i takes rows i, i+k, ...; its pass j every p-th of those rows.
      pieces_KPMT1 = jax.vmap(lambda mb: interleave(mb, p))(interleave(batch_BT1, k))
      pieces_KPMT1 = jax.lax.with_sharding_constraint(pieces_KPMT1, pieces_sharding)
      l_sum, g_sum, sq_sum = micro_batch_gradients(grad_fn, state.params, pieces_KPMT1)
      grads = jax.tree.map(lambda g: g / (k * p), g_sum)
      loss, small_sq = l_sum / (k * p), sq_sum / k

    big_sq = _sq_norm(grads)
    grad_norm = jnp.sqrt(big_sq)
    out = {keys.LOSS: loss, keys.GRAD_NORM: grad_norm, keys.LR: lr_schedule(state.step)}
    gns = state.gns
    if use_gns:
      g2, trace = noise_scale.two_batch_estimates(small_sq, big_sq, b / k, float(b))
      gns = noise_scale.update(state.gns, g2, trace, decay)
      out.update({keys.GNS_G2: g2, keys.GNS_TRACE: trace})

    updates, new_opt_state = opt.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    # A non-finite step is never applied, whatever train.nan_policy says: the state stays the
    # last good one and the host decides (at its next sync) whether to stop or go on.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(
        step=state.step + 1,
        params=keep(new_params, state.params),
        opt_state=keep(new_opt_state, state.opt_state),
        gns=keep(gns, state.gns),
        bad_steps=state.bad_steps + (~finite).astype(jnp.int32),
        first_bad_step=jnp.where((state.first_bad_step < 0) & ~finite, state.step,
                                 state.first_bad_step),
    )
    return new_state, out

  return step_fn


def make_eval_step(model: nn.Module):
  """(params, summed loss so far, batch [B, T+1]) -> the sum plus this batch's mean loss; the
  running sum is donated, so the eval batches' programs form one chain (`mean_eval_loss`)."""
  loss_fn = make_loss_fn(model)
  return jax.jit(lambda params, total, tokens_BT1: total + loss_fn(params, tokens_BT1),
                 donate_argnums=1)


def mean_eval_loss(eval_fn, params, batches, mesh) -> float:
  """The mean over `batches` (host arrays, this process's rows) of each batch's mean loss.

  At most EVAL_IN_FLIGHT eval programs are dispatched before the host waits for them. With
  every batch dispatched at once, the first evaluation of a CPU mesh aborted (one process x 8
  devices, 100 eval batches: "Expected 8 threads to join the rendezvous, but only 7") or hung
  (two processes x 4 devices, 50 or 100 batches); chaining the programs through the running
  sum alone still hung two processes at 100. Waiting every few batches keeps the collectives
  in flight as few as the training loop's (issue #27, tests/test_multiprocess_train.py).
  """
  total = jnp.zeros((), jnp.float32)
  for i, batch in enumerate(batches):
    total = eval_fn(params, total, sharding.global_batch(batch, mesh))
    if (i + 1) % EVAL_IN_FLIGHT == 0:
      jax.block_until_ready(total)
  return float(total) / len(batches)


def _state_init(config, model, opt, mesh):
  """(init_fn: rng -> boxed TrainState, the state's shardings, the abstract sharded state)."""
  n_ctx = config.model.n_ctx

  def init_fn(rng):
    params = model.init(rng, jnp.zeros((1, n_ctx), jnp.int32))["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=opt.init(params),
        rng=jax.random.fold_in(rng, 1), gns=noise_scale.init(),
        bad_steps=jnp.zeros((), jnp.int32), first_bad_step=jnp.full((), -1, jnp.int32))

  rng = jax.random.key(0)  # outside the mesh: it may be an abstract TPU slice (compile_cli)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    boxed = jax.eval_shape(init_fn, rng)
    shardings = sharding.logical_shardings(boxed, mesh)
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      sharding.strip_boxes(boxed), shardings)
  return init_fn, shardings, abstract


def abstract_state(config, model, opt, mesh):
  """The train state as sharded ShapeDtypeStructs: for compiling a step (e.g. for its memory
  analysis, bench/bench_memory.py) without allocating anything."""
  return _state_init(config, model, opt, mesh)[2]


def init_state(config, model, opt, mesh, rng):
  """(abstract state with shardings, sharded initial state): init runs directly sharded."""
  init_fn, shardings, abstract = _state_init(config, model, opt, mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    state = jax.jit(lambda r: sharding.strip_boxes(init_fn(r)), out_shardings=shardings)(rng)
  return abstract, state


def run_facts(config, counts: accounting.Counts, data_info) -> dict[str, Any]:
  """Static facts of a run, written to config.json (the fitter reads these)."""
  return {
      **counts.as_dict(),
      "batch_sequences": int(config.train.batch_size),
      "batch_tokens": int(config.train.batch_size * config.model.n_ctx),
      "micro_batches": config_lib.num_micro_batches(config),
      "n_ctx": int(config.model.n_ctx),
      "vocab_size": int(config.model.vocab_size),
      "dataset": data_info.name,
      "dataset_version": data_info.version,
      "dataset_tokens": int(data_info.dataset_tokens),
      "num_steps": int(config.train.num_steps),
      "arch": config.model.arch,
  }


def _versions() -> dict[str, str]:
  import flax, optax as _optax, orbax.checkpoint as ocp
  import scaling_jax
  return {"scaling_jax": scaling_jax.__version__, "jax": jax.__version__,
          "flax": flax.__version__, "optax": _optax.__version__, "orbax": ocp.__version__}


def _devices() -> dict[str, Any]:
  d = jax.devices()
  return {"platform": d[0].platform, "device_kind": d[0].device_kind, "count": len(d),
          "process_count": jax.process_count()}


class _StopFlag:
  """Set by SIGTERM/SIGINT (preemption, SLURM timeout, Ctrl-C); checked at step boundaries."""

  def __init__(self):
    self.signal = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread
        pass
    return self

  def _handle(self, signum, frame):
    self.signal = signum

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _stop_signal(signum: int | None) -> int | None:
  """The stop signal any process got, the same answer on all (None if none): one host's
  SIGTERM stops every host at the same step, and process 0 can record which signal it was."""
  if jax.process_count() == 1:
    return signum
  from jax.experimental import multihost_utils
  got = multihost_utils.process_allgather(np.array([signum or 0], np.int32))
  return int(np.max(got)) or None


def start_branch(config, abstract, state: TrainState, train_iter) -> TrainState:
  """The state of a branch (`train.init_from`): the parameters and optimizer state of that
  run's checkpoint `train.init_step`, with this run's own step 0, fresh GNS EMAs and its own
  LR schedule. `train_iter` is moved to where that run's data stopped: the same shuffled
  stream of sequences, cut into this run's batches (rounded up to a whole batch), so a branch
  never repeats what its base trained on."""
  parent, extra, _ = checkpoint.restore_from_run(config.train.init_from,
                                                 int(config.train.init_step), abstract)
  there, here = extra["data"], train_iter.get_state()
  differ = [k for k in ("n_sequences", "n_ctx", "seed", "shuffle") if there.get(k) != here.get(k)]
  if differ:
    raise config_lib.ConfigError(
        f"train.init_from={config.train.init_from} was trained on other data ({differ} differ: "
        f"{[there.get(k) for k in differ]} there, {[here.get(k) for k in differ]} here); a "
        "branch keeps its base run's data, n_ctx and seed")
  if "next_index" not in here["grain"]:
    raise config_lib.ConfigError("a branch (train.init_from) positions its data by batch index; "
                                 "set config.data.worker_count=0")
  seen = int(there["batches"]) * int(there["batch_size"])  # sequences the base trained on
  k = -(-seen // int(config.train.batch_size))
  train_iter.set_state({**here, "batches": k, "grain": {**here["grain"], "next_index": k}})
  return state.replace(params=parent.params, opt_state=parent.opt_state)


def prepare_workdir(config, workdir: str, facts: dict, is_main: bool) -> None:
  """Writes config.json, or checks that an existing run in `workdir` has the same config."""
  existing = rundir.read_config(workdir)
  resolved = config.to_dict()
  if existing is not None:
    diff = config_lib.config_diff(existing.get("config", {}), resolved)
    if diff:
      raise config_lib.ConfigError(
          f"workdir {workdir} holds a run with a different config ({'; '.join(diff[:3])}); "
          "use a new --workdir, or delete that run to start over")
  if is_main:
    rundir.makedirs(workdir)  # local or gs:// (rundir)
    rundir.write_json_atomic(os.path.join(workdir, rundir.CONFIG_FILE), {
        "config": resolved, "facts": facts, "versions": _versions(), "devices": _devices()})


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains the model `config` describes, resuming from `workdir` if it holds a checkpoint.

  Returns the last logged metrics. Raises TrainingDiverged on NaN/Inf (status 'failed');
  on SIGTERM/SIGINT saves a checkpoint and returns with status 'preempted'.
  """
  from scaling_jax import data as data_lib

  config_lib.validate(config, num_devices=jax.device_count())
  model_lib.check_shardings(config, sharding.make_mesh(config))  # never a silent replication
  storage.watch(workdir)  # a gs:// run counts its storage retries and says when slowed (#27)
  try:
    preflight.check(config, workdir)  # writable workdir, disk space, code version (issue #10)
    return _prepare_and_run(config, workdir, data_lib)
  finally:
    storage.finish()  # one closing line if anything was retried or slow


def _prepare_and_run(config, workdir: str, data_lib) -> dict[str, Any]:
  """train_and_evaluate once the config is checked: the run directory, then `_run`."""
  is_main = jax.process_index() == 0
  data_info = data_lib.prepare(config)
  counts = accounting.counts(config.model)
  facts = run_facts(config, counts, data_info)
  prepare_workdir(config, workdir, facts, is_main)
  if is_main:
    rundir.write_status(workdir, "running")

  try:
    return _run(config, workdir, data_lib, counts, is_main)
  except Exception as e:  # restore, data or init failures too: never leave 'running' behind
    if distributed.is_peer_failure(e):  # a collective on a dead peer: never blame the disk
      reason = rundir.describe_error(e, limit=300)
      raise distributed.PeerLost(checkpoint.record_peer_lost(workdir, reason)) from e
    if is_main and not isinstance(e, TrainingDiverged) and (
        rundir.read_status(workdir)["status"] == "running"):
      rundir.mark_failed(workdir, e)
    raise


def _run(config, workdir: str, data_lib, counts: accounting.Counts, is_main: bool):
  """The body of train_and_evaluate once the run directory is set up."""
  mesh = sharding.make_mesh(config)
  model = model_lib.build(config.model)
  num_steps = int(config.train.num_steps)
  opt, lr_schedule = optim.make(config.optim, num_steps, counts.n_params)
  abstract, state = init_state(config, model, opt, mesh, jax.random.key(config.seed))

  train_iter = data_lib.make_train_iterator(
      config, process_index=jax.process_index(), process_count=jax.process_count())
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, rundir.CHECKPOINT_DIR), config.train)
  time_s, pending_losses = 0.0, []
  restored = ckpt.restore_latest(abstract)
  if restored is not None:
    state, extra = restored
    train_iter.set_state(extra["data"])
    time_s = float(extra.get("time_s", 0.0))
    pending_losses = list(extra.get("pending_losses", []))  # a log window cut by preemption
  elif config.train.init_from:
    state = start_branch(config, abstract, state, train_iter)
  start_step = int(state.step)
  writer = metrics.MetricsWriter(workdir, enabled=is_main)
  writer.truncate_after(start_step)

  eval_sets = {name: data_lib.make_eval_batches(
      config, name, process_index=jax.process_index(), process_count=jax.process_count())
      for name in config.data.eval_sets}
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
    step_fn = jax.jit(make_train_step(config, model, opt, lr_schedule, mesh), donate_argnums=0)
    eval_fn = make_eval_step(model)

  peak, peak_source = hardware.peak_flops_per_device(
      config.model.dtype, config.train.peak_flops_per_device)
  # On CPU the measured peak is one host's (simulated devices share its cores).
  on_cpu = jax.devices()[0].platform == "cpu"
  host_peak = peak * (jax.process_count() if on_cpu else jax.device_count())
  tokens_per_step = config.train.batch_size * config.model.n_ctx

  def evaluate(state) -> dict[str, float]:
    out = {}
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
      for name, batches in eval_sets.items():
        out[keys.eval_loss(name)] = mean_eval_loss(eval_fn, state.params, batches, mesh)
    return out

  def save(state, time_s, pending_losses):
    ckpt.save(int(state.step), state, {
        "data": train_iter.get_state(), "time_s": time_s,
        "pending_losses": [float(x) for x in jax.device_get(pending_losses)]})

  progress = _progress(config, start_step, num_steps, is_main)
  last: dict[str, Any] = {}
  window_start, window_steps = time.perf_counter(), 0
  status, stop_signal = "finished", None
  stop_key = keys.eval_loss(config.data.eval_sets[0]) if config.data.eval_sets else None
  stop_loss = float(config.train.stop_loss)
  stopped_at = None  # the eval loss at or below train.stop_loss that ended the run early
  with _StopFlag() as stop:
    step = start_step
    try:
      while step < num_steps:
        batch = sharding.global_batch(next(train_iter), mesh)
        with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
          state, out = step_fn(state, batch)
        step += 1
        window_steps += 1
        pending_losses.append(out[keys.LOSS])
        if step == start_step + 1:  # keep compilation out of the throughput figures
          jax.block_until_ready(out[keys.LOSS])
          compile_s = time.perf_counter() - window_start
          time_s += compile_s
          window_start, window_steps = time.perf_counter(), 0
        log_now = step % config.train.log_every == 0 or step == num_steps
        eval_now = step % config.train.eval_every == 0 or step == num_steps
        ckpt_now = step % config.train.ckpt_every == 0 or step == num_steps
        # Several processes agree on stopping through a collective, every few steps (all at
        # the same steps), so a SIGTERM grace period is never outlived by a long log interval.
        stop_signal = _stop_signal(stop.signal) if (
            jax.process_count() == 1 or log_now or step % PREEMPTION_SYNC_EVERY == 0) else None
        preempted = stop_signal is not None
        if log_now or eval_now or ckpt_now or preempted:
          bad = int(state.bad_steps)
          if bad and (config.train.nan_policy == "stop" or bad > config.train.max_skipped_steps):
            first_bad = int(state.first_bad_step)
            bad_metrics = {k: float(v) for k, v in jax.device_get(out).items()}
            msg = (f"non-finite loss or gradient at step {first_bad} ({bad} bad step(s); "
                   f"last step's metrics {bad_metrics}); the last good checkpoint in "
                   f"{ckpt.directory} is kept. Lower optim.lr, raise optim.warmup_steps, or set "
                   f"train.nan_policy=skip")
            if is_main:
              rundir.write_status(workdir, "failed", step=first_bad, error=msg,
                                  metrics=bad_metrics)
            raise TrainingDiverged(msg)
        if log_now:
          out_host = jax.device_get(out)
          now = time.perf_counter()
          elapsed = now - window_start
          time_s += elapsed
          tokens_per_s = window_steps * tokens_per_step / elapsed if window_steps else float("nan")
          flops_per_s = tokens_per_s * counts.flops_per_token_exact
          record = {
              keys.STEP: step, keys.TOKENS: step * tokens_per_step,
              keys.FLOPS: step * tokens_per_step * counts.flops_per_token, keys.TIME_S: time_s,
              # float64 mean: identical whether the window was cut by a resume or not
              keys.LOSS: float(np.mean(np.asarray(jax.device_get(pending_losses), np.float64))),
              keys.LR: float(out_host[keys.LR]), keys.GRAD_NORM: float(out_host[keys.GRAD_NORM]),
              keys.TOKENS_PER_S: tokens_per_s, keys.FLOPS_PER_S: flops_per_s,
              keys.MFU: flops_per_s / host_peak, keys.EPOCH: float(train_iter.epoch),
              keys.BAD_STEPS: int(state.bad_steps),
              **storage.metrics(),  # gs:// runs: retries and slow writes so far (#27)
          }
          if config.gns.enabled:
            g2_ema, trace_ema, b_seq = (float(x) for x in noise_scale.smoothed(state.gns))
            if g2_ema <= 0:  # early EMAs can put |G|^2 at or below zero: no estimate yet
              b_seq = float("nan")
            record.update({
                keys.GNS_G2: float(out_host[keys.GNS_G2]),
                keys.GNS_TRACE: float(out_host[keys.GNS_TRACE]),
                keys.GNS_G2_EMA: g2_ema, keys.GNS_TRACE_EMA: trace_ema,
                keys.B_SIMPLE_SEQS: b_seq, keys.B_SIMPLE_TOKENS: b_seq * config.model.n_ctx,
            })
          if eval_now:
            record.update(evaluate(state))
            stopped_at = _stop(record, stop_key, stop_loss)
          writer.write(record)
          last = record
          progress.update(step, record)
          pending_losses, window_steps = [], 0
          window_start = time.perf_counter()
        elif eval_now:
          record = {keys.STEP: step, **evaluate(state)}
          stopped_at = _stop(record, stop_key, stop_loss)
          writer.write(record)
          last.update(record)
        # time_s so far, including a log window cut short
        if ckpt_now or preempted or stopped_at is not None:
          save(state, time_s + (0.0 if log_now else time.perf_counter() - window_start),
               pending_losses)
          if not preempted and stopped_at is None and step < num_steps:
            # A signal that came during this step's log, eval or save stops the run at the
            # step just saved, not one step and a second save later (bench/bench_faults.py:
            # 17 of 20 random SIGTERMs landed in a save).
            stop_signal = _stop_signal(stop.signal)
            preempted = stop_signal is not None
        if preempted:
          status = "preempted"
          break
        if stopped_at is not None:
          break
      ckpt.wait()  # an async save that fails raises here, inside the try
    except Exception as e:  # disk full, I/O errors...: status 'failed' with the error (#10)
      if is_main and not isinstance(e, TrainingDiverged) and not distributed.is_peer_failure(e):
        rundir.mark_failed(workdir, e, step=step)
      raise
    finally:
      progress.close()
      writer.close()
  if is_main:
    rundir.write_status(workdir, status, step=int(state.step),
                        signal=stop_signal if status == "preempted" else None,
                        **({"stopped_at_loss": stopped_at} if stopped_at is not None else {}))
  ckpt.close()
  last["status"] = status
  last["peak_flops_source"] = peak_source
  return last


def _stop(record: dict, key: str | None, stop_loss: float) -> float | None:
  """The eval loss that reached train.stop_loss (ending the run), or None."""
  if key is None or stop_loss <= 0 or key not in record:
    return None
  return record[key] if record[key] <= stop_loss else None


class _progress:
  """A tqdm bar with ETA on the main process; silent elsewhere or when disabled."""

  def __init__(self, config, start: int, total: int, enabled: bool):
    self.bar = None
    if enabled and config.train.progress:
      from tqdm.auto import tqdm
      self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                      desc=f"train N={accounting.counts(config.model).n_params:,}")
    self.n = start

  def update(self, step: int, record: dict) -> None:
    if self.bar is None:
      return
    self.bar.update(step - self.n)
    self.n = step
    post = {"loss": f"{record[keys.LOSS]:.3f}", "tok/s": f"{record[keys.TOKENS_PER_S]:.0f}"}
    if keys.B_SIMPLE_TOKENS in record:
      post["B_simple"] = f"{record[keys.B_SIMPLE_TOKENS]:.3g}"
    self.bar.set_postfix(post)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
