"""CPU cost of each experiment's CPU-scale sweep, estimated from measured per-step costs.

Trains a few representative CPU-scale models (`experiments/common.py` CPU_SIZES, a large
batch, Universal Transformers and LSTMs) for a handful of steps on the stdlib corpus,
measures the steady-state seconds per step (compilation excluded) and the fixed overhead
of a run (compile, data, eval, checkpoint), fits seconds/step = a + b x FLOPs/step per
architecture, and sums that model over every entry of every experiment's CPU sweep.
Writes the "Experiments (CPU scale)" section of BENCHMARKS.md; with --measured OUT, beside
each estimate the wall time `python -m experiments.run_all --out OUT` measured (OUT/run_all.json,
with the load average each sweep trained under).

Usage: python bench/bench_experiments.py [--steps 15] [--workdir DIR] [--reuse] [--measured OUT]
(--reuse: re-estimate from DIR/probes.json, the measurements of an earlier run)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

from common import REPO, environment, write_section  # bench/common.py

import numpy as np  # noqa: E402

from experiments import common as exp_common  # noqa: E402
from experiments import run_all  # noqa: E402
from scaling_jax import accounting, metrics, train  # noqa: E402
from scaling_jax import metric_keys as keys  # noqa: E402

HEADING = "## Experiments (CPU scale)"
PROBES = [  # (arch, n_layer, d_model, batch)
    ("transformer", 2, 32, 32), ("transformer", 2, 64, 32), ("transformer", 3, 96, 32),
    ("transformer", 4, 128, 32), ("transformer", 2, 64, 128),
    ("universal", 2, 64, 32), ("universal", 4, 128, 32),
    ("lstm", 1, 64, 32), ("lstm", 2, 160, 32), ("lstm", 2, 224, 32),
]


def _step_flops(config) -> float:
  c = accounting.counts(config.model)
  return c.flops_per_token_exact * config.train.batch_size * config.model.n_ctx


def measure(arch: str, n_layer: int, d_model: int, batch: int, steps: int, root: str) -> dict:
  entry = exp_common.entry("probe", "cpu", {**exp_common.shape(n_layer, d_model, "cpu"),
                                            "model.arch": arch, "train.batch_size": batch})
  config = exp_common.load_config(entry)
  config.train.update(num_steps=steps, log_every=5, eval_every=steps, ckpt_every=steps,
                      progress=False)
  # A probe times steps, not the schedule: keep the warmup shorter than the short run.
  config.optim.warmup_steps = min(config.optim.warmup_steps, steps // 2)
  workdir = os.path.join(root, f"{arch}_{n_layer}_{d_model}_{batch}")
  shutil.rmtree(workdir, ignore_errors=True)
  t0 = time.perf_counter()
  train.train_and_evaluate(config, workdir)
  wall = time.perf_counter() - t0
  recs = [r for r in metrics.read_metrics(workdir) if keys.TOKENS_PER_S in r][1:]  # after compile
  step_s = float(np.median([batch * config.model.n_ctx / r[keys.TOKENS_PER_S] for r in recs]))
  return {"arch": arch, "n_layer": n_layer, "d_model": d_model, "batch": batch,
          "n_params": accounting.counts(config.model).n_params, "flops": _step_flops(config),
          "step_s": step_s, "overhead_s": wall - steps * step_s}


def _minutes(seconds: float) -> str:
  return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.0f} s"


def _measured_table(rows: list[tuple[str, int, float]], out: str) -> list[str]:
  """The estimate of each experiment beside what run_all measured in OUT."""
  record = run_all.read_record(out)
  groups = run_all.plan(run_all.experiment_names(), out, "cpu")
  parts = run_all.experiment_time_parts(record, groups)
  sweep_of = {name: g for g in groups for name in g.experiments}
  lines = ["Wall time of each experiment's CPU sweep: **measured** end to end by "
           f"`python -m experiments.run_all --out {os.path.basename(os.path.normpath(out))}` "
           f"(training + analysis, from its `{run_all.RECORD}`; runs shared by several "
           "experiments count for each) on this 2-core machine, with how busy it was: the "
           "1-minute load average before and after each sweep's training (its own runs "
           "included) and the cores its runs got (their CPU-seconds over their wall time: 2 is "
           "both cores, all to itself); beside the estimate from the per-step costs above "
           "(s/step = a + b x FLOPs/step fitted per architecture, plus the median overhead per "
           "run):", "",
           "| experiment | runs | measured (training + analysis) | load average | cores used | "
           "estimated |", "| --- | --- | --- | --- | --- | --- |"]
  for folder, n, estimate in rows:
    train_s, analysis_s = parts.get(folder, (math.nan, math.nan))
    group = sweep_of.get(folder)
    shared = (f" (the {os.path.basename(group.sweep_dir)} sweep, shared)"
              if group is not None and len(group.experiments) > 1 else "")
    measured = "not measured" if math.isnan(train_s) else (
        f"{_minutes(train_s)}{shared} + "
        f"{'no analysis' if math.isnan(analysis_s) else _minutes(analysis_s)}")
    load = record["load"].get(os.path.basename(group.sweep_dir)) if group else None
    keys = [run_all.run_key(group, r["name"]) for r in group.runs] if group else []
    cpu = [record["cpu"][k] for k in keys if k in record["cpu"]]
    wall = [record["runs"][k] for k in keys if k in record["cpu"] and k in record["runs"]]
    cores = f"{sum(cpu) / sum(wall):.2f}" if cpu and sum(wall) > 0 else "-"
    load_text = f"{load[0]:.1f} -> {load[1]:.1f}" if load else "-"
    lines.append(f"| {folder} | {n} | {measured} | {load_text} | {cores} | "
                 f"{estimate / 60:.0f} min |")
  return lines


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=15)
  p.add_argument("--workdir", default=None)
  p.add_argument("--reuse", action="store_true", help="estimate from WORKDIR/probes.json")
  p.add_argument("--measured", default=None,
                 help="an experiments.run_all --out directory: its measured times too")
  args = p.parse_args(argv)
  root = args.workdir or tempfile.mkdtemp(prefix="bench_experiments_")
  saved = os.path.join(root, "probes.json")
  if args.reuse:
    with open(saved) as f:
      probes, (load0, load1) = (lambda d: (d["probes"], d["load"]))(json.load(f))
  else:
    load0 = os.getloadavg()[0]
    probes = [measure(*pr, args.steps, root) for pr in PROBES]
    load1 = os.getloadavg()[0]
    with open(saved, "w") as f:
      json.dump({"probes": probes, "load": [load0, load1]}, f)
  model = {}
  for arch in {pr["arch"] for pr in probes}:
    sel = [pr for pr in probes if pr["arch"] == arch]
    b, a = np.polyfit([pr["flops"] for pr in sel], [pr["step_s"] for pr in sel], 1)
    model[arch] = (max(a, 0.0), b)
  overhead = float(np.median([pr["overhead_s"] for pr in probes]))
  rows = []
  for folder in sorted(d for d in os.listdir(REPO / "experiments") if d[:2].isdigit()):
    sweep = exp_common.load_module(REPO / "experiments" / folder / "sweep.py")
    total = 0.0
    entries = sweep.get_sweep("cpu")
    for e in entries:
      cfg = exp_common.load_config(e)
      a, b = model[cfg.model.arch]
      total += overhead + cfg.train.num_steps * (a + b * _step_flops(cfg))
    rows.append((folder, len(entries), total))
  lines = [HEADING, "",
           f"`python bench/bench_experiments.py --steps {args.steps}` on {environment()}; "
           f"load average {load0:.1f} -> {load1:.1f} during the run (other jobs shared the "
           "cores, so these are upper bounds).", "",
           "Measured (steady state, compilation excluded; overhead = compile + data + eval + "
           "checkpoint of one run):", "",
           "| arch | n_layer | d_model | batch (seqs x 128) | N | s/step | run overhead (s) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  lines += [f"| {pr['arch']} | {pr['n_layer']} | {pr['d_model']} | {pr['batch']} | "
            f"{pr['n_params']:,} | {pr['step_s']:.3f} | {pr['overhead_s']:.1f} |" for pr in probes]
  lines += [""] + (_measured_table(rows, args.measured) if args.measured else [
      "Estimated CPU time of each experiment's CPU sweep (s/step = a + b x FLOPs/step fitted "
      "per architecture, plus the median overhead per run):", "",
      "| experiment | runs | estimated CPU time |", "| --- | --- | --- |"] + [
      f"| {f} | {n} | {t / 60:.0f} min |" for f, n, t in rows])
  text = "\n".join(lines) + "\n"
  print(text)
  write_section(text, HEADING)
  return 0


if __name__ == "__main__":
  sys.exit(main())
