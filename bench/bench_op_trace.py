"""Where the compiled CPU train step spends its time, op by op (a jax.profiler trace).

  python bench/bench_op_trace.py [--shape 6x384] [--steps 2] [--no-write]

Traces `--steps` steps of the jitted train step (GNS on; batch 32 x 128, vocab 4096, f32, the
CPU defaults, as bench_train.py builds it) after two warm-up steps, reads the trace back with
`jax.profiler.ProfileData`, and charges every XLA op its exclusive time on the threads that ran
it (nested events subtracted). Each op is classed from the compiled HLO: a matmul (a dot or a
fusion around one), another op (elementwise fusions, reductions, copies, loops' own
bookkeeping), the XLA CPU runtime's own work between ops (`ThunkExecutor`), or waiting (a
thread of the pool waiting on another). An op spreads its work over the cores itself (XNNPACK,
Eigen) through helper threads that leave no events, so an op's event is its wall time; the
matmuls' rate is the step's exact FLOPs (`accounting`) over their wall time (their event time
divided by how many ops ran at once): what the matmuls reach at these shapes, against the
1024^3 matmul that sets the peak. The other ops are classed by the opcodes inside each fusion
(`OTHER_FAMILIES`: copies, elementwise arithmetic, sums, ...) and the largest listed. Writes
the "Op-level trace of the step (CPU, issue 20)" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_trainer import SHAPE_KW, parse_shape  # noqa: E402  (first: it skips the TPU probe)
from bench_train import Stepper, make_config  # noqa: E402
from common import environment, publish  # noqa: E402

import jax  # noqa: E402

from scaling_jax import hardware  # noqa: E402

HEADING = "## Op-level trace of the step (CPU, issue 20)"
RUNTIME = ("ThunkExecutor::Execute",)  # the executor's own time between the ops it runs
WAITING = ("SlinkyThreadPool::Await", "MutexLock")  # a pool thread waiting on others
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*? ([\w\-]+)\(")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition|true_computation|false_computation|"
                    r"branch_computations)=\{?([%\w.\-, ]+)\}?")
_MATMUL_TARGET = re.compile(r'custom_call_target="[^"]*(?:matmul|gemm|dot)[^"]*"', re.I)
_SHAPE = re.compile(r"= (\(?[a-z]\w*\[[\d,]*\])")  # an instruction's (first) result shape
# What a non-matmul op computes, from the opcodes inside it, first match wins.
TRANSCENDENTAL = {"exponential", "log", "tanh", "rsqrt", "sqrt", "power", "erf", "logistic",
                  "exponential-minus-one", "log-plus-one", "divide"}
REDUCTIONS = {"reduce", "reduce-window"}
DATA_MOVEMENT = {"copy", "transpose", "bitcast", "reshape", "broadcast", "slice", "concatenate",
                 "dynamic-slice", "dynamic-update-slice", "pad", "constant", "parameter",
                 "tuple", "get-tuple-element", "iota", "convert", "reverse"}
OTHER_FAMILIES = (
    ("gather / scatter (the embedding)", lambda ops: bool(ops & {"gather", "scatter"})),
    ("reduction with exp/log/rsqrt/divide (softmax, layer norm, loss)",
     lambda ops: bool(ops & REDUCTIONS) and bool(ops & TRANSCENDENTAL)),
    ("reduction (sums: biases, norms)", lambda ops: bool(ops & REDUCTIONS)),
    ("elementwise with exp/tanh/rsqrt/divide (GELU, Adam, softmax grads)",
     lambda ops: bool(ops & TRANSCENDENTAL)),
    ("data movement only (copies, transposes, slices, pads)",
     lambda ops: ops <= DATA_MOVEMENT),
    ("loop bookkeeping (while, conditional)", lambda ops: bool(ops & {"while", "conditional"})),
    ("elementwise arithmetic (adds, multiplies, selects)", lambda ops: True),
)


@dataclasses.dataclass(frozen=True)
class HloOp:
  """One instruction of the compiled module: its opcode, result shape and every opcode in the
  computations it calls (a fusion's body, recursively)."""
  opcode: str
  shape: str
  inner: frozenset[str]
  library_matmul: bool  # a custom call into a matmul library (oneDNN, ...)

  @property
  def is_matmul(self) -> bool:
    return self.library_matmul or bool((self.inner | {self.opcode}) & {"dot", "convolution"})

  @property
  def family(self) -> str:
    ops = (self.inner | {self.opcode}) - {"fusion", "custom-call", "call"}
    return next(name for name, test in OTHER_FAMILIES if test(ops))


def hlo_ops(hlo_text: str) -> dict[str, HloOp]:
  """Every instruction of the compiled module (see HloOp)."""
  opcode: dict[str, str] = {}
  shape: dict[str, str] = {}
  calls: dict[str, list[str]] = {}
  library_matmuls: set[str] = set()
  body: dict[str, list[str]] = collections.defaultdict(list)  # computation -> instructions
  current = None
  for line in hlo_text.splitlines():
    if m := _COMPUTATION.match(line):
      current = m.group(1)
    elif (m := _INSTRUCTION.match(line)) and current is not None:
      name, opcode[name] = m.groups()
      shape[name] = (s.group(1) if (s := _SHAPE.search(line)) else "").lstrip("(")
      calls[name] = [c.strip().lstrip("%") for group in _CALLS.findall(line)
                     for c in group.split(",") if c.strip()]
      if opcode[name] == "custom-call" and _MATMUL_TARGET.search(line):
        library_matmuls.add(name)
      body[current].append(name)

  def inside(computation: str, seen: set[str]) -> set[str]:
    if computation in seen:
      return set()
    seen.add(computation)
    found = set()
    for i in body.get(computation, ()):
      found.add(opcode[i])
      for c in calls[i]:
        found |= inside(c, seen)
    return found

  return {name: HloOp(opcode[name], shape[name],
                      frozenset().union(*(inside(c, set()) for c in calls[name])),
                      name in library_matmuls)
          for name in opcode}


@dataclasses.dataclass
class OpTime:
  name: str
  kind: str  # matmul | other op | runtime | waiting
  count: int = 0
  seconds: float = 0.0


def exclusive_times(events) -> list[tuple[str, float]]:
  """(name, exclusive seconds) of one thread's events: each event's duration less that of the
  events nested directly inside it."""
  events = sorted(events, key=lambda e: (e.start_ns, -e.duration_ns))
  out, stack = [], []  # stack of [name, end_ns, exclusive_ns]
  for e in events:
    while stack and stack[-1][1] <= e.start_ns:
      name, _, excl = stack.pop()
      out.append((name, max(excl, 0) / 1e9))
    end = e.start_ns + e.duration_ns
    if stack:  # a child that outlasts its parent (clock rounding) is charged only inside it
      stack[-1][2] -= min(end, stack[-1][1]) - e.start_ns
    stack.append([e.name, end, e.duration_ns])
  out += [(name, max(excl, 0) / 1e9) for name, _, excl in stack]
  return out


def op_times(profile, matmuls: set[str]) -> tuple[dict[str, OpTime], int]:
  """Exclusive time per op over the XLA threads of the host plane, and how many threads ran
  XLA work."""
  table: dict[str, OpTime] = {}
  threads = 0
  for plane in profile.planes:
    if plane.name != "/host:CPU":
      continue
    for line in plane.lines:
      if not line.name.startswith("tf_XLA"):
        continue  # the Python thread and gRPC lines: not the step's ops
      threads += 1
      for name, seconds in exclusive_times(line.events):
        if "wait for completion" in name:
          continue  # the client thread waiting for the step: not work
        kind = ("runtime" if name.startswith(RUNTIME) else
                "waiting" if name.startswith(WAITING) else
                "matmul" if name in matmuls else "other op")
        op = table.setdefault(name, OpTime(name, kind))
        op.count += 1
        op.seconds += seconds
  return table, threads


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", default="6x384", help="n_layer x d_model")
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--top", type=int, default=12)
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error("--steps must be >= 1")
  n_layer, d_model = parse_shape(args.shape)
  load0 = os.getloadavg()[0]
  stepper = Stepper(make_config(n_layer, d_model, gns=True, **SHAPE_KW))
  with stepper._context():
    hlo = stepper.step.lower(stepper.state, stepper.batches[0]).compile().as_text()
  described = hlo_ops(hlo)
  matmuls = {name for name, op in described.items() if op.is_matmul}
  stepper.run(2)
  trace_dir = tempfile.mkdtemp(prefix="op_trace_")
  with jax.profiler.trace(trace_dir):
    t0 = time.perf_counter()
    stepper.run(args.steps)
    wall = time.perf_counter() - t0
  (xplane,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
  table, threads = op_times(jax.profiler.ProfileData.from_file(xplane), matmuls)
  shutil.rmtree(trace_dir, ignore_errors=True)
  if not any(op.kind == "matmul" for op in table.values()):
    print("bench_op_trace: no traced op matched a matmul of the compiled HLO (the trace's op "
          "names differ from this jax version's HLO names); nothing to report", file=sys.stderr)
    return 1
  peak = hardware.measure_matmul_peak()
  load1 = os.getloadavg()[0]
  counts = stepper.counts
  tokens = args.steps * stepper.config.train.batch_size * stepper.config.model.n_ctx
  by_kind = collections.Counter()
  for op in table.values():
    by_kind[op.kind] += op.seconds
  busy = sum(by_kind.values())
  # XLA:CPU runs an op's work on the cores itself (XNNPACK, Eigen), and the helper threads that
  # do it leave no events; the events on the executor threads are the ops' wall times. Ops that
  # run side by side on several executor threads count once per thread: `concurrency`.
  concurrency = busy / wall
  op_s = sum(op.seconds for op in table.values() if op.kind in ("matmul", "other op"))
  matched = sum(op.seconds for op in table.values()
                if op.kind in ("matmul", "other op") and op.name in described)
  flops = counts.flops_per_token_exact * tokens
  matmul_rate = flops / (by_kind["matmul"] / concurrency)
  lines = [
      HEADING, "",
      f"`python bench/bench_op_trace.py --shape {args.shape} --steps {args.steps}` on "
      f"{environment()}; load average {load0:.1f} -> {load1:.1f}.", "",
      f"{args.steps} steps of the jitted train step at {args.shape} (N = {counts.n_params:,}; "
      f"batch 32 x 128, vocab 4096, f32, GNS on, the CPU defaults) traced with jax.profiler: "
      f"{wall / args.steps * 1e3:.0f} ms per step. Each XLA op's exclusive time on the "
      f"executor threads ({threads} of them; nested events subtracted), classed from the "
      f"compiled HLO ({100 * matched / op_s:.0f}% of the ops' time under names found there). "
      "An op spreads its work over the cores itself, through helper threads that leave no "
      f"events, so an op's event is its wall time; the ops ran {concurrency:.2f} at a time on "
      "average (their event time over the step's wall time):", "",
      "| where the step's time goes | ms per step | share |", "| --- | --- | --- |"]
  for kind in ("matmul", "other op", "runtime", "waiting"):
    lines.append(f"| {kind} | {by_kind[kind] / args.steps * 1e3:.0f} | "
                 f"{100 * by_kind[kind] / busy:.1f}% |")
  lines += ["", f"The matmuls run at **{matmul_rate / 1e9:.0f} GFLOP/s** (the step's exact "
            f"{flops / args.steps / 1e9:.1f} GFLOP per step, nearly all of it in matmuls, over "
            f"their wall time), {100 * matmul_rate / peak:.0f}% of the {peak / 1e9:.0f} "
            "GFLOP/s of a 1024^3 matmul measured in the same process; the whole step reaches "
            f"**{100 * flops / wall / peak:.0f}% MFU**. The rest of the step is the other ops "
            "(elementwise fusions, reductions, copies, the optimizer update).", "",
            f"The {args.top} ops with the most time (all their executions, per step):", "",
            "| op (compiled HLO name) | kind | executions per step | ms per step | share |",
            "| --- | --- | --- | --- | --- |"]
  for op in sorted(table.values(), key=lambda o: -o.seconds)[:args.top]:
    lines.append(f"| {op.name} | {op.kind} | {op.count / args.steps:.0f} | "
                 f"{op.seconds / args.steps * 1e3:.0f} | {100 * op.seconds / busy:.1f}% |")
  others = [op for op in table.values() if op.kind == "other op" and op.name in described]
  by_family = collections.Counter()
  for op in others:
    by_family[described[op.name].family] += op.seconds
  lines += ["", f"The other ops ({by_kind['other op'] / args.steps * 1e3:.0f} ms per step) by "
            "what they compute (the opcodes inside each fusion, first match in this order):",
            "", "| other ops that are | ms per step | share of the step's op time |",
            "| --- | --- | --- |"]
  for family, _ in OTHER_FAMILIES:
    if by_family[family]:
      lines.append(f"| {family} | {by_family[family] / args.steps * 1e3:.0f} | "
                   f"{100 * by_family[family] / busy:.1f}% |")
  lines += ["", f"The {args.top} other ops with the most time:", "",
            "| op | result shape | what it is | executions per step | ms per step | share |",
            "| --- | --- | --- | --- | --- | --- |"]
  for op in sorted(others, key=lambda o: -o.seconds)[:args.top]:
    hlo_op = described[op.name]
    lines.append(f"| {op.name} | {hlo_op.shape} | {hlo_op.family} | "
                 f"{op.count / args.steps:.0f} | {op.seconds / args.steps * 1e3:.0f} | "
                 f"{100 * op.seconds / busy:.1f}% |")
  publish(lines, HEADING, write=not args.no_write)
  return 0


if __name__ == "__main__":
  sys.exit(main())
