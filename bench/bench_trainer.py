"""The trainer's throughput as a user sees it: the tokens/s `scaling-jax train` logs, with GNS
on and off, against eager PyTorch and the bare jitted step, interleaved in one run.

  pip install torch   # optional bench extra: pip install -e '.[bench]'
  python bench/bench_trainer.py [--shapes 2x64,4x128,4x256,6x384] [--rounds 2]
  python bench/bench_trainer.py --profile 4x128     # where one trainer run's time goes
  python bench/bench_trainer.py --levers 6x384 [--lever-set passes|gns|gns-loop]  # step variants
  python bench/bench_trainer.py --xla-flags 6x384   # XLA CPU flag sets, one process each

Each round runs, for every shape in turn: `scaling-jax train` (a fresh process and workdir,
configs/cpu_demo.py with its logging, loader, eval, checkpoints and progress bar at their
defaults) with GNS on, the same with GNS off, the nanoGPT-style PyTorch model of
bench_torch.py and the bare jitted step of bench_train.py (GNS on, each step waited for).
The trainer's figure is the `tokens_per_s` it logs for every log window after the first
(the first follows compilation); PyTorch's and the bare step's are the tokens of a window of
the same number of steps over its wall time, after one untimed step. Median and range over
the rounds; MFU against the f32 matmul peak measured in this process (as bench_train.py).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import importlib.util
import pathlib
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import REPO, environment, publish  # noqa: E402

from scaling_jax import cli  # noqa: E402

cli.skip_absent_tpu()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from scaling_jax import accounting, config as config_lib, hardware, metrics  # noqa: E402
from scaling_jax import model as model_lib  # noqa: E402
from scaling_jax import metric_keys as keys, train  # noqa: E402
from bench_torch import TorchStepper  # noqa: E402  (imports torch only when built)
from bench_train import Stepper, interleaved, make_config, paired_ratio  # noqa: E402

HEADING = "## Trainer throughput vs PyTorch (CPU, issue 20)"
PROFILE_HEADING = "## Trainer time breakdown (CPU, issue 20)"
XLA_FLAGS_HEADING = "## Trainer levers: XLA CPU flags (issue 20)"
# --levers: set -> (heading, {variant: overrides of make_config's config, as "section.field"}).
# The first variant is the baseline. passes: train.max_pass_tokens, tokens per device in one
# forward/backward pass (-1: train.CPU_PASS_TOKENS; GNS on makes 2 micro-batches of 2048).
LEVER_SETS = {
    "passes": ("## Trainer levers: the pass layout (CPU, issue 20)", {
        "default (1024 tokens per pass)": {},
        "512 tokens per pass": {"train.max_pass_tokens": 512},
        "2048 tokens per pass (one per micro-batch)": {"train.max_pass_tokens": 2048}}),
    "gns": ("## GNS overhead of the step at the trainer's shapes (CPU, issue 20)", {
        "GNS off": {"gns.enabled": False}, "GNS on": {}}),
}
# --lever-set gns-loop: not config overrides but the gradient part of the step in three loop
# layouts (gns_loop_levers).
GNS_LOOP_HEADING = "## Trainer levers: the GNS accumulation loop (CPU, issue 20)"
SHAPE_KW = dict(n_ctx=128, vocab=4096, batch=32)  # cpu_demo.py's batch, context and vocab
# n_layer x d_model -> steps per log window. configs/cpu_demo.py logs every 20 steps; the two
# large shapes log more often so that a round stays near a minute (a log step's host work, a
# device_get of a few scalars and one JSON line, is milliseconds against windows of 10-20 s).
SHAPES = {"2x64": 20, "4x128": 20, "4x256": 10, "6x384": 5}
MODEL_FIELDS = ("n_layer", "d_model", "n_heads", "d_ff", "n_ctx", "vocab_size")


def parse_shape(text: str) -> tuple[int, int]:
  n_layer, d_model = (int(x) for x in text.lower().split("x"))
  return n_layer, d_model


class TrainerRun:
  """`scaling-jax train` in its own process, `windows` log windows per round."""

  def __init__(self, n_layer: int, d_model: int, gns: bool, log_every: int, windows: int = 2):
    cfg = make_config(n_layer, d_model, gns=gns, **SHAPE_KW)  # the shape rule of bench_train
    steps = log_every * windows
    self.overrides = [f"--config.model.{f}={cfg.model[f]}" for f in MODEL_FIELDS] + [
        f"--config.gns.enabled={gns}", f"--config.train.num_steps={steps}",
        f"--config.train.log_every={log_every}", f"--config.optim.warmup_steps={steps // 4}"]
    self.tokens_per_s: list[float] = []  # one per steady log window
    self.mfu_logged: list[float] = []
    self.outside_loop_s: list[float] = []  # process wall time minus the logged training time

  def run_round(self) -> None:
    workdir = tempfile.mkdtemp(prefix="bench_trainer_")
    try:
      t0 = time.perf_counter()
      proc = subprocess.run(
          [sys.executable, "-m", "scaling_jax.cli", "train", "--config",
           str(REPO / "configs" / "cpu_demo.py"), "--workdir", workdir, *self.overrides],
          cwd=REPO, capture_output=True, text=True)
      wall = time.perf_counter() - t0
      if proc.returncode != 0:
        raise RuntimeError(f"scaling-jax train failed ({proc.returncode}): {proc.stderr[-2000:]}")
      logged = [r for r in metrics.read_metrics(workdir) if keys.TOKENS_PER_S in r]
      steady = logged[1:]  # the first window starts right after compilation
      self.tokens_per_s += [r[keys.TOKENS_PER_S] for r in steady]
      self.mfu_logged += [r[keys.MFU] for r in steady]
      self.outside_loop_s.append(wall - logged[-1][keys.TIME_S])
    finally:
      shutil.rmtree(workdir, ignore_errors=True)


class WindowRun:
  """An in-process stepper (PyTorch's or the bare jitted step) timed over windows of steps."""

  def __init__(self, stepper, steps: int, tokens_per_step: int):
    self.stepper, self.steps, self.tokens = stepper, steps, tokens_per_step
    self.tokens_per_s: list[float] = []

  def run_round(self) -> None:
    self.stepper.run(1)  # the previous runner's threads may still be spinning
    self.stepper.times = []
    self.stepper.run(self.steps, record=True)
    self.tokens_per_s.append(self.steps * self.tokens / float(np.sum(self.stepper.times)))


def summary(values: list[float]) -> str:
  """'median (min-max)' of tokens/s."""
  return f"{np.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def paired(a: list[float], b: list[float]) -> float:
  """Median over rounds of a/b; the trainer's windows are averaged per round first."""
  a, b = np.asarray(a), np.asarray(b)
  if len(a) != len(b):
    a = a.reshape(len(b), -1).mean(axis=1)
  return float(np.median(a / b))


def bench_shape(name: str, log_every: int, rounds: int, bare: bool) -> dict:
  n_layer, d_model = parse_shape(name)
  cfg = make_config(n_layer, d_model, gns=True, **SHAPE_KW)
  tokens = SHAPE_KW["batch"] * SHAPE_KW["n_ctx"]
  runs = {"on": TrainerRun(n_layer, d_model, True, log_every),
          "off": TrainerRun(n_layer, d_model, False, log_every),
          "torch": WindowRun(TorchStepper(n_layer, d_model, cfg.model.n_heads, **SHAPE_KW),
                             log_every, tokens)}
  if bare:
    runs["bare"] = WindowRun(Stepper(cfg), log_every, tokens)
  for r in range(rounds):
    for run in runs.values():
      run.run_round()
    print(f"{name} round {r + 1}: " + ", ".join(
        f"{k} {run.tokens_per_s[-1]:,.0f}" for k, run in runs.items()), flush=True)
  counts = accounting.counts(cfg.model)
  return {"name": name, "n_params": counts.n_params, "log_every": log_every,
          "flops_per_token": counts.flops_per_token_exact, "runs": runs}


def levers(name: str, lever_set: str, rounds: int) -> list[str]:
  """The train step (GNS on unless a variant says otherwise) in each variant of LEVER_SETS,
  interleaved: ms per step and the median over rounds of the per-round ratio to the first."""
  n_layer, d_model = parse_shape(name)
  steppers = {}
  for label, overrides in LEVER_SETS[lever_set][1].items():
    cfg = make_config(n_layer, d_model, gns=True, **SHAPE_KW)
    cfg.update_from_flattened_dict(overrides)
    steppers[label] = Stepper(cfg)
  interleaved(steppers, rounds=rounds)
  base = next(iter(steppers.values()))
  lines = [f"`python bench/bench_trainer.py --levers {name} --lever-set {lever_set} --rounds "
           f"{rounds}`: the jitted train step at {name} (batch 32 x 128, vocab 4096, f32), each "
           f"variant compiled separately, interleaved ({rounds} rounds of 2 timed steps), "
           "median; the ratio is the median over rounds of the per-round ratio.", "",
           "| variant | step (ms) | vs the first |", "| --- | --- | --- |"]
  lines += [f"| {label} | {s.result()['step_s'] * 1e3:.0f} | {paired_ratio(base, s):.3f}x |"
            for label, s in steppers.items()]
  return lines


class GradientTimer:
  """A jitted (params, batch) -> gradient-part function, timed call by call as Stepper times
  steps (run(n, record) for `interleaved`)."""

  def __init__(self, fn, params, batches):
    self.fn, self.params, self.batches = jax.jit(fn), params, batches
    self.calls, self.times = 0, []

  def run(self, steps: int, record: bool = False) -> None:
    for _ in range(steps):
      t0 = time.perf_counter()
      out = self.fn(self.params, self.batches[self.calls % len(self.batches)])
      jax.block_until_ready(out)
      self.calls += 1
      if record:
        self.times.append(time.perf_counter() - t0)


def one_scan_micro_batch_gradients(grad_fn, params, pieces_KPMT1):
  """The lever: `train.micro_batch_gradients` as one scan over all k x p passes, the running
  micro-batch gradient in the carry and its squared norm taken (lax.cond) after every p-th pass,
  instead of a scan of micro-batches each scanning its passes."""
  k, p = pieces_KPMT1.shape[:2]
  pieces = pieces_KPMT1.reshape(k * p, *pieces_KPMT1.shape[2:])

  def body(carry, xs):
    l_acc, g_acc, g_mb, sq_acc = carry
    i, piece_MT1 = xs
    l, g = grad_fn(params, piece_MT1)
    g_mb = jax.tree.map(jnp.add, g_mb, g)
    last = i % p == p - 1
    sq_acc = sq_acc + jax.lax.cond(last, lambda t: train._sq_norm(t) / p**2,
                                   lambda t: jnp.zeros((), jnp.float32), g_mb)
    g_mb = jax.tree.map(lambda m: jnp.where(last, jnp.zeros_like(m), m), g_mb)
    return (l_acc + l, jax.tree.map(jnp.add, g_acc, g), g_mb, sq_acc), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  l_sum, g_sum, _, sq_sum = jax.lax.scan(
      body, (jnp.zeros((), jnp.float32), zeros, zeros, jnp.zeros((), jnp.float32)),
      (jnp.arange(k * p), pieces))[0]
  return l_sum, g_sum, sq_sum


def gns_loop_levers(name: str, rounds: int) -> list[str]:
  """The gradient part of the step at SHAPE (loss and summed gradient over the batch, no
  optimizer) in three layouts, interleaved: GNS off (one scan over the k x p passes), GNS on as
  the trainer does it (`train.micro_batch_gradients`), and GNS on in one scan (the lever). The
  two GNS-on layouts must agree on the loss, the gradient and the micro-batch norms."""
  n_layer, d_model = parse_shape(name)
  cfg = make_config(n_layer, d_model, gns=True, **SHAPE_KW)
  stepper = Stepper(cfg)  # the trainer's params, mesh and batches
  model = model_lib.build(cfg.model)
  grad_fn = jax.value_and_grad(train.make_loss_fn(model))
  k = config_lib.num_micro_batches(cfg)
  p = train.passes_per_micro_batch(cfg, stepper.mesh)
  off = make_config(n_layer, d_model, gns=False, **SHAPE_KW)
  p_off = train.passes_per_micro_batch(off, stepper.mesh)  # GNS off: one micro-batch
  split = lambda b: jax.vmap(lambda mb: train.interleave(mb, p))(train.interleave(b, k))
  variants = {
      f"GNS off: one scan over {p_off} passes (the trainer)":
          lambda prm, b: train.summed_value_and_grad(grad_fn, prm, train.interleave(b, p_off)),
      f"GNS on, the trainer: a scan of {k} micro-batches, each a scan of {p} passes":
          lambda prm, b: train.micro_batch_gradients(grad_fn, prm, split(b)),
      f"GNS on, the lever: one scan over {k * p} passes, a norm every {p}":
          lambda prm, b: one_scan_micro_batch_gradients(grad_fn, prm, split(b)),
  }
  with stepper._context():
    timers = {label: GradientTimer(fn, stepper.state.params, stepper.batches)
              for label, fn in variants.items()}
    interleaved(timers, rounds=rounds)
    trainer, lever = (timers[label].fn(stepper.state.params, stepper.batches[0])
                      for label in list(variants)[1:])
  same = all(np.allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.max(np.abs(a))))
             for a, b in zip(jax.tree.leaves(trainer), jax.tree.leaves(lever)))
  base = next(iter(timers.values()))
  lines = [f"`python bench/bench_trainer.py --levers {name} --lever-set gns-loop --rounds "
           f"{rounds}`: the gradient part of the train step at {name} (loss and summed gradient "
           f"of the 32 x 128 batch, no optimizer; vocab 4096, f32), each layout jitted "
           f"separately, interleaved ({rounds} rounds of 2 timed calls), median; the ratio is "
           "the median over rounds of the per-round ratio. The two GNS-on layouts give the "
           f"same loss, gradient and micro-batch norms: {'yes' if same else 'NO'} (to 1e-4 "
           "relative, 1e-5 of each array's largest entry: the sums run in other orders).",
           "", "| layout | ms | vs GNS off |", "| --- | --- | --- |"]
  lines += [f"| {label} | {1e3 * float(np.median(t.times)):.0f} | {paired_ratio(base, t):.3f}x |"
            for label, t in timers.items()]
  return lines


# name -> XLA_FLAGS of a worker process (the flags are read when the backend starts).
XLA_FLAG_SETS = {
    "default": "",
    "oneDNN ops (--xla_cpu_use_onednn=true)": "--xla_cpu_use_onednn=true",
    "XNNPACK ops (--xla_cpu_use_xnnpack=true)": "--xla_cpu_use_xnnpack=true",
    "concurrency-optimized scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=true",
}


class WorkerStepper:
  """A Stepper (GNS on) in its own process with its own XLA_FLAGS, driven over a pipe so that
  processes with different flags can be timed in turn; `times` as Stepper's."""

  def __init__(self, name: str, xla_flags: str):
    flags = " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), xla_flags) if f)
    env = {**os.environ, "XLA_FLAGS": flags} if flags else dict(os.environ)
    self.proc = subprocess.Popen([sys.executable, __file__, "--worker", name], env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self.times: list[float] = []
    self._ask("0")

  def _ask(self, line: str) -> list[float]:
    self.proc.stdin.write(line + "\n")
    self.proc.stdin.flush()
    reply = self.proc.stdout.readline()
    if not reply:
      raise RuntimeError(f"worker {self.proc.args} exited ({self.proc.wait()})")
    return json.loads(reply)

  def run(self, steps: int, record: bool = False) -> None:
    times = self._ask(str(steps))
    if record:
      self.times += times

  def result(self) -> dict:
    return {"step_s": float(np.median(self.times))}

  def close(self) -> None:
    self.proc.stdin.close()
    self.proc.wait()


def worker(name: str) -> int:
  """The other end of WorkerStepper: a line `n` runs n steps and answers their times."""
  n_layer, d_model = parse_shape(name)
  stepper = Stepper(make_config(n_layer, d_model, gns=True, **SHAPE_KW))
  for line in sys.stdin:
    stepper.times = []
    stepper.run(int(line), record=True)
    print(json.dumps(stepper.times), flush=True)
  return 0


def xla_flags(name: str, rounds: int) -> list[str]:
  """The train step at `name` under each of XLA_FLAG_SETS, one process each, interleaved."""
  workers = {label: WorkerStepper(name, flags) for label, flags in XLA_FLAG_SETS.items()}
  try:
    interleaved(workers, rounds=rounds)
  finally:
    for w in workers.values():
      w.close()
  base = workers["default"]
  lines = [f"`python bench/bench_trainer.py --xla-flags {name} --rounds {rounds}`: the jitted "
           f"train step at {name} (GNS on, batch 32 x 128, vocab 4096, f32) in one process per "
           f"XLA_FLAGS setting, interleaved ({rounds} rounds of 2 timed steps), median.", "",
           "| XLA_FLAGS | step (ms) | vs default |", "| --- | --- | --- |"]
  lines += [f"| {label} | {w.result()['step_s'] * 1e3:.0f} | {paired_ratio(base, w):.3f}x |"
            for label, w in workers.items()]
  return lines


def row_line(row: dict, peak: float, bare: bool) -> str:
  """One shape's line of the table."""
  r = row["runs"]
  on, off, pt = r["on"].tokens_per_s, r["off"].tokens_per_s, r["torch"].tokens_per_s
  mfu = float(np.median(on)) * row["flops_per_token"] / peak
  line = (f"| {row['name']} | {row['n_params'] / 1e6:.2f}M | {row['log_every']} | "
          f"{summary(on)} | {summary(off)} | {summary(pt)} | {paired(on, pt):.2f} / "
          f"{paired(off, pt):.2f} | {paired(off, on) - 1:+.1%} |")
  if bare:
    line += f" {summary(r['bare'].tokens_per_s)} | {paired(on, r['bare'].tokens_per_s):.2f} |"
  return line + f" {mfu:.1%} ({np.median(r['on'].mfu_logged):.1%}) |"


def section(rows: list[dict], peak: float, rounds: int, bare: bool, load: tuple,
            seconds: float, argv: list[str]) -> list[str]:
  cmd = " ".join(["python bench/bench_trainer.py", *(a for a in argv if a != "--no-write")])
  torch_stepper = rows[0]["runs"]["torch"].stepper
  lines = [HEADING, "", f"`{cmd}` on {environment()}; torch {torch_stepper.version} "
           f"({torch_stepper.threads} threads); load average "
           f"(1 min) {load[0]:.1f} before, {load[1]:.1f} after; {seconds / 60:.0f} min in all.", "",
           "What a user sees: the `tokens_per_s` that `scaling-jax train --config "
           "configs/cpu_demo.py` logs (its own process, its loader, eval, checkpoints and "
           "progress bar at their defaults; batch 32 x 128, vocab 4096, f32, AdamW) for every "
           "log window after the first, against the nanoGPT-style eager PyTorch model of "
           "bench_torch.py and the bare jitted step of bench_train.py (GNS on) timed over "
           f"windows of as many steps, all interleaved, {rounds} rounds: median (min-max). "
           "Ratios are medians over rounds of the per-round ratio. GNS overhead = "
           "off/on - 1 of the trainer's tokens/s. MFU: exact FLOPs per token x tokens/s over "
           f"the f32 matmul peak measured in this process ({peak / 1e9:.0f} GFLOP/s, jnp.dot "
           "1024^2); the trainer's own logged MFU uses its shorter in-process measurement.", "",
           "| shape | N | log every | train, GNS on | train, GNS off | PyTorch eager | "
           "vs PyTorch, on / off | GNS overhead |" + (" bare step (GNS on) | train on / bare |"
                                                if bare else "") + " MFU on (logged) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if bare else "")
           + " --- |"]
  lines += [row_line(row, peak, bare) for row in rows]
  outside = [s for row in rows for k in ("on", "off") for s in row["runs"][k].outside_loop_s]
  lines += ["", "Outside the logged windows each trainer process spent "
            f"{np.median(outside):.0f} s (median; {min(outside):.0f}-{max(outside):.0f} s): "
            "start-up, data, init, the peak measurement, compilation, the final eval and "
            "checkpoint."]
  return lines


# Where the trainer's time goes: (label, file suffix, function) in cProfile's cumulative times.
# The host queues steps without waiting (async dispatch); it waits for them where it first
# reads a device value (`int(state.bad_steps)` on a log step): jax's Array._value.
PROFILE_PIECES = [
    ("the whole run (train_and_evaluate)", "scaling_jax/train.py", "train_and_evaluate"),
    ("compiling (step, eval, init, peak)", "jax/_src/compiler.py", "backend_compile_and_load"),
    ("the matmul peak measurement (for MFU)", "scaling_jax/hardware.py", "measure_matmul_peak"),
    ("waiting for the queued steps (reads of device values)", "jax/_src/array.py", "_value"),
    ("the loader (next batch)", "data/loader.py", "__next__"),
    ("host-to-device batch", "scaling_jax/sharding.py", "global_batch"),
    ("eval (4 batches; its compile included)", "scaling_jax/train.py", "evaluate"),
    ("checkpoint save", "scaling_jax/train.py", "save"),
    ("metrics line (JSON + TensorBoard)", "scaling_jax/metrics.py", "write"),
    ("progress bar", "scaling_jax/train.py", "update"),
]


def profile_trainer(name: str, steps: int) -> list[str]:
  """One in-process `train_and_evaluate` of configs/cpu_demo.py at shape `name` under cProfile
  (logging, eval, checkpoints at the config's defaults): the table of where its time went."""
  n_layer, d_model = parse_shape(name)
  overrides = TrainerRun(n_layer, d_model, True, 1).overrides[:len(MODEL_FIELDS)]
  config = config_lib.load_config(str(REPO / "configs" / "cpu_demo.py"), overrides + [
      f"--config.train.num_steps={steps}", f"--config.optim.warmup_steps={steps // 4}"])
  workdir = tempfile.mkdtemp(prefix="bench_trainer_profile_")
  profiler = cProfile.Profile()
  try:
    t0 = time.perf_counter()
    profiler.runcall(train.train_and_evaluate, config, workdir)
    total = time.perf_counter() - t0
    logged = [r for r in metrics.read_metrics(workdir) if keys.TOKENS_PER_S in r]
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  stats = pstats.Stats(profiler).stats
  tokens = SHAPE_KW["batch"] * SHAPE_KW["n_ctx"]
  steady = [r[keys.TOKENS_PER_S] for r in logged[1:]]
  step_s = tokens / float(np.median(steady))
  lines = [f"`python bench/bench_trainer.py --profile {name} --profile-steps {steps}`: one "
           f"in-process run of configs/cpu_demo.py at {name} for {steps} steps (log every "
           f"{config.train.log_every}, eval every {config.train.eval_every}, checkpoint every "
           f"{config.train.ckpt_every} and at the end, progress bar on) under cProfile; "
           f"{total:.0f} s in all, the logged windows' median step {step_s * 1e3:.0f} ms. Time "
           "in each piece (cumulative, all calls), per train step, and as a share of a step:", "",
           "| piece | calls | total (s) | per step (ms) | share of a step |",
           "| --- | --- | --- | --- | --- |"]
  for label, suffix, func in PROFILE_PIECES:
    hits = [(v[1], v[3]) for (f, _, fn), v in stats.items() if fn == func and f.endswith(suffix)]
    calls, cum = sum(h[0] for h in hits), sum(h[1] for h in hits)
    lines.append(f"| {label} | {calls} | {cum:.2f} | {cum / steps * 1e3:.1f} | "
                 f"{cum / steps / step_s:.1%} |")
  return lines


def _load() -> float:
  return os.getloadavg()[0]


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shapes", default=",".join(SHAPES),
                      help="n_layer x d_model, comma-separated (of " + ", ".join(SHAPES) + ")")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--no-bare", action="store_true", help="skip the bare jitted step")
  parser.add_argument("--profile", default="", metavar="SHAPE",
                      help="instead: where one in-process trainer run's time goes (cProfile)")
  parser.add_argument("--profile-steps", type=int, default=200)
  parser.add_argument("--levers", default="", metavar="SHAPE",
                      help="instead: the train step's variants (--lever-set) at SHAPE")
  parser.add_argument("--lever-set", choices=[*LEVER_SETS, "gns-loop"], default="passes")
  parser.add_argument("--xla-flags", default="", metavar="SHAPE",
                      help="instead: the train step at SHAPE under XLA CPU flag sets")
  parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  if args.worker:
    return worker(args.worker)
  if args.levers or args.xla_flags:
    shape = args.levers or args.xla_flags
    if shape not in SHAPES:
      parser.error(f"--levers and --xla-flags take one of {','.join(SHAPES)}")
    load0 = _load()
    if args.levers and args.lever_set == "gns-loop":
      lines, heading = gns_loop_levers(shape, args.rounds), GNS_LOOP_HEADING
    elif args.levers:
      lines, heading = levers(shape, args.lever_set, args.rounds), LEVER_SETS[args.lever_set][0]
    else:
      lines, heading = xla_flags(shape, args.rounds), XLA_FLAGS_HEADING
    publish([heading, "", f"On {environment()}; load average (1 min) {load0:.1f} "
             f"before, {_load():.1f} after.", "", *lines], heading,
            write=not args.no_write)
    return 0
  if args.profile:
    if args.profile not in SHAPES or args.profile_steps < 40:
      parser.error(f"--profile takes one of {','.join(SHAPES)}, --profile-steps >= 40")
    load0 = _load()
    lines = profile_trainer(args.profile, args.profile_steps)
    publish([PROFILE_HEADING, "", f"On {environment()}; load average (1 min) {load0:.1f} "
             f"before, {_load():.1f} after.", "", *lines], PROFILE_HEADING,
            write=not args.no_write)
    return 0
  shapes = [s.strip().lower() for s in args.shapes.split(",") if s.strip()]
  unknown = [s for s in shapes if s not in SHAPES]
  if unknown or args.rounds < 1:
    parser.error(f"--shapes takes some of {','.join(SHAPES)} (got {unknown}) and --rounds >= 1")
  if importlib.util.find_spec("torch") is None:
    parser.error("needs torch: pip install -e '.[bench]' (or --profile, --levers, --xla-flags)")
  load0, start = _load(), time.perf_counter()
  peak = hardware.measure_matmul_peak(n=1024, dtype="float32", seconds=2.0)
  rows = []
  for s in shapes:  # each shape's line as soon as it is measured
    rows.append(bench_shape(s, SHAPES[s], args.rounds, not args.no_bare))
    print(row_line(rows[-1], peak, not args.no_bare), flush=True)
  lines = section(rows, peak, args.rounds, not args.no_bare, (load0, _load()),
                  time.perf_counter() - start, argv)
  publish(lines, HEADING, write=not args.no_write)
  return 0 if all(math.isfinite(v) for row in rows for v in row["runs"]["on"].tokens_per_s) else 1


if __name__ == "__main__":
  sys.exit(main())
