"""scaling-jax vs a plain PyTorch (nanoGPT-style) CPU implementation, same shape, same run.

  pip install torch   # optional bench extra: pip install -e '.[bench]'
  python bench/bench_torch.py [--rounds 8]

Both train the same decoder-only pre-LN Transformer (learned positions, GELU MLP, untied
head, causal attention, AdamW) on the same batch and sequence length; tokens/s are the
median over timed steps after warm-up, the frameworks taking turns in this process.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_train import CPU_SHAPES, Stepper, interleaved, make_config  # noqa: E402
from common import environment, publish  # noqa: E402

import numpy as np  # noqa: E402

HEADING = "## scaling-jax vs PyTorch (CPU)"


class TorchStepper:
  """The same model in PyTorch eager (nanoGPT style), ready to be timed step by step."""

  def __init__(self, n_layer, d_model, n_heads, n_ctx, vocab, batch):
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    class Block(tnn.Module):
      def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = tnn.LayerNorm(d_model), tnn.LayerNorm(d_model)
        self.qkv, self.proj = tnn.Linear(d_model, 3 * d_model), tnn.Linear(d_model, d_model)
        self.fc, self.out = tnn.Linear(d_model, 4 * d_model), tnn.Linear(4 * d_model, d_model)

      def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, n_heads, d // n_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(tnn.Module):
      def __init__(self):
        super().__init__()
        self.wte, self.wpe = tnn.Embedding(vocab, d_model), tnn.Embedding(n_ctx, d_model)
        self.blocks = tnn.ModuleList(Block() for _ in range(n_layer))
        self.ln_f, self.head = tnn.LayerNorm(d_model), tnn.Linear(d_model, vocab, bias=False)

      def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for blk in self.blocks:
          x = blk(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, vocab), targets.reshape(-1))

    torch.manual_seed(0)
    self.model = GPT()
    self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    self.data = [torch.from_numpy(rng.integers(0, vocab, (batch, n_ctx + 1)).astype(np.int64))
                 for _ in range(4)]
    self.tokens = batch * n_ctx
    self.times: list[float] = []
    self.steps_done = 0
    self.version, self.threads = torch.__version__, torch.get_num_threads()

  def run(self, steps: int, record: bool = False) -> None:
    for _ in range(steps):
      t0 = time.perf_counter()
      x = self.data[self.steps_done % len(self.data)]
      self.steps_done += 1
      loss = self.model(x[:, :-1], x[:, 1:])
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
      if record:
        self.times.append(time.perf_counter() - t0)

  def tokens_per_s(self) -> float:
    return self.tokens / float(np.median(self.times))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds of 2 steps")
  parser.add_argument("--shapes", default=",".join(f"{n}x{d}" for n, d in CPU_SHAPES),
                      help="n_layer x d_model, comma-separated")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  rows = []
  for n_layer, d in (map(int, s.split("x")) for s in args.shapes.split(",")):
    kw = dict(n_ctx=128, vocab=4096, batch=32)
    cfg_off = make_config(n_layer, d, gns=False, **kw)
    runners = interleaved({
        "off": Stepper(cfg_off), "on": Stepper(make_config(n_layer, d, gns=True, **kw)),
        "torch": TorchStepper(n_layer, d, cfg_off.model.n_heads, **kw)}, rounds=args.rounds)
    jax_off, jax_on = (runners[k].result()["tokens_per_s"] for k in ("off", "on"))
    torch_runner = runners["torch"]
    pt = torch_runner.tokens_per_s()
    rows.append((f"{n_layer}x{d}", jax_off, jax_on, pt))
    print(f"{n_layer}x{d}: jax {jax_off:,.0f} (GNS on {jax_on:,.0f}) torch {pt:,.0f} tok/s "
          f"ratio {jax_off / pt:.2f}", flush=True)
  geo = math.exp(np.mean([math.log(a / c) for _, a, _, c in rows]))
  lines = [HEADING, "", f"`python bench/bench_torch.py` on {environment()}; torch "
           f"{torch_runner.version} ({torch_runner.threads} threads).", "",
           "Same shapes as the CPU throughput table: batch 32 x 128 tokens, vocab 4096, f32, "
           "AdamW; PyTorch eager with F.scaled_dot_product_attention (nanoGPT style). The three "
           f"are timed in turn ({args.rounds} rounds of 2 steps after an untimed one, median), so "
           "machine noise hits them alike. Ratio = scaling-jax (GNS off, the same work) / "
           "PyTorch.", "",
           "| model | scaling-jax tok/s | scaling-jax + GNS tok/s | PyTorch tok/s | ratio "
           "| ratio with GNS |", "| --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {n} | {a:,.0f} | {b:,.0f} | {c:,.0f} | {a / c:.2f} | {b / c:.2f} |"
            for n, a, b, c in rows]
  lines += ["", f"Geometric mean ratio: {geo:.2f}."]
  publish(lines, HEADING, write=not args.no_write)
  return 0


if __name__ == "__main__":
  sys.exit(main())
