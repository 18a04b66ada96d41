"""Training throughput (tokens/s) and MFU of scaling-jax, against a peak measured in-process.

  python bench/bench_train.py --suite cpu     # the demo model sizes on this CPU
  python bench/bench_train.py --suite gpu     # ~125M params in bf16 on one GPU
  python bench/bench_train.py --suite gns     # GNS estimator on vs off (step-time overhead)

MFU uses the exact training FLOPs per token (3 x forward incl. attention scores and the
unembedding; `accounting.flops_per_token_exact`) over the matmul peak measured with
jnp.dot on large matrices in the same process (f32 on CPU, bf16 on GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import environment, write_section  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from scaling_jax import accounting, config as config_lib, hardware, model as model_lib  # noqa: E402
from scaling_jax import optim, sharding, train  # noqa: E402

CPU_SHAPES = [(2, 32), (2, 48), (3, 64), (4, 96), (4, 128)]  # the demo family (n_layer, d_model)


def make_config(n_layer, d_model, *, n_ctx, vocab, batch, dtype="float32", gns=True,
                grad_accum=1, remat="none", attention="auto"):
  c = config_lib.default_config()
  c.model.update(n_layer=n_layer, d_model=d_model, n_heads=max(1, d_model // 64) if d_model >= 256
                 else 4, d_ff=4 * d_model, n_ctx=n_ctx, vocab_size=vocab, dtype=dtype,
                 remat=remat, attention=attention)
  c.train.update(batch_size=batch, grad_accum=grad_accum)
  c.gns.enabled = gns
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  return c


class Stepper:
  """One model's jitted train step on random tokens, ready to be timed step by step."""

  def __init__(self, config):
    self.config = config
    self.mesh = sharding.make_mesh(config)
    model = model_lib.build(config.model)
    self.counts = accounting.counts(config.model)
    opt, lr = optim.make(config.optim, 1000, self.counts.n_params)
    _, self.state = train.init_state(config, model, opt, self.mesh, jax.random.key(0))
    rng = np.random.default_rng(0)
    self.batches = [sharding.global_batch(rng.integers(
        0, config.model.vocab_size, (config.train.batch_size, config.model.n_ctx + 1),
        dtype=np.int32), self.mesh) for _ in range(4)]
    with self._context():
      self.step = jax.jit(train.make_train_step(config, model, opt, lr, self.mesh),
                          donate_argnums=0)
    self.steps_done = 0
    t0 = time.perf_counter()
    self.run(1)
    self.compile_s = time.perf_counter() - t0
    self.times: list[float] = []

  def _context(self):
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(self.mesh))
    stack.enter_context(nn.logical_axis_rules(sharding.RULES))
    return stack

  def run(self, steps: int, record: bool = False) -> None:
    """`steps` steps, each timed to completion (into `self.times` if `record`)."""
    with self._context():
      for _ in range(steps):
        t0 = time.perf_counter()
        batch = self.batches[self.steps_done % len(self.batches)]
        self.state, self.out = self.step(self.state, batch)
        self.steps_done += 1
        jax.block_until_ready(self.out["loss"])
        if record:
          self.times.append(time.perf_counter() - t0)

  def result(self) -> dict:
    step_s = float(np.median(self.times))
    tokens = self.config.train.batch_size * self.config.model.n_ctx
    return {"n_params": self.counts.n_params, "n_total": self.counts.n_params_total,
            "step_s": step_s, "tokens_per_s": tokens / step_s,
            "flops_per_s": tokens * self.counts.flops_per_token_exact / step_s,
            "compile_s": self.compile_s, "loss": float(self.out["loss"])}


def interleaved(runners: dict, rounds: int, steps: int = 2, warmup: int = 2) -> dict:
  """Times `runners` (name -> object with run(n, record)) in turn, `rounds` times `steps`
  steps each, so that machine noise hits all of them alike; returns name -> runner.

  Each turn starts with one untimed step: the previous runner's threads (XLA's pool,
  PyTorch's OpenMP workers) may still be spinning when a turn begins.
  """
  for r in runners.values():
    r.run(warmup)
  for _ in range(rounds):
    for r in runners.values():
      r.run(1)
      r.run(steps, record=True)
  return runners


def paired_ratio(a, b, steps: int = 2) -> float:
  """Median over the rounds of `interleaved` of (b's time / a's time) in the same round: drift
  in the machine's speed between rounds cancels out."""
  rounds = len(a.times) // steps
  per_round = lambda r: [float(np.mean(r.times[i * steps:(i + 1) * steps])) for i in range(rounds)]
  return float(np.median(np.asarray(per_round(b)) / np.asarray(per_round(a))))


def time_steps(config, steps: int, warmup: int = 3) -> dict:
  """Seconds per train step (median of `steps` timed one by one after `warmup`)."""
  s = Stepper(config)
  s.run(warmup)
  s.run(steps, record=True)
  return s.result()


def suite_cpu(args):
  peak = hardware.measure_matmul_peak(n=1024, dtype="float32", seconds=2.0)
  rows = []
  for n_layer, d in CPU_SHAPES:
    cfg = make_config(n_layer, d, n_ctx=128, vocab=4096, batch=32, gns=True)
    r = time_steps(cfg, args.steps)
    rows.append((f"{n_layer}x{d}", r))
    print(f"{n_layer}x{d}: N={r['n_params']:,} {r['tokens_per_s']:,.0f} tok/s "
          f"MFU {r['flops_per_s'] / peak:.1%}", flush=True)
  lines = ["## Training throughput (CPU)", "",
           f"`python bench/bench_train.py --suite cpu` on {environment()}.", "",
           f"Measured f32 matmul peak (jnp.dot 1024x1024, same process): {peak / 1e9:.1f} GFLOP/s. "
           "Batch 32 x 128 tokens, vocab 4096, f32, AdamW, GNS on (2 micro-batches), the CPU "
           "defaults (fused loss, einsum attention, passes of <= 1024 tokens); median of "
           f"{args.steps} steps after warm-up.", "",
           "| model (n_layer x d_model) | N (non-emb.) | N total | step (ms) | tokens/s | MFU |",
           "| --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {name} | {r['n_params']:,} | {r['n_total']:,} | {r['step_s'] * 1e3:.1f} | "
            f"{r['tokens_per_s']:,.0f} | {r['flops_per_s'] / peak:.1%} |" for name, r in rows]
  return "## Training throughput (CPU)", "\n".join(lines) + "\n"


def suite_gns(args):
  rows = []
  for n_layer, d in [(3, 64), (4, 128)]:
    kw = dict(n_ctx=128, vocab=4096, batch=32)
    runners = interleaved({
        "off": Stepper(make_config(n_layer, d, gns=False, **kw)),
        "on": Stepper(make_config(n_layer, d, gns=True, **kw)),
        "acc": Stepper(make_config(n_layer, d, gns=True, grad_accum=2, **kw)),
    }, rounds=args.steps // 2)
    off, on, acc = (runners[k].result() for k in ("off", "on", "acc"))
    on["overhead"] = paired_ratio(runners["off"], runners["on"]) - 1
    rows.append((f"{n_layer}x{d}", off, on, acc))
    print(f"{n_layer}x{d}: off {off['step_s'] * 1e3:.1f} ms, on {on['step_s'] * 1e3:.1f} ms",
          flush=True)
  lines = ["## GNS overhead", "",
           f"`python bench/bench_train.py --suite gns` on {environment()}.", "",
           "Step time with the estimator off (one gradient of the whole batch) vs on (the "
           "gradient of each of 2 micro-batches, their squared norms and the norm of their "
           "mean); batch 32 x 128, vocab 4096, f32; the three interleaved, median of "
           f"{args.steps // 2 * 2} steps each; overhead = the median over rounds of on/off "
           "within a round (drift between rounds cancels). Both sides run in passes of at most "
           "1024 tokens (`train.max_pass_tokens`, the CPU default), so the estimator adds only "
           "the norms: a few reductions over the gradient.",
           "", "| model | GNS off (ms) | GNS on (ms) | overhead | accum=2 + GNS (ms) |",
           "| --- | --- | --- | --- | --- |"]
  lines += [f"| {name} | {a['step_s'] * 1e3:.1f} | {b['step_s'] * 1e3:.1f} | "
            f"{b['overhead']:+.1%} | {c['step_s'] * 1e3:.1f} |" for name, a, b, c in rows]
  return "## GNS overhead", "\n".join(lines) + "\n"


def suite_gpu(args):
  peak = hardware.measure_matmul_peak(n=8192, dtype="bfloat16", seconds=2.0)
  table, _ = hardware.peak_flops_per_device("bfloat16")
  rows = []
  variants = [
      ("bf16, cuDNN attention, GNS on", dict(dtype="bfloat16", gns=True)),
      ("bf16, cuDNN attention, GNS off", dict(dtype="bfloat16", gns=False)),
      ("bf16, XLA attention, GNS off", dict(dtype="bfloat16", gns=False, attention="xla")),
      ("bf16, remat dots, GNS off", dict(dtype="bfloat16", gns=False, remat="dots")),
      ("bf16, cuDNN attention, unfused loss, GNS off",
       dict(dtype="bfloat16", gns=False, loss_chunk_tokens=0)),
  ]
  for name, kw in variants:
    chunk = kw.pop("loss_chunk_tokens", -1)
    cfg = make_config(12, 768, n_ctx=1024, vocab=32768, batch=args.gpu_batch, **kw)
    cfg.model.update(n_heads=12, loss_chunk_tokens=chunk)
    try:
      r = time_steps(cfg, args.steps)
    except Exception as e:  # noqa: BLE001 -- report and go on to the next variant
      print(f"{name}: failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
      continue
    rows.append((name, r))
    print(f"{name}: {r['tokens_per_s']:,.0f} tok/s, MFU {r['flops_per_s'] / table:.1%} of "
          f"table, {r['flops_per_s'] / peak:.1%} of measured; compile {r['compile_s']:.0f}s",
          flush=True)
  lines = ["## Training throughput (GPU)", "",
           f"`python bench/bench_train.py --suite gpu` on {environment()}.", "",
           f"GPT-3 'small' shape (12 x 768, 12 heads, n_ctx 1024, vocab 32768; N = 85M non-embedding,"
           f" {rows[0][1]['n_total'] / 1e6:.0f}M total), batch {args.gpu_batch} x 1024 tokens, "
           f"f32 master weights, AdamW. Peak: table {table / 1e12:.0f} TFLOP/s (dense bf16), "
           f"measured bf16 jnp.dot 8192^3 {peak / 1e12:.0f} TFLOP/s.", "",
           "| variant | step (ms) | tokens/s | MFU (table peak) | MFU (measured peak) |",
           "| --- | --- | --- | --- | --- |"]
  lines += [f"| {name} | {r['step_s'] * 1e3:.1f} | {r['tokens_per_s']:,.0f} | "
            f"{r['flops_per_s'] / table:.1%} | {r['flops_per_s'] / peak:.1%} |" for name, r in rows]
  return "## Training throughput (GPU)", "\n".join(lines) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--suite", choices=["cpu", "gns", "gpu"], default="cpu")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--gpu-batch", type=int, default=32)
  parser.add_argument("--no-write", action="store_true")
  parser.add_argument("--out", default="", help="also write the section to this file")
  args = parser.parse_args(argv)
  heading, text = {"cpu": suite_cpu, "gns": suite_gns, "gpu": suite_gpu}[args.suite](args)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text)
  if not args.no_write:
    write_section(text, heading)
  return 0


if __name__ == "__main__":
  sys.exit(main())
