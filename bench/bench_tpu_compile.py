"""Which paper-scale preset fits which TPU slice: compiled by XLA's TPU compiler, no TPU needed.

  python bench/bench_tpu_compile.py                       # every preset x slice (hours on 2 cores)
  python bench/bench_tpu_compile.py --presets 125M --slices v5e-16 --results r.jsonl
  python bench/bench_tpu_compile.py --table-only --results r.jsonl   # the table from results

Each preset's train step (GNS on, FSDP over the slice, batch 512 x 1024) is compiled with
`scaling_jax.compile_cli.analyse` for the slice; if XLA's memory per device exceeds the
chip's HBM, the next setting of the ladder (full remat, then micro-batches of 8 and 2
sequences per chip) is tried, so each row states a setting that fits. Beside XLA's figure,
`launch/memory.py:estimate_memory` for the same setting, and their ratio. Results are
appended to a JSON-lines file as they come (a long run can be resumed: rows already there
are not compiled again), and the table goes to BENCHMARKS.md and stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import re
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import REPO, environment, publish  # noqa: E402

sys.path.insert(0, str(REPO / "launch"))
from memory import GiB, PRESETS, estimate_preset  # noqa: E402

from scaling_jax import compile_cli, config as config_lib  # noqa: E402
from scaling_jax.train_cli import load_config  # noqa: E402

HEADING = "## Which preset fits which TPU slice (XLA's TPU compiler)"
SLICES = ("v5e-16", "v4-32", "v6e-16", "v5p-32")  # 16 chips each: 32 sequences per chip
# (name, overrides) tried in order until one fits; the preset's own remat comes first.
LADDER = (("preset", []), ("full remat", ["--config.model.remat=full"]),
          ("full remat, micro-batch 8/chip", ["--config.model.remat=full",
                                              "--config.train.grad_accum=4"]),
          ("full remat, micro-batch 2/chip", ["--config.model.remat=full",
                                              "--config.train.grad_accum=16"]))


def effective(preset: str, overrides: list[str]) -> tuple[str, int]:
  """(remat, grad_accum) of a ladder step: the preset's own remat may already be `full`."""
  config = load_config(str(REPO / "configs" / f"{PRESETS[preset]}.py"), overrides)
  return config.model.remat, int(config.train.grad_accum)


def one(preset: str, slice_name: str, setting: str, overrides: list[str]) -> dict:
  config = load_config(str(REPO / "configs" / f"{PRESETS[preset]}.py"), overrides)
  topology = compile_cli.parse_topology(slice_name)
  report = compile_cli.analyse(config, topology)
  m = config.model
  micro = config.train.batch_size // config_lib.num_micro_batches(config) // report.devices
  est = estimate_preset(preset, micro, report.devices, m.remat)
  return {"preset": preset, "slice": slice_name, "setting": setting, "remat": m.remat,
          "micro_seqs_per_chip": micro, "hbm": report.hbm_bytes,
          "xla_bytes": None if report.memory is None else report.memory.total,
          "memory": None if report.memory is None else dataclasses.asdict(report.memory),
          "compiler_error": report.error, "fits": report.fits, "estimate_bytes": est["total"],
          "xla_flops": report.xla_flops, "flops_exact": report.flops_exact,
          "step_s_estimate": report.step_s_estimate if report.memory else None,
          "mfu_estimate": report.mfu_estimate if report.memory else None,
          "compile_s": report.compile_s}


def setting_label(setting: str) -> str:
  """A ladder step as the overrides that make it (`preset` as it is)."""
  overrides = dict(LADDER)[setting]
  return " ".join(f"`{o.removeprefix('--config.')}`" for o in overrides) or setting


def failure(row: dict) -> str:
  """Why a setting did not fit: XLA's bytes, or the compiler's refusal with its figures."""
  if row["xla_bytes"]:
    return f"{row['xla_bytes'] / GiB:.1f} GiB"
  m = re.search(r"\(([\d.]+G)\) exceeds available HBM \(([\d.]+G)\)", row["compiler_error"])
  return f"refused, temporaries {m[1]} > {m[2]} free" if m else "refused"


def compile_s(tried: list[dict]) -> str:
  """The compile times of a cell's settings, in the order tried."""
  return " + ".join(f"{r['compile_s']:.0f}" for r in tried)


def table(rows: list[dict]) -> list[str]:
  lines = ["| preset | slice (HBM/chip) | setting that fits | XLA GiB/chip | % of HBM "
           "| estimate GiB | XLA / estimate | roofline step (estimate) | tried first "
           "| compile s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for preset in PRESETS:
    for slice_name in SLICES:
      tried = [r for r in rows if r["preset"] == preset and r["slice"] == slice_name]
      if not tried:
        continue
      fit = next((r for r in tried if r["fits"]), None)
      failed = [f"{r['setting']}: {failure(r)}" for r in tried if not r["fits"]]
      hbm = tried[0]["hbm"] / GiB
      if fit is None:
        found = ("none of the ladder" if any(r["setting"] == LADDER[-1][0] for r in tried)
                 else "not yet (ladder unfinished)")
        lines.append(f"| {preset} | {slice_name} ({hbm:.1f} GiB) | {found} | - | - "
                     f"| - | - | - | {'; '.join(failed)} | {compile_s(tried)} |")
        continue
      x = fit["xla_bytes"]  # the estimate as launch/memory.py makes it now:
      e = estimate_preset(preset, fit["micro_seqs_per_chip"],
                          compile_cli.parse_topology(slice_name).chips, fit["remat"])["total"]
      lines.append(
          f"| {preset} | {slice_name} ({hbm:.1f} GiB) | {setting_label(fit['setting'])}: remat "
          f"{fit['remat']}, {fit['micro_seqs_per_chip']} seq/chip per pass | {x / GiB:.2f} "
          f"| {x / fit['hbm']:.0%} | {e / GiB:.2f} | {x / e:.2f} "
          f"| {fit['step_s_estimate'] * 1e3:.0f} ms, MFU {fit['mfu_estimate']:.0%} "
          f"| {'; '.join(failed) or '-'} | {compile_s(tried)} |")
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default=",".join(PRESETS))
  parser.add_argument("--slices", default=",".join(SLICES))
  parser.add_argument("--results", default=str(REPO / "bench" / "tpu_compile_results.jsonl"))
  parser.add_argument("--table-only", action="store_true")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args(argv)
  path = pathlib.Path(args.results)
  rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []
  if not args.table_only:
    for preset in args.presets.split(","):
      for slice_name in args.slices.split(","):
        tried = set()  # (remat, grad_accum) compiled already: a step equal to one is skipped
        for setting, overrides in LADDER:
          train_setting = effective(preset, overrides)
          if train_setting in tried:
            continue
          tried.add(train_setting)
          done = [r for r in rows if (r["preset"], r["slice"], r["setting"]) ==
                  (preset, slice_name, setting)]
          if not done:
            t0 = time.perf_counter()
            done = [one(preset, slice_name, setting, overrides)]
            rows += done
            with path.open("a") as f:
              f.write(json.dumps(done[0]) + "\n")
            print(f"{preset} {slice_name} {setting}: fits={done[0]['fits']} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
          if done[0]["fits"]:
            break
  lines = [HEADING, "", f"`python bench/bench_tpu_compile.py` on {environment()}; the TPU "
           "compiler is libtpu (jax[tpu]), the devices are libtpu's description of each slice.",
           "", "Batch 512 x 1024 tokens, GNS on (2 micro-batches at least), FSDP over the 16 "
           "chips of each slice, AdamW with f32 master weights and bf16 compute, XLA's "
           "attention. XLA = arguments + outputs - donated + temporaries + code of the "
           "compiled step, per chip; estimate = `launch/memory.py:estimate_memory` for the "
           "same micro-batch and remat. Roofline step: the step's XLA FLOPs at the chip's "
           "peak bf16 rate or its HBM traffic at full bandwidth, whichever is slower, with no "
           "communication: an estimate, not a measurement. Compile s: XLA's TPU compile of "
           "each setting tried, on 2 CPU cores shared with other jobs (load varied 3x: "
           "read them as rough).", ""] + table(rows)
  missing = [f"{p} on {s}" for p in PRESETS for s in SLICES
             if not any((r["preset"], r["slice"]) == (p, s) for r in rows)]
  if missing:
    lines += ["", f"Not compiled yet: {', '.join(missing)} (rerun the command: it resumes)."]
  publish(lines, HEADING, write=not args.no_write)
  return 0


if __name__ == "__main__":
  sys.exit(main())
