"""What the experiments share: sweep entries at CPU or pod scale, reading runs, the paper's
numbers beside ours, figures, and the per-token-position loss of a run's final checkpoint.

Sweep files (`experiments/NN_name/sweep.py`) return entries
`{"name", "config": "configs/X.py", "overrides": {"model.d_model": 64, ...}}` for
`scaling-jax sweep`; analyses (`analyze.py`) read the run directories it leaves through
the one run reader (`scaling_jax.scaling.runs`), choose B_crit(L) with
`scaling_jax.scaling.bcrit`, and fit with `scaling_jax.scaling`.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import os
import pathlib
import sys
from typing import Any, Iterable, Sequence

import numpy as np

from scaling_jax import errors
from scaling_jax import metric_keys
from scaling_jax import rundir
from scaling_jax.scaling import laws
from scaling_jax.scaling import reference
from scaling_jax.scaling import runs as runs_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
SCALES = ("cpu", "pod")
SCALE_ENV = "SCALING_JAX_SCALE"  # `SCALING_JAX_SCALE=pod scaling-jax sweep ...`
CPU_CONFIG = "configs/cpu_demo.py"  # n_ctx 128, 4096-token BPE on the stdlib corpus
POD_CONFIG = "configs/gpt_125m.py"  # the paper's setup: n_ctx 1024, batch 512, Kaplan LR(N)
EVAL_KEY = metric_keys.EVAL_LOSS

# Training length at CPU scale (cpu_demo.py trains 600 steps; experiments halve it to stay
# within minutes per run); an entry's own overrides win.
CPU_TRAIN = {"train.num_steps": 300, "train.log_every": 25, "train.eval_every": 50}

# (n_layer, d_model) ladders with d_ff = 4 d_model and 32- (CPU) or 64-wide (pod) heads.
CPU_SIZES = ((2, 32), (2, 64), (3, 96), (4, 128))  # N = 25k .. 786k, ~32x
POD_SIZES = ((6, 384), (8, 512), (12, 768), (24, 1024), (24, 1536))  # N = 11M .. 680M


class ExperimentError(errors.UserError, ValueError):
  """Runs an analysis cannot use; the message says which runs to add."""


# ------------------------------------------------------------------------------ sweeps


def resolve_scale(scale: str | None) -> str:
  """`scale`, or $SCALING_JAX_SCALE, or "cpu"; checked against SCALES."""
  scale = scale or os.environ.get(SCALE_ENV) or "cpu"
  if scale not in SCALES:
    raise ExperimentError(f"scale={scale!r} is not one of {SCALES}; pass scale='cpu' or 'pod' "
                          f"(or set {SCALE_ENV})")
  return scale


def base_config(scale: str) -> str:
  return CPU_CONFIG if resolve_scale(scale) == "cpu" else POD_CONFIG


def shape(n_layer: int, d_model: int, scale: str, d_ff: int | None = None,
          n_heads: int | None = None) -> dict[str, int]:
  """Model-shape overrides; heads default to 32 (CPU) or 64 (pod) wide."""
  head = 32 if resolve_scale(scale) == "cpu" else 64
  return {"model.n_layer": n_layer, "model.d_model": d_model,
          "model.d_ff": d_ff if d_ff is not None else 4 * d_model,
          "model.n_heads": n_heads if n_heads is not None else max(1, d_model // head)}


def sizes(scale: str) -> tuple[tuple[int, int], ...]:
  return CPU_SIZES if resolve_scale(scale) == "cpu" else POD_SIZES


def entry(name: str, scale: str, overrides: dict[str, Any]) -> dict[str, Any]:
  """One sweep entry on the scale's base config (CPU_TRAIN under the overrides at CPU scale)."""
  base = CPU_TRAIN if resolve_scale(scale) == "cpu" else {}
  return {"name": name, "config": base_config(scale), "overrides": {**base, **overrides}}


# The size ladder's runs, shared by experiments 1, 2, 5 and 7 (L(N), learning curves, the
# compute frontier, transfer): dense eval for the learning curves, on the training
# distribution's validation split and two out-of-distribution sets (English prose from
# pydoc, numpy's sources: scaling_jax.data.corpus.OOD_SETS, available with any dataset).
LADDER_EVAL_SETS = ("validation", "ood_prose", "ood_numpy")


def ladder(scale: str | None) -> list[dict[str, Any]]:
  """One run per size of the ladder, trained data-unlimited, learning curves logged densely
  (CPU: eval every 20 steps, ~15 points a curve)."""
  scale = resolve_scale(scale)
  dense = ({"train.eval_every": 20, "train.log_every": 20} if scale == "cpu"
           else {"train.eval_every": 2000, "train.log_every": 500})
  return [entry(f"n{n_layer}_d{d_model}", scale, {**shape(n_layer, d_model, scale), **dense,
                                                   "data.eval_sets": LADDER_EVAL_SETS})
          for n_layer, d_model in sizes(scale)]


def load_config(sweep_entry: dict[str, Any]):
  """The ConfigDict a sweep entry trains with, built the way `scaling-jax sweep` builds it
  (its config file, then the overrides as --config.KEY=VALUE flags)."""
  from scaling_jax import sweep as sweep_lib
  return sweep_lib.load_run_config(str(REPO / sweep_entry["config"]),
                                   sweep_entry.get("overrides", {}))


def load_module(path: str | os.PathLike, name: str | None = None):
  """Imports a file (a sweep.py or analyze.py in a folder whose name starts with a digit)."""
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(name or f"_exp_{path.parent.name}_{path.stem}",
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# ------------------------------------------------------------------------------ runs


Run = runs_lib.Run  # the one typed run record (scaling_jax.scaling.runs)


def load_runs(dirs: str | Sequence[str], statuses: tuple[str, ...] | None = None) -> list[Run]:
  """Every run directory at or below each of `dirs`, with a readable config and metrics. Each
  run left out (a damaged config.json, no metrics yet, another status) is named on stderr; when
  none is left the error names them."""
  dirs = [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)
  skipped: list[str] = []
  try:
    out = runs_lib.read_runs([str(d) for d in dirs], statuses=statuses, warnings=skipped)
  except laws.FitError:
    out = []
  if not out:
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    why = f" ({'; '.join(skipped[:3])}{more})" if skipped else ""
    raise ExperimentError(f"no run directories with config.json and metrics under {dirs}{why}; "
                          "run the experiment's sweep first (see experiments/README.md)")
  for w in skipped:
    print(f"warning: {w}", file=sys.stderr, flush=True)
  return out


def group_by(runs: Iterable[Run], key) -> dict[Any, list[Run]]:
  out: dict[Any, list[Run]] = {}
  for r in runs:
    out.setdefault(key(r), []).append(r)
  return out


def as_table(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
  """Row dicts -> the fitter's column table."""
  keys = list(dict.fromkeys(k for r in rows for k in r))
  return {k: np.asarray([r.get(k, math.nan) for r in rows],
                        dtype=object if k == "run" else float) for k in keys}


# ------------------------------------------------------------------------------ paper


@functools.lru_cache(maxsize=1)
def paper(dotted: str) -> float:
  """A constant of the paper, e.g. paper("L_N_S.fit_table3.alpha_N")."""
  return reference.kaplan_value(dotted)


def comparison(title: str, rows: Sequence[tuple[str, Any, Any, str]]) -> str:
  """A text table: quantity | ours | paper | note."""
  def fmt(v):
    if v is None:
      return "-"
    if isinstance(v, (float, int, np.floating)):
      return "nan" if not np.isfinite(v) else f"{float(v):.4g}"
    return str(v)
  lines = [title, f"  {'quantity':<36} {'ours':>12} {'paper':>12}  note"]
  lines += [f"  {q:<36} {fmt(o):>12} {fmt(p):>12}  {n}" for q, o, p, n in rows]
  return "\n".join(lines)


def try_fit(law: str | laws.Law, table: dict[str, np.ndarray], *, bootstrap: int = 0,
            **kw) -> tuple[Any, str]:
  """(FitResult, "") or (None, why): an analysis reports a failed fit instead of dying."""
  from scaling_jax.scaling import fit
  try:
    res = fit.fit_law(law, table, bootstrap=bootstrap, drop_invalid=True,
                      require_convergence=False, **kw)
  except laws.FitError as e:
    return None, str(e)
  note = "" if res.converged else "did not converge"
  if res.unidentifiable:
    note = (note + "; " if note else "") + f"unidentifiable: {', '.join(res.unidentifiable)}"
  return res, note


def fit_params(res) -> dict[str, float]:
  return dict(res.params) if res is not None else {}


def fit_intervals(res) -> dict[str, list[float]]:
  """{param: [low, high]}, the bootstrap interval at the fit's level; {} without one."""
  if res is None or not res.intervals:
    return {}
  return {k: [float(lo), float(hi)] for k, (lo, hi) in res.intervals.items()}


# A plain power law y = k x^p, for empirical trends such as N_opt(C) (exp. 5).
POWER_LAW = laws.register(laws.Law(
    "experiments_power_law", ("k", "p"), ("x",),
    lambda p, x: p["k"] * (x["x"] ** p["p"]), {"k": (1e-12, 1e12), "p": (0.01, 3.0)},
    output="y", doc="y = k x^p (an empirical trend, p > 0)"))


# ------------------------------------------------------------------------------ CLI, output


def arg_parser(description: str) -> argparse.ArgumentParser:
  p = errors.ArgumentParser(description=description)
  p.add_argument("runs", nargs="+", help="sweep directories (or run directories) to analyse")
  p.add_argument("--out", default=None,
                 help="where to write the figure and summary.json (default: RUNS[0]/analysis)")
  p.add_argument("--bootstrap", type=errors.non_negative_int, default=0,
                 help="bootstrap resamples for fit intervals (e.g. 200; 0 = none)")
  return p


def run_analysis(argv: Sequence[str] | None, doc: str, name: str, analyze,
                 options: dict[str, dict[str, Any]] | None = None,
                 kwargs=lambda args: {"bootstrap": args.bootstrap}) -> int:
  """The main(argv) of an analyze.py: parses RUNS [--out] [--bootstrap] plus `options`
  ({flag: add_argument keywords}), makes the output folder, calls
  analyze(args.runs, out, **kwargs(args)) and returns 0. It runs inside the commands' error
  boundary (`errors.run_command`): runs the analysis cannot use, a damaged run file, a bad
  argument or an unwritable --out are one line on stderr and exit code 2."""

  def main(args_list: list[str]) -> int:
    parser = arg_parser(doc.splitlines()[0])
    for flag, kw in (options or {}).items():
      parser.add_argument(flag, **kw)
    args = parser.parse_args(args_list)
    out, made = out_dir(args, name)
    try:
      with errors.writing(out, "--out"):
        analyze(args.runs, out, **kwargs(args))
    except errors.UserError:  # bad input creates nothing: the folders made for it go again
      for d in made:
        if os.path.isdir(d) and not os.listdir(d):
          os.rmdir(d)
      raise
    return 0

  return errors.run_command(f"experiment {name}", main,
                            sys.argv[1:] if argv is None else argv)


def out_dir(args: argparse.Namespace, name: str) -> tuple[str, list[str]]:
  """(the analysis's output folder, made here if missing; the folders that made, deepest
  first, so that a refused analysis can remove them again)."""
  out = args.out or os.path.join(args.runs[0], "analysis", name)
  made, path = [], os.path.abspath(out)
  while not os.path.exists(path):
    made.append(path)
    path = os.path.dirname(path)
  with errors.writing(out, "--out"):
    os.makedirs(out, exist_ok=True)
  return out, made


def figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0):
  """(Figure, axes list) without pyplot (no global backend state)."""
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width * ncols, height * nrows))
  axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
  return fig, axes


def log_axes(ax, y: bool = True) -> None:
  """Log-log (or log-x) axes; plain numbers on a log y axis that spans less than a decade."""
  from matplotlib.ticker import (LogFormatterSciNotation, LogLocator, NullFormatter,
                                 ScalarFormatter)
  ax.set_xscale("log")
  ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
  ax.xaxis.set_minor_formatter(NullFormatter())
  if y:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def style_axes(ax, xlabel: str | None = None, ylabel: str | None = None,
               title: str | None = None, legend: str | None = None,
               log: bool | str = False) -> None:
  """Labels an axes: log=True is log_axes (log-log), log="x" a plain log x scale; `legend`
  is the legend's font size (no legend when None)."""
  if log is True:
    log_axes(ax)
  elif log == "x":
    ax.set_xscale("log")
  if xlabel is not None:
    ax.set_xlabel(xlabel)
  if ylabel is not None:
    ax.set_ylabel(ylabel)
  if title is not None:
    ax.set_title(title)
  if legend is not None:
    ax.legend(fontsize=legend)


def save_figure(fig, out: str, name: str) -> str:
  path = os.path.join(out, name)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path


def write_summary(out: str, summary: dict[str, Any]) -> str:
  path = os.path.join(out, "summary.json")
  rundir.write_json_atomic(path, _jsonable(summary))
  return path


def finish(out: str, summary: dict[str, Any], fig=None, fig_name: str | None = None
           ) -> dict[str, Any]:
  """An analysis's last step: saves `fig` as summary["figure"] (when given), writes
  summary.json, prints the figure path(s) and returns `summary`."""
  if fig is not None:
    summary["figure"] = save_figure(fig, out, fig_name)
  write_summary(out, summary)
  if "figures" in summary:
    print("figures: " + ", ".join(summary["figures"]))
  else:
    print(f"figure: {summary['figure']}")
  return summary


def _jsonable(obj: Any) -> Any:
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return _jsonable(obj.tolist())
  if isinstance(obj, (np.floating, np.integer, np.bool_)):
    return obj.item()
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


# ------------------------------------------------------------------------------ per position


def loss_by_position(run_dir: str, eval_set: str = "validation",
                     step: int | None = None) -> np.ndarray:
  """Mean next-token loss (nats) at each context position [n_ctx] of a run's checkpoint.

  Restores only the parameters of the latest (or `step`'s) checkpoint with Orbax, on one
  device whatever mesh trained them, and evaluates the run's own eval batches of
  `eval_set`; the mean over positions is the trainer's `eval/<set>/loss` at that step.
  """
  import jax
  import jax.numpy as jnp
  import ml_collections
  import orbax.checkpoint as ocp

  from scaling_jax import data as data_lib, losses, model as model_lib, sharding

  cfg_json = rundir.read_config(run_dir)
  if not cfg_json:
    raise ExperimentError(f"{run_dir} has no config.json; pass a run directory")
  config = ml_collections.ConfigDict(cfg_json["config"])
  ckpt_root = os.path.join(os.path.abspath(run_dir), rundir.CHECKPOINT_DIR)  # Orbax: absolute
  steps = sorted(int(s) for s in os.listdir(ckpt_root) if s.isdigit()) if os.path.isdir(
      ckpt_root) else []
  if not steps:
    raise ExperimentError(f"{run_dir} has no checkpoint to evaluate; train it first")
  step = steps[-1] if step is None else int(step)
  if step not in steps:
    raise ExperimentError(f"{run_dir} has checkpoints at steps {steps}, not {step}")
  model = model_lib.build(config.model)
  n_ctx = int(config.model.n_ctx)
  boxed = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, n_ctx), jnp.int32))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = {"params": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                                                 sharding=device),
                                   sharding.strip_boxes(boxed)["params"])}
  restored = ocp.PyTreeCheckpointer().restore(
      os.path.join(ckpt_root, str(step), "state"),
      args=ocp.args.PyTreeRestore(item=target, partial_restore=True,
                                  restore_args=ocp.checkpoint_utils.construct_restore_args(
                                      target)))

  @jax.jit
  def per_position(params, tokens_BT1):
    logits_BTV = model.apply({"params": params}, tokens_BT1[:, :-1])
    return losses.token_losses(logits_BTV, tokens_BT1[:, 1:]).mean(axis=0)

  batches = data_lib.make_eval_batches(config, eval_set)
  per_batch = [np.asarray(per_position(restored["params"], jnp.asarray(b))) for b in batches]
  return np.mean(per_batch, axis=0)
