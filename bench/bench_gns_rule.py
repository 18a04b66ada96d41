"""Where does the GNS follow the loss, and where the LR schedule? Measured on a study's runs.

    python bench/bench_gns_rule.py STUDY_DIR     # e.g. demo_out/runs after `make demo`

Bins every GNS reading (gns/b_simple_tokens, after the warmup and one EMA horizon) by the
learning rate at its step as a fraction of the run's peak, and reports per bin the local
log-log slope d log B_simple / d log L (median over runs; Kaplan's law B_crit = B_*/L^(1/a_B)
has slope -1/a_B, -4.8 for the paper's 0.21), how far B_simple grew within the bin, and
how far the loss fell. A bin whose slope is several times steeper than the full-LR bins
is the schedule's hook: B_simple climbs while the loss stands still. Writes the "GNS and the
LR schedule" section of BENCHMARKS.md; `scaling.bcrit.GNS_MIN_LR_FRACTION` is chosen from it.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import common  # noqa: F401  (puts the repo on sys.path)
from common import publish

from scaling_jax.scaling import bcrit, runs

BINS = ((0.8, 1.01), (0.6, 0.8), (0.4, 0.6), (0.2, 0.4), (0.0, 0.2))
MATCH_BINS = ((0.8, 1.01), (0.6, 0.8), (0.4, 0.6), (0.2, 0.4), (0.1, 0.2), (0.0, 0.1))
FLOORS = (0.5, 0.2, 0.1, 0.05)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("study")
  p.add_argument("--no-write", action="store_true")
  args = p.parse_args()
  study = runs.read_runs(args.study)
  pts = bcrit.gns_points(study, min_lr_fraction=0.0)
  lines = ["## GNS and the LR schedule", "",
           f"`python bench/bench_gns_rule.py {args.study}` on the demo's {len(study)} runs "
           "(`make demo`: cosine schedule to zero over 400 steps, GNS logged every 10 steps, "
           "readings after the warmup and one EMA horizon).", "",
           "Per run and LR bin: the local slope d log B_simple / d log L, how much B_simple grew "
           "and the loss fell within the bin (medians over runs):", "",
           "| LR / peak LR | readings | slope | B_simple growth | loss drop |",
           "| --- | --- | --- | --- | --- |"]
  for lo, hi in BINS:
    slopes, growth, drop, n = [], [], [], 0
    for name in np.unique(pts.run):
      m = (pts.run == name) & pts.kept & (pts.lr_fraction >= lo) & (pts.lr_fraction < hi)
      n += int(m.sum())
      if m.sum() >= 3:
        slopes.append(np.polyfit(np.log(pts.loss[m]), np.log(pts.b_simple[m]), 1)[0])
        growth.append(pts.b_simple[m][-1] / pts.b_simple[m][0])
        drop.append(1 - pts.loss[m][-1] / pts.loss[m][0])
    med = lambda v, f: f.format(np.median(v)) if v else "-"
    lines.append(f"| {lo:.1f}-{min(hi, 1.0):.1f} | {n} | {med(slopes, '{:.1f}')} | "
                 f"{med(growth, '{:.2f}x')} | {med(drop, '{:.1%}')} |")
  # Matched loss: B_simple of the other runs / the largest run's at full LR, at the same loss.
  big = max(study, key=lambda r: r.n_params).name
  ref = (pts.run == big) & pts.kept & (pts.lr_fraction >= 0.8)
  order = np.argsort(pts.loss[ref])
  ref_l, ref_b = pts.loss[ref][order], np.log(pts.b_simple[ref][order])
  lines += ["", f"At a matched loss: B_simple of the other runs over the largest run's ({big}) "
            f"at LR >= 0.8 x peak, over its loss range {ref_l.min():.2f}-{ref_l.max():.2f}:", "",
            "| LR / peak LR | readings | median ratio |", "| --- | --- | --- |"]
  for lo, hi in MATCH_BINS:
    m = (pts.kept & (pts.run != big) & (pts.lr_fraction >= lo) & (pts.lr_fraction < hi)
         & (pts.loss >= ref_l.min()) & (pts.loss <= ref_l.max()))
    if m.any():
      ratio = np.exp(np.median(np.log(pts.b_simple[m]) - np.interp(pts.loss[m], ref_l, ref_b)))
      lines.append(f"| {lo:.1f}-{min(hi, 1.0):.1f} | {int(m.sum())} | {ratio:.2f} |")
  lines += ["", "The law B_simple = B_*/L^(1/alpha_B) x (LR/peak)^-gamma fitted to the readings "
            "at LR >= a floor (`scaling.bcrit.fit_gns_law`, 200 run-bootstrap resamples):", "",
            "| LR floor | readings | alpha_B [95%] | B_* (tokens) | gamma [95%] | alpha_B without "
            "the LR term |", "| --- | --- | --- | --- | --- | --- |"]
  for floor in FLOORS:
    kept = bcrit.gns_points(study, min_lr_fraction=floor)
    law = bcrit.fit_gns_law(kept, bootstrap=200)
    plain = bcrit.fit_gns_law(dataclasses.replace(kept, lr_fraction=np.full(
        len(kept.loss), np.nan)), bootstrap=0)
    a_iv, g_iv = law.alpha_b_interval, law.lr_exponent_interval
    lines.append(f"| {floor:g} | {law.n_points} | {law.alpha_b:.3f} [{a_iv[0]:.3f}, "
                 f"{a_iv[1]:.3f}] | {law.b_star:.3g} | {law.lr_exponent:.2f} [{g_iv[0]:.2f}, "
                 f"{g_iv[1]:.2f}] | {plain.alpha_b:.3f} |")
  lines += ["", f"Rule in use: readings at LR >= {bcrit.GNS_MIN_LR_FRACTION:g} x peak "
            "(`scaling.bcrit.GNS_MIN_LR_FRACTION`), with the LR term."]
  publish(lines, "## GNS and the LR schedule", write=not args.no_write)


if __name__ == "__main__":
  main()
