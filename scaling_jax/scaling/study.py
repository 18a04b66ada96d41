"""One study analysis: runs -> B_crit(L) -> S_min -> L(N, S_min) -> held-out check -> frontier.

`analyze_study(source)` is what `scaling-jax fit DIR`, `scaling-jax report DIR` and the demo
run, so they print the same numbers for the same study:
  1. read the runs (`runs.read_runs`);
  2. choose B_crit(L) once (`bcrit.choose_b_crit`, default: the law fitted to the pooled GNS);
  3. build the learning-curve table with S_min = S/(1 + B_crit(L)/B) (`runs.learning_table`);
  4. fit L(N, S_min) on every run, with bootstrap intervals that resample like the data
     (`fit.fit_law`, resample="auto": parametric, run offsets + AR(1) noise);
  5. fit it again without the largest model and predict that model's curve, for B_crit from
     the GNS, from Kaplan and with no adjustment side by side (each a prediction band);
  6. L(N) on the final losses; the compute-efficient frontier of 4 with the law of 2.
Results are typed (`StudyAnalysis`); `report.py` only renders them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from scaling_jax import rundir
from scaling_jax.scaling import bcrit as bcrit_lib
from scaling_jax.scaling import fit as fit_lib
from scaling_jax.scaling import frontier as frontier_lib
from scaling_jax.scaling import runs as runs_lib
from scaling_jax.scaling.laws import FitError

HELDOUT_COMPARE = ("gns", "kaplan", "none")  # B_crit choices compared on the held-out model
MIN_SIZES_FOR_HELDOUT = 3


@dataclasses.dataclass
class Heldout:
  """L(N, S_min) fitted without the largest model, against what that model did."""
  b_crit: str  # the B_crit(L) source of S_min (gns | kaplan | none | ...)
  run: str
  n_params: float
  steps: np.ndarray
  s_min: np.ndarray
  observed: np.ndarray
  predicted: np.ndarray
  lo: np.ndarray  # prediction band (level of the fit)
  hi: np.ndarray
  fit: fit_lib.FitResult
  law: bcrit_lib.BCritLaw

  @property
  def rel_error(self) -> np.ndarray:
    return self.predicted / self.observed - 1

  def to_dict(self) -> dict[str, Any]:
    rel = self.rel_error
    inside = (self.observed >= self.lo) & (self.observed <= self.hi)
    has_band = bool(np.isfinite(self.lo).any())
    return {
        "b_crit": self.b_crit, "b_crit_law": self.law.to_dict(), "run": self.run,
        "N": self.n_params, "n_points": int(len(rel)),
        "rms_rel_error": float(np.sqrt(np.mean(rel**2))),
        "mean_abs_rel_error": float(np.mean(np.abs(rel))), "final_rel_error": float(rel[-1]),
        "final_step": float(self.steps[-1]), "final_loss_observed": float(self.observed[-1]),
        "final_loss_predicted": float(self.predicted[-1]),
        "final_loss_band": [float(self.lo[-1]), float(self.hi[-1])],
        "fraction_in_band": float(np.mean(inside)) if has_band else None,
        "band": "prediction", "fit": fit_summary(self.fit)}


@dataclasses.dataclass
class StudyAnalysis:
  """Everything `analyze_study` found; `to_dict` is the JSON the report writes."""
  source: str
  runs: list[runs_lib.Run]
  b_crit: bcrit_lib.BCritLaw
  table: dict[str, np.ndarray]
  fit: fit_lib.FitResult | None  # L(N, S_min) on every run
  heldout: dict[str, Heldout]  # by B_crit choice; `b_crit.source` first
  fit_final: fit_lib.FitResult | None  # L(N) on the final losses
  frontier: dict[str, Any] | None
  notes: list[str]
  level: float
  bootstrap: int
  seed: int

  @property
  def main_heldout(self) -> Heldout | None:
    return self.heldout.get(self.b_crit.source) or next(iter(self.heldout.values()), None)

  def to_dict(self) -> dict[str, Any]:
    return {
        "source": self.source, "b_crit": self.b_crit.to_dict(),
        "L_N_Smin": fit_summary(self.fit) if self.fit else None,
        "heldout": {k: h.to_dict() for k, h in self.heldout.items()},
        "L_N_final": fit_summary(self.fit_final) if self.fit_final else None,
        "frontier": self.frontier, "notes": list(self.notes), "level": self.level,
        "bootstrap": self.bootstrap, "seed": self.seed,
        "runs": [run_summary(r) for r in self.runs]}


def fit_summary(fit: fit_lib.FitResult) -> dict[str, Any]:
  d = fit.to_dict()
  return {k: d[k] for k in ("law", "form", "params", "intervals", "level", "converged",
                            "objective", "n_points", "bootstrap", "bootstrap_converged",
                            "resample", "noise", "unidentifiable", "warnings")}


def run_summary(r: runs_lib.Run) -> dict[str, Any]:
  steps, loss = r.loss
  _, b = r.b_simple
  return {"name": r.name, "N": r.n_params, "n_layer": r.model.get("n_layer"),
          "d_model": r.model.get("d_model"), "B_tokens": r.batch_tokens,
          "steps": int(steps[-1]) if len(steps) else 0,
          "final_loss": float(loss[-1]) if len(loss) else None, "loss_key": r.loss_key,
          "status": r.status, "time_s": r.time_s,
          "b_simple_final_tokens": float(np.median(b[-max(1, len(b) // 5):])) if len(b) else None}


# ------------------------------------------------------------------------------ pieces


def load_source(source: str | Sequence[runs_lib.Run], warnings: list[str]) -> list[runs_lib.Run]:
  """The runs of a directory (`select_runs`: failed runs left out, named in `warnings`), or
  the runs themselves; a clear error when there are none or none finished."""
  runs, left_out = select_runs(source, warnings)
  if left_out:
    warnings.append(left_out)
  return runs


def _names(runs: Sequence[runs_lib.Run], most: int = 6) -> str:
  names = [r.name for r in runs]
  more = f" and {len(names) - most} more" if len(names) > most else ""
  return ", ".join(names[:most]) + more


def select_runs(source: str | Sequence[runs_lib.Run], notes: list[str]
                ) -> tuple[list[runs_lib.Run], str]:
  """The runs a study's analysis fits (`scaling-jax fit` and `report` alike), and a sentence
  naming the failed runs it left out ("" if none); runs given as such are taken as they are.

  Every run under the directory `source` with logged metrics except the failed ones, whose curves end
  where training broke (a diverged loss would bend the fit); unfinished runs (preempted,
  running) are kept as they are beside finished ones. FitError when none of the runs
  finished: a report of runs that all failed or are still training would present numbers of
  nothing that completed. Unreadable runs are named in `notes` (`runs.read_runs`)."""
  if not isinstance(source, (str, os.PathLike)):
    return list(source), ""
  study_dir = source
  runs = runs_lib.read_runs(str(source), warnings=notes)
  if not runs:
    raise FitError(f"no run under {source!r} has logged metrics yet: " + "; ".join(notes[:3]))
  if not any(r.status == "finished" for r in runs):
    by_status: dict[str, list[runs_lib.Run]] = {}
    for r in runs:
      by_status.setdefault(r.status, []).append(r)
    statuses = "; ".join(f"{k}: {_names(v)}" for k, v in sorted(by_status.items()))
    raise FitError(f"none of the {len(runs)} runs under {study_dir} finished ({statuses}); see "
                   f"each run's status.json and train.log under {study_dir}, and rerun its "
                   "sweep to finish them (finished runs are skipped)")
  failed = [r for r in runs if r.status == "failed"]
  left_out = "" if not failed else (
      f"left out {len(failed)} failed run{'s' if len(failed) > 1 else ''} of {len(runs)}: "
      f"{_names(failed)} (see {study_dir}/NAME/status.json and train.log; rerun the sweep "
      "to retry them)")
  return [r for r in runs if r.status != "failed"], left_out


def study_table(source: str, b_crit: bcrit_lib.Spec = "gns", *, points: int = 32,
                last_only: bool = False, bootstrap: int = 200, seed: int = 0,
                adjust: bool = True, warnings: list[str] | None = None
                ) -> tuple[dict[str, np.ndarray], bcrit_lib.BCritLaw]:
  """(table, B_crit law) of a run directory tree or a CSV/JSON table file, with S_min and
  C_min derived by the chosen law (tables: from their S, B, C, L columns).
  adjust=False (a law without S_min or C_min): no B_crit law is chosen."""
  warnings = [] if warnings is None else warnings
  if not adjust:
    b_crit = "none"
  if rundir.exists(source) and not rundir.is_dir(source):
    table = runs_lib.read_table(source)
    if not adjust:
      return table, bcrit_lib.choose_b_crit("none")
    missing = [c for c in ("S", "B", "L") if c not in table]
    if missing and not {"S_min", "C_min"} <= set(table):
      raise FitError(f"{source}: deriving S_min and C_min needs columns S, B and L (and C); "
                     f"the table lacks {missing}. Columns: run, N, B, S, D, C, L")
    gns = bcrit_lib.table_gns_points(table) if b_crit == "gns" else None
    law = bcrit_lib.choose_b_crit(b_crit, gns=gns, bootstrap=bootstrap, seed=seed)
    if {"S_min", "C_min"} <= set(table) and not law.adjusts:
      return table, law
    return bcrit_lib.adjust_table(table, law), law
  if not rundir.is_dir(source):
    raise FitError(f"{source!r} is neither a table file nor a directory")
  runs = load_source(source, warnings)
  law = bcrit_lib.choose_b_crit(b_crit, runs, bootstrap=bootstrap, seed=seed)
  table = runs_lib.learning_table(runs, law.table_fn, points=points, last_only=last_only,
                                  warnings=warnings)
  return table, law


def frontier_budgets(table: dict[str, np.ndarray]) -> np.ndarray:
  """25 budgets from a tenth of the smallest run's C_min to 1000x the largest's."""
  last: dict[str, float] = {}
  for run, c in zip(table["run"], table["C_min"]):
    last[run] = c  # rows are in step order: the run's total C_min
  c_runs = np.asarray(list(last.values()), float)
  return np.geomspace(np.nanmin(c_runs) / 10, np.nanmax(c_runs) * 1e3, 25)


def compute_frontier(fit: fit_lib.FitResult, law: bcrit_lib.BCritLaw,
                     budgets: np.ndarray) -> dict[str, Any]:
  """The frontier of L(N, S_min) and B_crit(L): numerical, and App. B's closed form."""
  if not law.adjusts:
    raise FitError("the frontier needs a B_crit(L) law (C_min = 6 N B_crit S_min); pass "
                   "--b-crit gns, kaplan or a number")
  b = law.params if law.params is not None else (lambda loss: law.fn(loss))
  front = frontier_lib.frontier(fit, b, budgets)
  out = {"b_crit_source": law.description,
         "exponents": frontier_lib.fitted_exponents(front),
         "points": {k: np.asarray(v).tolist() for k, v in front.items()}}
  if law.params is not None:
    out["closed_form"] = frontier_lib.closed_form(fit, law.params)
    out["closed_form_points"] = {
        k: np.asarray(v).tolist()
        for k, v in frontier_lib.closed_form_at(fit, law.params, budgets).items()}
  return out


def heldout_check(runs: Sequence[runs_lib.Run], b_crit: bcrit_lib.Spec, *, points: int,
                  fit_kw: dict[str, Any], law: bcrit_lib.BCritLaw | None = None) -> Heldout:
  """Fits L(N, S_min) on all runs but the largest N (B_crit(L) also from those runs only)
  and predicts the largest one's whole curve with a prediction band."""
  n_max = max(r.n_params for r in runs)
  train = [r for r in runs if r.n_params < n_max]
  test = [r for r in runs if r.n_params == n_max][0]
  if law is None:
    law = bcrit_lib.choose_b_crit(b_crit, train, bootstrap=fit_kw.get("bootstrap", 0),
                                  seed=fit_kw.get("seed", 0))
  train_tab = runs_lib.learning_table(train, law.table_fn, points=points)
  fit = fit_lib.fit_law("L_N_Smin", train_tab, **fit_kw)
  test_tab = runs_lib.learning_table([test], law.table_fn, points=0)
  pred = fit.predict({"N": test_tab["N"], "S_min": test_tab["S_min"]}, band="prediction",
                     seed=fit_kw.get("seed", 0))
  return Heldout(b_crit=law.source, run=test.name, n_params=n_max, steps=test_tab["S"],
                 s_min=test_tab["S_min"], observed=test_tab["L"], predicted=pred.value,
                 lo=pred.lo, hi=pred.hi, fit=fit, law=law)


# ------------------------------------------------------------------------------ the analysis


def analyze_study(source: str | Sequence[runs_lib.Run], *, b_crit: bcrit_lib.Spec = "gns",
                  bootstrap: int = 200, level: float = 0.95, seed: int = 0, points: int = 32,
                  heldout: bool = True, compare: Sequence[str] = HELDOUT_COMPARE,
                  **fit_options: Any) -> StudyAnalysis:
  """The study's B_crit law, L(N, S_min) fit, held-out checks, L(N) and frontier.

  b_crit: the B_crit(L) choice for S_min, C_min and the frontier (`bcrit.choose_b_crit`).
  compare: other B_crit choices whose held-out extrapolation is shown beside it.
  fit_options: passed to `fit.fit_law` (delta, grid, resample, ...).
  """
  notes: list[str] = []
  runs = load_source(source, notes)
  unfinished = [r.name for r in runs if r.status != "finished"]
  if unfinished:
    notes.append(f"runs not finished (used as they are): {unfinished}")
  fit_kw = dict(bootstrap=bootstrap, level=level, seed=seed, drop_invalid=True,
                require_convergence=False, **fit_options)
  law = bcrit_lib.choose_b_crit(b_crit, runs, bootstrap=bootstrap, level=level, seed=seed)
  notes += [f"B_crit(L): {n}" for n in law.notes]
  table = runs_lib.learning_table(runs, law.table_fn, points=points, warnings=notes)
  fit = _fit_or_note("L_N_Smin", table, notes, "L(N, S_min) on all runs", fit_kw)

  checks: dict[str, Heldout] = {}
  n_sizes = len({r.n_params for r in runs})
  if heldout and n_sizes >= MIN_SIZES_FOR_HELDOUT:
    for choice in dict.fromkeys([law.source if law.source in HELDOUT_COMPARE else b_crit,
                                 *compare]):
      try:
        # A choice that is not measured (kaplan, none, a number) needs no refit on fewer runs.
        given = law if choice == b_crit and law.source not in ("gns", "sweep") else None
        h = heldout_check(runs, choice, points=points, fit_kw=fit_kw, law=given)
      except FitError as e:
        notes.append(f"held-out check with B_crit {choice}: {e}")
        continue
      checks[h.b_crit] = h
  elif heldout:
    notes.append(f"{n_sizes} model sizes: the held-out extrapolation needs "
                 f">= {MIN_SIZES_FOR_HELDOUT}")

  final = {"N": np.array([r.n_params for r in runs]),
           "L": np.array([r.final() for r in runs]),
           "run": np.array([r.name for r in runs], dtype=object)}
  fit_final = None
  if len(np.unique(final["N"])) >= 3:
    fit_final = _fit_or_note("L_N", final, notes, "L(N) on final losses",
                             {**fit_kw, "resample": "points"})

  front = None
  if fit is not None and law.adjusts:
    try:
      front = compute_frontier(fit, law, frontier_budgets(table))
    except (FitError, OverflowError, FloatingPointError, ValueError) as e:
      notes.append(f"frontier not computed from this fit ({type(e).__name__}: {e}); the "
                   "fitted exponents are too far from a usable regime")
  elif fit is not None:
    notes.append("no frontier: --b-crit none gives no B_crit(L) (C_min = 6 N B_crit S_min)")
  return StudyAnalysis(source=str(source) if isinstance(source, (str, os.PathLike)) else "",
                       runs=runs, b_crit=law, table=table, fit=fit, heldout=checks,
                       fit_final=fit_final, frontier=front, notes=notes, level=level,
                       bootstrap=bootstrap, seed=seed)


def _fit_or_note(law: str, table, notes: list[str], what: str, fit_kw: dict[str, Any]):
  try:
    return fit_lib.fit_law(law, table, **fit_kw)
  except FitError as e:
    notes.append(f"{what}: {e}")
    return None
