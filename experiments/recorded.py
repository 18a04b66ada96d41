"""Small recorded copies of real sweeps, for the analyses' regression tests.

`record(SWEEP_DIR, OUT.json)` keeps what the analyses read of each run (config.json's config
and facts, its status, and the metrics.jsonl columns in KEEP, floats to 6 significant
digits); `materialize(OUT.json, DIR)` writes them back as run directories that
`scaling_jax.scaling.runs` reads like the originals. Checkpoints are not kept: with
--positions, each run's loss by context position on its final checkpoint (experiment 8,
`common.loss_by_position`) is recorded instead, and `positions(OUT.json)` returns it.

Usage: python -m experiments.recorded SWEEP_DIR OUT.json [--every K] [--positions]
(--every K: keep every K-th metrics record, and always the last)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

import numpy as np

from experiments import common
from scaling_jax import errors, metrics, rundir
from scaling_jax import metric_keys as keys

KEEP = (keys.STEP, keys.TOKENS, keys.FLOPS, keys.TIME_S, keys.LOSS, keys.LR, keys.EPOCH,
        keys.B_SIMPLE_TOKENS)
KEEP_PREFIXES = ("eval/",)


def _round(v: Any) -> Any:
  return float(f"{v:.6g}") if isinstance(v, float) else v


def thin_record(rec: dict[str, Any]) -> dict[str, Any]:
  return {k: _round(v) for k, v in rec.items() if k in KEEP or k.startswith(KEEP_PREFIXES)}


def record(sweep_dir: str, out: str, every: int = 1, positions: bool = False) -> dict[str, Any]:
  """Writes (and returns) the record of every run directory directly below `sweep_dir`
  (with `positions`, each one's loss by context position on its final checkpoint)."""
  if not os.path.isdir(sweep_dir):
    raise common.ExperimentError(f"{sweep_dir} is not a directory; pass a sweep directory")
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
    if positions:
      runs[name]["loss_by_position"] = [_round(float(v)) for v in common.loss_by_position(path)]
  if not runs:
    raise common.ExperimentError(f"no run directories with config.json under {sweep_dir}; "
                                 "pass a sweep directory")
  flags = f"--every {every}" + (" --positions" if positions else "")
  data = {"source": f"python -m experiments.recorded {sweep_dir} {out} {flags}", "runs": runs}
  with errors.writing(out, "OUT.json"), open(out, "w") as f:  # one line per metrics record
    f.write("{\"source\": %s, \"runs\": {\n" % json.dumps(data["source"]))
    f.write(",\n".join(
        f"{json.dumps(name)}: {{\"config\": {json.dumps(run['config'], sort_keys=True)}, "
        f"\"facts\": {json.dumps(run['facts'], sort_keys=True)}, "
        f"\"status\": {json.dumps(run['status'])}, "
        + (f"\"loss_by_position\": {json.dumps(run['loss_by_position'])}, "
           if "loss_by_position" in run else "")
        + "\"metrics\": [\n" + ",\n".join(json.dumps(r) for r in run["metrics"]) + "]}"
        for name, run in runs.items()))
    f.write("}}\n")
  return data


def load(path: str) -> dict[str, Any]:
  """A recording (`record`'s JSON); DamagedRunFile naming it if it cannot be read."""
  data = rundir.read_json(path, {"runs": dict})
  if data is None:
    raise common.ExperimentError(f"{path} does not exist; write it with "
                                 "`python -m experiments.recorded SWEEP_DIR OUT.json`")
  return data


def positions(path: str) -> dict[str, np.ndarray]:
  """{run name: loss by context position [n_ctx]} of the runs recorded with --positions."""
  return {name: np.asarray(run["loss_by_position"], float)
          for name, run in load(path)["runs"].items() if "loss_by_position" in run}


def materialize(path: str, dest: str) -> str:
  """The recorded runs of `path` as run directories under `dest`; returns `dest`."""
  for name, run in load(path)["runs"].items():
    run_dir = os.path.join(dest, name)
    os.makedirs(run_dir, exist_ok=True)
    rundir.write_json_atomic(os.path.join(run_dir, rundir.CONFIG_FILE),
                             {"config": run["config"], "facts": run["facts"]})
    rundir.write_status(run_dir, run["status"])
    with open(os.path.join(run_dir, metrics.METRICS_FILE), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in run["metrics"])
  return dest


@errors.boundary("experiments.recorded")
def main(argv: Sequence[str]) -> int:
  p = errors.ArgumentParser(prog="python -m experiments.recorded",
                            description=__doc__.splitlines()[0])
  p.add_argument("sweep_dir")
  p.add_argument("out")
  p.add_argument("--every", type=errors.positive_int, default=1,
                 help="keep every K-th metrics record")
  p.add_argument("--positions", action="store_true",
                 help="record each run's loss by context position (final checkpoint)")
  args = p.parse_args(argv)
  data = record(args.sweep_dir, args.out, args.every, args.positions)
  print(f"{args.out}: {len(data['runs'])} runs, {os.path.getsize(args.out)} bytes")
  return 0


if __name__ == "__main__":
  sys.exit(main())
