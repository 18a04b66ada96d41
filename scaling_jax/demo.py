"""`scaling-jax demo`: a miniature scaling study, end to end, on the embedded corpus.

data (stdlib corpus, BPE 4096, built once) -> a size sweep of 5 Transformers spanning 32x in
non-embedding N, each trained with GNS in its own process (`scaling-jax sweep`) -> fit of
L(N, S_min) on all but the largest -> its prediction of the largest model's learning curve
against what it did -> L(N) exponent with interval, B_crit from the GNS, the
compute-efficient frontier -> DEMO_OUT/report/report.html (+ PNGs, report.json).

Rerunning resumes: finished runs are skipped, interrupted ones continue from checkpoints.

Budget (the default --scale small): `make demo` must finish in 20 min on a 2-core laptop
CPU, leaving ~15 min for training. All five models train S = 400 steps of B = 32 x 128 =
4096 tokens (1.6 M tokens each, 0.18 epochs of the 9.2 M-token corpus: no repetition),
GNS on, n_ctx 128, vocab 4096 (the 4096-way unembedding dominates the small models).
Measured time of each whole run (400 steps + start-up/compile + 20 evals) in the default
two-at-a-time sweep, on a quiet 2-core CPU (BENCHMARKS.md "Demo"):
  run        (n_layer, d_model)   N        wall s
  L2_d32     (2, 32)              24.6k     46
  L2_d48     (2, 48)              55.3k     67
  L3_d64     (3, 64)              147k     111
  L4_d96     (4, 96)              442k     221
  L4_d128    (4, 128)             786k     317
The whole demo: 7.9-8.5 min wall in two runs (training 7.5-8.1 min, largest-first packing
of two runs at a time: XLA's two threads make one run only 1.1-1.25x faster than one core),
914-979 CPU-s.
Add ~30 s for a cold data build and the pip install on a first run: well under 20 min.
Larger studies: --scale medium (7 sizes to N = 2.7M, 2400 steps; ~3 h on 2 cores, estimated)
and --scale large (8 sizes to N = 38M, 8000 steps; for an accelerator). Another corpus:
  scaling-jax demo --config.data.name=text_files --config.data.paths='corpus/*.txt'
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from scaling_jax import data as data_lib
from scaling_jax import errors, preflight
from scaling_jax import report as report_lib
from scaling_jax import sweep as sweep_lib
from scaling_jax.config import ConfigError, parse_overrides
from scaling_jax.scaling import bcrit as bcrit_lib
from scaling_jax.scaling.laws import FitError

CONFIG = os.path.join(sweep_lib.CONFIGS_DIR, "cpu_demo.py")

# Each scale: model shapes (n_layer, d_model), d_ff = 4 d_model, and the training settings
# every run shares (same data, tokenizer, batch, steps, schedule and seed).
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {  # for tests: seconds per run
        "shapes": [(1, 16), (1, 24), (2, 32), (2, 48)],
        "train": {"model.n_ctx": 32, "train.batch_size": 16, "train.num_steps": 40,
                  "train.log_every": 4, "train.eval_every": 4, "train.ckpt_every": 40,
                  "optim.warmup_steps": 4, "data.eval_batches": 2,
                  "gns.ema": 0.8},  # an EMA horizon of 5 steps: GNS readings for B_crit(L)
        "bootstrap": 50,
    },
    "small": {  # the default: ~8 min of training on 2 CPU cores
        "shapes": [(2, 32), (2, 48), (3, 64), (4, 96), (4, 128)],
        "train": {"model.n_ctx": 128, "train.batch_size": 32, "train.num_steps": 400,
                  "train.log_every": 10, "train.eval_every": 20, "train.ckpt_every": 100,
                  "optim.warmup_steps": 40, "data.eval_batches": 4},
        "bootstrap": 200,
    },
    "medium": {  # ~3 h on 2 CPU cores (estimated)
        "shapes": [(2, 32), (2, 48), (3, 64), (4, 96), (4, 128), (6, 160), (6, 192)],
        "train": {"model.n_ctx": 128, "train.batch_size": 32, "train.num_steps": 2400,
                  "train.log_every": 20, "train.eval_every": 60, "train.ckpt_every": 300,
                  "optim.warmup_steps": 100, "data.eval_batches": 8},
        "bootstrap": 400,
    },
    "large": {  # an accelerator: N from 25k to 38M
        "shapes": [(2, 32), (2, 64), (4, 96), (4, 128), (6, 192), (8, 256), (8, 384), (12, 512)],
        "train": {"model.n_ctx": 256, "train.batch_size": 64, "train.num_steps": 8000,
                  "train.log_every": 50, "train.eval_every": 200, "train.ckpt_every": 1000,
                  "optim.warmup_steps": 300, "data.eval_batches": 16},
        "bootstrap": 400,
    },
}


def n_heads_for(d_model: int) -> int:
  """Heads of 16 dimensions (at least 1, and dividing d_model)."""
  h = max(1, d_model // 16)
  while d_model % h:
    h -= 1
  return h


def demo_runs(scale: str, overrides: dict[str, Any] | None = None,
              config: str = CONFIG) -> list[dict[str, Any]]:
  """The sweep of a scale: one run per shape, largest first (best packing in parallel)."""
  if scale not in SCALES:
    raise ConfigError(f"--scale {scale!r} is not one of {sorted(SCALES)}")
  s = SCALES[scale]
  runs = []
  for n_layer, d in sorted(s["shapes"], key=lambda nd: -nd[0] * nd[1] ** 2):
    o = {"model.n_layer": n_layer, "model.d_model": d, "model.d_ff": 4 * d,
         "model.n_heads": n_heads_for(d), **s["train"], **(overrides or {})}
    runs.append({"name": f"L{n_layer}_d{d}", "config": config, "overrides": o})
  return runs


def build_data(config_file: str, overrides: dict[str, Any], stream=sys.stderr):
  """Builds (or finds cached) the dataset and tokenizer every run shares, once, up front."""
  config = sweep_lib.load_run_config(config_file, overrides)
  where = data_lib.sources.data_dir(config)
  stream.write(f"[demo] preparing dataset {config.data.name!r} and its tokenizer (vocab "
               f"{config.model.vocab_size}) once for every run, cached in {where}; a first "
               "build takes ~30 s...\n")
  stream.flush()
  t0 = time.monotonic()
  info = data_lib.prepare(config)
  stream.write(f"[demo] data ready in {time.monotonic() - t0:.0f} s: {info.name} "
               f"{info.dataset_tokens:,} training tokens\n")
  return info


@errors.boundary("demo")
def main(argv: list[str]) -> int:
  parser = errors.ArgumentParser(
      prog="scaling-jax demo",
      description="A miniature scaling-law study end to end: data, size sweep with GNS, "
                  "fit, held-out extrapolation, B_crit, frontier, HTML report.")
  parser.add_argument("--out", default="demo_out", help="study directory (runs/ and report/)")
  parser.add_argument("--scale", default="small", choices=sorted(SCALES),
                      help="small: ~11 min of training on 2 CPU cores (default); medium: ~3 h; "
                           "large: for an accelerator; tiny: for tests")
  parser.add_argument("--parallel", type=errors.positive_int, default=min(2, os.cpu_count() or 1),
                      help="trainings at once (default 2: on a 2-core CPU two processes "
                           "use the cores better than one process's threads)")
  parser.add_argument("--bootstrap", type=errors.non_negative_int, default=None,
                      help="bootstrap resamples")
  parser.add_argument("--seed", type=errors.non_negative_int, default=0,
                      help="seed of every run and the fits")
  parser.add_argument("--config", default=CONFIG, help="the model family's config file")
  parser.add_argument("--b-crit", default="gns", metavar="{gns,kaplan,none,NUMBER}",
                      help="B_crit(L) for S_min = S/(1+B_crit/B), C_min and the frontier: "
                           "the law fitted to the runs' pooled GNS (default), Kaplan's, no "
                           "adjustment, or a constant in tokens")
  args, rest = parser.parse_known_args(argv)
  t0 = time.monotonic()
  try:
    bcrit_lib.parse_spec(args.b_crit)
    overrides = {"seed": args.seed, **parse_overrides(rest)}
    runs = demo_runs(args.scale, overrides, args.config)
    preflight.check_output_dir(args.out, "--out")
    build_data(args.config, runs[0]["overrides"])
  except (ConfigError, FitError) as e:
    print(f"scaling-jax demo: error: {e}", file=sys.stderr)
    return 2
  runs_dir = os.path.join(args.out, "runs")
  print(f"[demo] training {len(runs)} models ({', '.join(r['name'] for r in runs)}) into "
        f"{runs_dir}, {args.parallel} at a time", file=sys.stderr)
  t_train = time.monotonic()
  results = sweep_lib.run_sweep(runs, runs_dir, parallel=args.parallel, progress_every_s=20)
  train_s = time.monotonic() - t_train
  text, code = sweep_lib.summarize(results)
  print(f"[demo] sweep: {text} in {train_s / 60:.1f} min", file=sys.stderr)
  if code == sweep_lib.EX_TEMPFAIL:
    print("[demo] interrupted: rerun the same command to resume", file=sys.stderr)
    return code
  if code:
    print(f"[demo] some runs failed (see {runs_dir}/NAME/train.log); the report uses the "
          "others. Rerun the same command to retry them.", file=sys.stderr)
  bootstrap = args.bootstrap if args.bootstrap is not None else SCALES[args.scale]["bootstrap"]
  print("[demo] fitting (bootstrap intervals) and writing the report...", file=sys.stderr)
  t_fit = time.monotonic()
  try:
    a, paths = report_lib.report(runs_dir, os.path.join(args.out, "report"), bootstrap=bootstrap,
                                 seed=args.seed, b_crit=bcrit_lib.parse_spec(args.b_crit))
  except FitError as e:
    print(f"scaling-jax demo: error: {e}", file=sys.stderr)
    return 2
  d = a.to_dict()
  summary = {"scale": args.scale, "parallel": args.parallel, "runs": [r["name"] for r in runs],
             "train_wall_s": train_s,
             "run_wall_s": {k: r.wall_s for k, r in results.items()},
             "run_cpu_s": {k: r.cpu_s for k, r in results.items()},
             "run_steps_per_s": {r["name"]: r["steps"] / r["time_s"] if r["time_s"] else None
                                 for r in d["runs"]},
             "fit_report_wall_s": time.monotonic() - t_fit,
             "total_wall_s": time.monotonic() - t0, "sweep": text,
             "L_N_Smin": d["L_N_Smin"], "B_crit": d["b_crit"],
             "heldout": {k: {f: v for f, v in h.items() if f != "fit"}
                         for k, h in d["heldout"].items()},
             "report": paths["html"]}
  sweep_lib.rundir.write_json_atomic(os.path.join(args.out, "demo.json"), summary)
  print(f"[demo] done in {summary['total_wall_s'] / 60:.1f} min "
        f"(training {train_s / 60:.1f} min); open {paths['html']}")
  print("[demo] the critical batch measured three ways (GNS, batch sweep, branched probes): "
        "scaling-jax critical-batch --out critical_batch_out")
  return code


if __name__ == "__main__":
  sys.exit(main())
