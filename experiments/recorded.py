"""Small recorded copies of real sweeps, for the analyses' regression tests.

`record(SWEEP_DIR, OUT.json)` keeps what the analyses read of each run (config.json's config
and facts, its status, and the metrics.jsonl columns in KEEP, floats to 6 significant
digits); `materialize(OUT.json, DIR)` writes them back as run directories that
`scaling_jax.scaling.runs` reads like the originals (no checkpoints: experiment 8's
per-position loss needs the real runs).

Usage: python -m experiments.recorded SWEEP_DIR OUT.json [--every K]
(--every K: keep every K-th metrics record, and always the last)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from scaling_jax import metric_keys as keys
from scaling_jax import metrics, rundir

KEEP = (keys.STEP, keys.TOKENS, keys.FLOPS, keys.TIME_S, keys.LOSS, keys.LR, keys.EPOCH,
        keys.B_SIMPLE_TOKENS)
KEEP_PREFIXES = ("eval/",)


def _round(v: Any) -> Any:
  return float(f"{v:.6g}") if isinstance(v, float) else v


def thin_record(rec: dict[str, Any]) -> dict[str, Any]:
  return {k: _round(v) for k, v in rec.items() if k in KEEP or k.startswith(KEEP_PREFIXES)}


def record(sweep_dir: str, out: str, every: int = 1) -> dict[str, Any]:
  """Writes (and returns) the record of every run directory directly below `sweep_dir`."""
  runs = {}
  for name in sorted(os.listdir(sweep_dir)):
    path = os.path.join(sweep_dir, name)
    cfg = rundir.read_config(path) if os.path.isdir(path) else None
    if not cfg:
      continue
    recs = metrics.read_metrics(path)
    kept = [r for i, r in enumerate(recs) if i % every == 0 or i == len(recs) - 1]
    runs[name] = {"config": cfg["config"], "facts": cfg["facts"],
                  "status": rundir.read_status(path)["status"],
                  "metrics": [thin_record(r) for r in kept]}
  if not runs:
    raise SystemExit(f"error: no run directories with config.json under {sweep_dir}; "
                     "pass a sweep directory")
  data = {"source": f"python -m experiments.recorded {sweep_dir} {out} --every {every}",
          "runs": runs}
  with open(out, "w") as f:  # compact: one line per run's metrics record
    f.write("{\"source\": %s, \"runs\": {\n" % json.dumps(data["source"]))
    f.write(",\n".join(
        f"{json.dumps(name)}: {{\"config\": {json.dumps(run['config'], sort_keys=True)}, "
        f"\"facts\": {json.dumps(run['facts'], sort_keys=True)}, "
        f"\"status\": {json.dumps(run['status'])}, \"metrics\": [\n"
        + ",\n".join(json.dumps(r) for r in run["metrics"]) + "]}"
        for name, run in runs.items()))
    f.write("}}\n")
  return data


def materialize(path: str, dest: str) -> str:
  """The recorded runs of `path` as run directories under `dest`; returns `dest`."""
  with open(path) as f:
    data = json.load(f)
  for name, run in data["runs"].items():
    run_dir = os.path.join(dest, name)
    os.makedirs(run_dir, exist_ok=True)
    rundir.write_json_atomic(os.path.join(run_dir, rundir.CONFIG_FILE),
                             {"config": run["config"], "facts": run["facts"]})
    rundir.write_status(run_dir, run["status"])
    with open(os.path.join(run_dir, metrics.METRICS_FILE), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in run["metrics"])
  return dest


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("sweep_dir")
  p.add_argument("out")
  p.add_argument("--every", type=int, default=1, help="keep every K-th metrics record")
  args = p.parse_args(argv)
  data = record(args.sweep_dir, args.out, max(1, args.every))
  print(f"{args.out}: {len(data['runs'])} runs, {os.path.getsize(args.out)} bytes")
  return 0


if __name__ == "__main__":
  sys.exit(main())
