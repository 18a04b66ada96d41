"""Training on a bucket that fails requests (issue #27): what the storage retries cost a run,
and that they cost nothing else.

  python bench/bench_bucket_faults.py [--quick] [--fail 0,0.01,0.05,0.2] [--seed 0] [--write]

Starts the GCS emulator (tests/gcs_emulator.py) and, for each fraction of failed requests, a
fault proxy in front of it (tests/fault_proxy.py: request i is answered 503 iff the i-th
draw of random.Random(seed) is below the fraction, so a rerun fails the same requests, up to
the order of concurrent ones). A tiny training run (configs/tiny.py on a token array,
tests/helpers.write_token_array) then trains with its run directory on the bucket, as
`python -m scaling_jax.cli train --workdir gs://...` in a subprocess whose gcsfs and
tensorstore reach the bucket only through the proxy. For each fraction it reports:

- whether the run finished (exit code 0, status.json `finished`) and its wall time;
- the retries counted by scaling_jax.storage: the last record's `storage/retries` in
  metrics.jsonl (the final checkpoint save comes after it) and the run's closing line on
  stderr (all of it); and the warning lines it printed;
- the 503s the proxy injected (gcsfs / tensorstore / other, by User-Agent); each library
  retries each one it reads (a 503 answered to a request gcsfs had already dropped is not);
- metrics lines lost and duplicated: the raw lines of metrics.jsonl and its segments, per
  step, against the 0% run's (read through the emulator directly, without faults);
- whether the final train and eval losses equal the 0% run's (`==`);
- the checkpoint steps the run kept, and how many of them fail to restore
  (scaling_jax.checkpoint.restore_from_run, read-only, into the run's abstract state).

It prints a markdown table and the command line (`--write`: also into BENCHMARKS.md). Runs on
the CPU; `--quick`: 20 steps instead of 40. The 0% run goes first (the reference).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the checks restore on the CPU, as it trains
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import REPO, environment, publish  # noqa: E402

SECTION = "## Training on a bucket that fails requests"
CONFIG = "configs/tiny.py"
RUN_TIMEOUT_S = 3600
CLOSING = re.compile(r"^storage: (\d+) storage request\(s\) retried", re.M)


def overrides(array_path: pathlib.Path, steps: int) -> list[str]:
  """configs/tiny.py on the token array: a record every 2 steps, an eval and a checkpoint
  every 10 (2 kept)."""
  return ["--config.data.name=array", f"--config.data.array_path={array_path}",
          "--config.model.vocab_size=128", "--config.train.progress=False",
          f"--config.train.num_steps={steps}", "--config.train.log_every=2",
          "--config.train.eval_every=10", "--config.train.ckpt_every=10"]


def train(workdir: str, proxy_url: str, args: list[str], log: pathlib.Path) -> dict[str, Any]:
  """One training subprocess through the proxy: {rc, wall_s, stderr}."""
  from tests import gcs_emulator
  env = {**os.environ, **gcs_emulator.emulator_env(proxy_url), "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
  t0 = time.perf_counter()
  with open(log, "w") as f:
    try:
      rc = subprocess.run([sys.executable, "-m", "scaling_jax.cli", "train", "--config", CONFIG,
                           "--workdir", workdir, *args], env=env, cwd=REPO, stdout=f,
                          stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
      rc = None
  return {"rc": rc, "wall_s": time.perf_counter() - t0, "output": log.read_text()}


def raw_steps(run: str) -> collections.Counter:
  """How many lines of metrics.jsonl and its segments hold each step (whole lines only)."""
  from scaling_jax import metrics, rundir
  counts: collections.Counter = collections.Counter()
  for f in [f"{run}/{metrics.METRICS_FILE}", *metrics.segment_paths(run)]:
    try:
      data = rundir.read_bytes(f)
    except FileNotFoundError:
      continue
    for line in data.splitlines():
      try:
        counts[json.loads(line)["step"]] += 1
      except (ValueError, KeyError, TypeError):
        counts["garbled"] += 1
  return counts


def failed_restores(run: str, config) -> tuple[list[int], int]:
  """(checkpoint steps the run kept, how many of them fail to restore)."""
  import logging
  from scaling_jax import accounting, checkpoint, model as model_lib, optim, sharding
  from scaling_jax import train as train_lib
  logging.getLogger("absl").setLevel(logging.ERROR)  # "read only" notes of each restore
  steps = checkpoint.finished_steps(run)
  mesh = sharding.make_mesh(config)
  n_params = accounting.counts(config.model).n_params
  opt, _ = optim.make(config.optim, int(config.train.num_steps), n_params)
  abstract = train_lib.abstract_state(config, model_lib.build(config.model), opt, mesh)
  failures = 0
  for step in steps:
    try:
      state, _, _ = checkpoint.restore_from_run(run, step, abstract)
      if int(state.step) != step:
        raise ValueError(f"step {step} holds the state of step {int(state.step)}")
    except Exception as e:  # noqa: BLE001 -- counted and shown
      print(f"  {run} checkpoint {step} fails to restore: {e}", file=sys.stderr)
      failures += 1
  return steps, failures


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--fail", default="0,0.01,0.05,0.2",
                      help="fractions of requests answered 503, comma-separated (0 first)")
  parser.add_argument("--seed", type=int, default=0, help="the proxy's fault schedule")
  parser.add_argument("--quick", action="store_true", help="20 steps instead of 40")
  parser.add_argument("--write", action="store_true", help="also write BENCHMARKS.md")
  args = parser.parse_args(argv)
  fractions = [float(x) for x in args.fail.split(",")]
  if fractions[0] != 0:
    fractions.insert(0, 0.0)  # the reference
  steps = 20 if args.quick else 40

  from tests import fault_proxy, gcs_emulator
  from tests.helpers import write_token_array
  from scaling_jax import config as config_lib, metric_keys as keys, metrics, rundir

  rows, ref = [], None
  with tempfile.TemporaryDirectory(prefix="bench_bucket_faults_") as tmp:
    tmp_path = pathlib.Path(tmp)
    run_args = overrides(write_token_array(tmp_path), steps)
    config = config_lib.load_config(str(REPO / CONFIG), run_args)
    with gcs_emulator.running(tmp_path / "emulator") as url:
      for i, fail in enumerate(fractions):
        run = f"gs://{gcs_emulator.BUCKET}/bench/{i}-fail{fail:g}"
        with fault_proxy.FaultProxy(url, fail, args.seed) as proxy:
          out = train(run, proxy.url, run_args, tmp_path / f"run{i}.log")
          stats = proxy.stats()
        with gcs_emulator.environment(url):  # the checks: straight to the emulator
          status = rundir.read_status(run)["status"]
          records = metrics.read_metrics(run)
          lines = raw_steps(run)
          kept, bad = failed_restores(run, config)
        closing = CLOSING.search(out["output"])
        row = {
            "fail": fail, "finished": out["rc"] == 0 and status == "finished",
            "rc": out["rc"], "status": status, "wall_s": out["wall_s"],
            "retries_logged": records[-1].get(keys.STORAGE_RETRIES) if records else None,
            "retries_run": int(closing.group(1)) if closing else 0,
            "warnings": out["output"].count("WARNING: storage is slowing this run"),
            "stats": stats, "lines": lines, "kept": kept, "bad_restores": bad,
            "last": records[-1] if records else {},
        }
        if ref is None:
          ref = row
        row["lost"] = sum(max(0, n - row["lines"][s]) for s, n in ref["lines"].items())
        row["dup"] = sum(max(0, n - ref["lines"][s]) for s, n in row["lines"].items())
        row["same_loss"] = all(row["last"].get(k) == ref["last"].get(k)
                               for k in (keys.LOSS, keys.EVAL_LOSS))
        rows.append(row)
        by = stats["by_client"]
        print(f"{fail:.0%}: rc {out['rc']}, {status}, {out['wall_s']:.0f} s, retries "
              f"{row['retries_logged']} logged / {row['retries_run']} in all, 503s "
              f"{stats['faults']} (gcsfs {by['gcsfs']['faults']}, tensorstore "
              f"{by['tensorstore']['faults']}) of {stats['requests']} requests", flush=True)
        if not row["finished"]:
          print(out["output"][-3000:], file=sys.stderr)

  cmd = "python bench/bench_bucket_faults.py" + (" --quick" if args.quick else "") + (
      f" --fail {args.fail}" if args.fail != "0,0.01,0.05,0.2" else "") + (
      f" --seed {args.seed}" if args.seed else "")
  base = rows[0]["wall_s"]
  text = [
      SECTION, "",
      f"`{cmd}`: {steps} steps of configs/tiny.py (array corpus), a record every 2 steps, "
      f"an eval and a checkpoint every 10, the run directory on the local GCS emulator "
      f"behind tests/fault_proxy.py (seed {args.seed}). {environment()}.", "",
      "| requests failed (503) | run finished | wall time (s) | slowdown | retries in "
      "metrics.jsonl | retries, whole run | 503s injected (gcsfs / tensorstore / other) "
      "| requests "
      "| warning lines | metrics lines lost | duplicated | final loss = 0% run | checkpoints "
      "kept | fail to restore |",
      "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- "
      "| ---: |",
  ]
  for r in rows:
    by = r["stats"]["by_client"]
    logged = "n/a" if r["retries_logged"] is None else r["retries_logged"]
    text.append(
        f"| {r['fail']:.0%} | {'yes' if r['finished'] else 'no (' + str(r['status']) + ')'} "
        f"| {r['wall_s']:.0f} | {r['wall_s'] / base:.1f}x | {logged} | {r['retries_run']} "
        f"| {r['stats']['faults']} ({by['gcsfs']['faults']} / {by['tensorstore']['faults']} / "
        f"{by['other']['faults']}) "
        f"| {r['stats']['requests']} | {r['warnings']} | {r['lost']} | {r['dup']} "
        f"| {'yes' if r['same_loss'] else 'no'} | {r['kept']} | {r['bad_restores']} |")
  publish(text, SECTION, write=args.write)
  ok = all(r["finished"] and not r["lost"] and not r["dup"] and r["same_loss"]
           and not r["bad_restores"] for r in rows)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
