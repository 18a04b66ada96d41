"""Every experiment's sweep definition and analysis, on small real runs so none of them rots.

One set of tiny runs on the array corpus is trained once per session (`tiny_runs`, cached)
and shared by the analyses: four models (three N values; B and C share N with different
shapes) evaluated on three eval sets, two more batch sizes of A, A on a 2k-token dataset
with Kaplan's LR rule and a constant schedule (experiments 3 and 9 both use it: its D, its
LR and its schedule differ from A's), and an LSTM and a Universal Transformer.
"""

import atexit
import functools
import importlib.util
import json
import math
import os
import pathlib
import shutil
import tempfile

import numpy as np
import pytest

import jax

from experiments import common, recorded, run_all
from scaling_jax import accounting, optim, preflight, rundir
from scaling_jax import sweep as sweep_lib
from scaling_jax.data import corpus
from scaling_jax.config import validate
from scaling_jax.scaling import bcrit
from tests.helpers import tiny_config, write_token_array

EXPERIMENTS = sorted(p.name for p in (common.REPO / "experiments").iterdir()
                     if p.is_dir() and p.name[:2].isdigit())
EVAL_SETS = ("validation", "ood_prose", "ood_numpy")

# name -> (n_layer, d_model, d_ff, n_heads); B and C have the same N = 12288.
SHAPES = {"A": (1, 16, 64, 4), "B": (1, 32, 128, 4), "C": (2, 24, 80, 4), "D": (1, 64, 256, 4)}
GROUPS = {
    "sizes": [(s, s, {"data.eval_sets": EVAL_SETS}) for s in "ABCD"],
    "batch": [("A_b32", "A", {"train.batch_size": 32}), ("A_b64", "A", {"train.batch_size": 64})],
    "data_lr": [("A_D2k_kaplan_constant", "A", {
        "data.max_tokens": 2048, "optim.lr_rule": "kaplan", "optim.schedule": "constant",
        "gns.enabled": False})],
    "arch": [("lstm", "B", {"model.arch": "lstm", "gns.enabled": False}),
             ("universal", "C", {"model.arch": "universal", "gns.enabled": False})],
}


@functools.lru_cache(maxsize=None)
def _root() -> pathlib.Path:
  root = pathlib.Path(tempfile.mkdtemp(prefix="scaling_jax_experiment_tests_"))
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  corpus = root / "corpus"
  corpus.mkdir()
  write_token_array(corpus, vocab=128)
  rng = np.random.default_rng(1)
  np.save(corpus / "tokens.ood_prose.npy", ((np.arange(4000) * 5) % 128).astype(np.int32))
  np.save(corpus / "tokens.ood_numpy.npy", rng.integers(0, 128, 4000).astype(np.int32))
  return root


def run_config(shape: str, overrides: dict):
  """A tiny run: 30 steps, eval every 5, one checkpoint at the end, a short GNS EMA."""
  c = tiny_config(_root() / "corpus" / "tokens.npy", num_steps=30, log_every=5, eval_every=5,
                  ckpt_every=30)
  n, d, f, h = SHAPES[shape]
  c.model.update(n_layer=n, d_model=d, d_ff=f, n_heads=h)
  c.data.eval_batches = 1
  c.gns.ema = 0.5  # an EMA horizon of 2 steps: 30-step runs keep GNS readings for B_crit(L)
  for dotted, value in overrides.items():
    section, key = dotted.split(".")
    c[section][key] = value
  return c


@functools.lru_cache(maxsize=None)
def tiny_runs(group: str) -> str:
  """Trains (once per process) the runs of GROUPS[group]; returns their directory."""
  from scaling_jax import train
  out = _root() / group
  for name, shape, overrides in GROUPS[group]:
    result = train.train_and_evaluate(run_config(shape, overrides), str(out / name))
    assert result["status"] == "finished"
  return str(out)


def _analysis(name: str):
  return common.load_module(common.REPO / "experiments" / name / "analyze.py")


# ------------------------------------------------------------------------------ definitions


def test_there_are_ten_experiments_each_with_a_readme_line():
  assert len(EXPERIMENTS) == 10
  readme = (common.REPO / "experiments" / "README.md").read_text()
  for name in EXPERIMENTS:
    folder = common.REPO / "experiments" / name
    assert (folder / "sweep.py").is_file() and (folder / "analyze.py").is_file()
    assert f"experiments/{name}/sweep.py" in readme and f"experiments/{name}/analyze.py" in readme


# ------------------------------------------------------------------------------ pod scale

# The slices a pod sweep is checked against: FSDP over 16 and 32 devices (v5e-16, v4-32 and
# v5p-32 have 16 chips; v5e-32 has 32), and the 16-chip v5e slice for the shardings.
POD_DEVICE_COUNTS = (16, 32)
POD_SLICE = "v5e-16"
needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu is not installed (pip install -e '.[tpu]'); it describes the TPU slice")


def _pod_configs(name: str):
  sweep = common.load_module(common.REPO / "experiments" / name / "sweep.py")
  entries = sweep_lib.normalize_runs(sweep.get_sweep("pod"), name)  # names become dirs
  return [(e["name"], common.load_config(e)) for e in entries]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_pod_sweep_configs_pass_the_checks_a_launch_makes(name):
  """Every pod-scale entry: the config checks for the slice's devices, a schedule that
  trains, data the loader accepts, and a model that fits a 16-chip slice's memory."""
  for run, config in _pod_configs(name):
    for n in POD_DEVICE_COUNTS:
      validate(config, num_devices=n)
    counts = accounting.counts(config.model)
    assert 1e6 < counts.n_params < 1e9, run  # pod scale: N of the paper's sweeps
    assert 0 < optim.peak_lr(config.optim, counts.n_params) < 1e-2, run
    assert config.optim.warmup_steps < config.train.num_steps, run
    assert config.train.eval_every <= config.train.num_steps, run  # every run evaluates
    sets = tuple(config.data.eval_sets)
    assert set(sets) <= {"validation", *corpus.OOD_SETS}, (run, sets)
    d = int(config.data.max_tokens)
    assert d == -1 or d > 100 * config.model.n_ctx, (run, d)
    # Parameters + AdamW state, sharded over 16 chips, in well under a v5e chip's 16 GiB.
    assert preflight.checkpoint_bytes(config) / 16 < 2 * 2**30, run


@functools.lru_cache(maxsize=None)
def _pod_state(layout_json: str):
  """The abstract train state (shapes and shardings) on POD_SLICE of a config's model,
  optimizer and mesh (`layout_json`): cached, so sweeps sharing a shape trace it once."""
  import ml_collections
  from scaling_jax import compile_cli, model as model_lib, sharding, train
  config = ml_collections.ConfigDict(json.loads(layout_json))
  mesh = sharding.make_mesh(config, compile_cli.topology_devices(
      compile_cli.parse_topology(POD_SLICE)))
  n = accounting.counts(config.model).n_params
  opt, _ = optim.make(config.optim, config.train.num_steps, n)
  return train.abstract_state(config, model_lib.build(config.model), opt, mesh)


@pytest.mark.slow  # traces every pod model's init (24-48 layers): ~1 min on 2 loaded cores
@needs_libtpu
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_pod_sweep_shards_on_a_tpu_slice_and_counts_its_parameters(name):
  """Each pod entry's train state laid out on a v5e-16 (FSDP over its 16 chips): no
  parameter dimension the mesh cannot divide (ShardingError), the largest parameter split
  across the chips, and the parameters the model builds are the ones accounting counts
  (N, and the FLOPs and LR(N) that follow from it)."""
  for run, config in _pod_configs(name):
    layout = {"model": config.model.to_dict(), "optim": config.optim.to_dict(),
              "mesh": config.mesh.to_dict(), "train": {"num_steps": config.train.num_steps}}
    state = _pod_state(json.dumps(layout, sort_keys=True, default=list))
    assert accounting.count_tree(state.params) == accounting.counts(config.model).n_params_total
    largest = max(jax.tree.leaves(state.params), key=lambda x: x.size)
    assert not largest.sharding.is_fully_replicated, (run, largest.shape)


# ------------------------------------------------------------------------------ run_all


def test_run_all_trains_shared_sweeps_once_cheapest_first(tmp_path):
  groups = run_all.plan(run_all.select(None), str(tmp_path), "cpu")
  by_exp = {name: g for g in groups for name in g.experiments}
  assert set(by_exp) == set(EXPERIMENTS)
  # 01, 02, 05 and 07 analyse one size ladder, trained once into the first one's folder.
  ladder = by_exp["01_l_of_n"]
  assert ladder.experiments == ["01_l_of_n", "02_l_of_n_steps", "05_compute_frontier",
                                "07_transfer"]
  assert ladder.sweep_dir == str(tmp_path / "01_l_of_n")
  assert len(groups) == len(EXPERIMENTS) - 3
  costs = [sum(run_all.estimated_seconds(r) for r in g.runs) for g in groups]
  assert costs == sorted(costs) and by_exp["04_critical_batch"] is groups[0]
  assert run_all.select("4,01_l_of_n") == ["04_critical_batch", "01_l_of_n"]
  with pytest.raises(common.ExperimentError, match="names no experiment"):
    run_all.select("11")


def test_run_all_progress_counts_finished_and_partial_runs(tmp_path, capsys):
  (group,) = run_all.plan(["04_critical_batch"], str(tmp_path), "cpu")
  b8, b16, b32, b64 = (os.path.join(group.sweep_dir, r["name"]) for r in group.runs)
  rundir.makedirs(b8)
  rundir.write_status(b8, "finished")  # finished before this invocation: not in the ETA
  progress = run_all.Progress([group])
  assert len(progress.items) == 3 and progress.fraction() == 0.0
  rundir.makedirs(b16)
  rundir.write_status(b16, "finished")
  w = {d: wt for d, wt, _, _ in progress.items}
  assert progress.fraction() == pytest.approx(w[b16] / sum(w.values()))
  assert w[b16] < w[b32] < w[b64]  # bigger batches cost more
  rundir.makedirs(b32)  # half-way through its 300 steps
  with open(os.path.join(b32, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"step": 150, "train/loss": 5.0}) + "\n")
  assert progress.fraction() == pytest.approx((w[b16] + w[b32] / 2) / sum(w.values()))
  assert "1/3 runs trained" in progress.line()
  # The dry run lists the plan and trains nothing.
  assert run_all.main(["--out", str(tmp_path), "--only", "4", "--dry-run"]) == 0
  assert "2 to train" in capsys.readouterr().out and not os.path.exists(b64)
  # Measured times accumulate across invocations; an experiment's is known once all its
  # runs have one.
  out = str(tmp_path)
  run_all.add_to_record(out, "runs", {run_all.run_key(group, r["name"]): 10.0
                                      for r in group.runs[:3]})
  times = run_all.experiment_times(run_all.read_record(out), [group])
  assert math.isnan(times["04_critical_batch"])
  run_all.add_to_record(out, "runs", {run_all.run_key(group, "B64"): 30.0})
  run_all.add_to_record(out, "analyses", {"04_critical_batch": 2.0})
  assert run_all.experiment_times(run_all.read_record(out), [group]) == {
      "04_critical_batch": 62.0}
  assert run_all.experiment_time_parts(run_all.read_record(out), [group]) == {
      "04_critical_batch": (60.0, 2.0)}


def test_run_all_records_the_load_each_sweep_trained_under(tmp_path, monkeypatch, capsys):
  """The measured times come with the load average before and after each sweep's training (what
  else shared the cores); a sweep with nothing left to train records none."""
  def fake_sweep(runs, out_dir, **kw):
    if out_dir.endswith("06_shape"):
      return {r["name"]: sweep_lib.RunResult(r["name"], "skipped") for r in runs}
    return {r["name"]: sweep_lib.RunResult(r["name"], "finished", 0, 3.0, cpu_s=5.5)
            for r in runs}

  monkeypatch.setattr(sweep_lib, "run_sweep", fake_sweep)
  monkeypatch.setattr(os, "getloadavg", iter([(0.5, 0, 0), (1.75, 0, 0), (9.0, 0, 0),
                                              (9.0, 0, 0)]).__next__)
  # The fake runs left no run directories: each analysis fails, says why, and run_all exits 1.
  assert run_all.main(["--out", str(tmp_path), "--only", "4,6"]) == 1
  record = run_all.read_record(str(tmp_path))
  assert record["load"] == {"04_critical_batch": [0.5, 1.75]}
  assert record["runs"]["04_critical_batch/B8"] == 3.0
  assert record["cpu"]["04_critical_batch/B8"] == 5.5
  assert set(record["analyses"]) == {"04_critical_batch", "06_shape"}
  assert "no run directories" in capsys.readouterr().err


def test_run_all_stops_at_an_interrupted_sweep(tmp_path, monkeypatch):
  """A SIGTERM that kills one run before it can checkpoint (failed) and stops the rest
  (preempted) ends run_all with 75: the next sweep must not start."""
  calls = []

  def fake_sweep(runs, out_dir, **kw):
    calls.append(out_dir)
    return {"B8": sweep_lib.RunResult("B8", "failed", -15),
            "B16": sweep_lib.RunResult("B16", "preempted")}

  monkeypatch.setattr(sweep_lib, "run_sweep", fake_sweep)
  assert run_all.main(["--out", str(tmp_path), "--only", "4,6"]) == sweep_lib.EX_TEMPFAIL
  assert calls == [str(tmp_path / "04_critical_batch")]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_sweeps_build_valid_configs_at_both_scales(name):
  sweep = common.load_module(common.REPO / "experiments" / name / "sweep.py")
  for scale in common.SCALES:
    entries = sweep.get_sweep(scale)
    assert entries and len({e["name"] for e in entries}) == len(entries)
    for e in entries:
      assert set(e) == {"name", "config", "overrides"}
      assert e["config"] == common.base_config(scale)
      config = common.load_config(e)
      validate(config)  # raises ConfigError on a bad override
      for dotted, value in e["overrides"].items():
        section, key = dotted.split(".")
        assert config[section][key] == value


def test_scale_comes_from_the_argument_or_the_environment(monkeypatch):
  monkeypatch.setenv(common.SCALE_ENV, "pod")
  assert common.resolve_scale(None) == "pod" and common.resolve_scale("cpu") == "cpu"
  with pytest.raises(common.ExperimentError, match="scale='cpu' or 'pod'"):
    common.resolve_scale("gpu")


def test_shape_sweep_holds_n_within_15_percent():
  sweep = common.load_module(common.REPO / "experiments" / "06_shape" / "sweep.py")
  for scale in common.SCALES:
    ns = [accounting.counts(common.load_config(e).model).n_params for e in sweep.get_sweep(scale)]
    assert max(ns) / min(ns) < 1.35 and np.std(np.log(ns)) < 0.1


def test_lr_sweep_scans_around_kaplans_rule():
  sweep = common.load_module(common.REPO / "experiments" / "09_lr_schedule" / "sweep.py")
  entries = sweep.get_sweep("cpu")
  e = next(e for e in entries if e["name"].endswith("_lr2x"))
  n = accounting.counts(common.load_config(e).model).n_params
  assert e["overrides"]["optim.lr"] == pytest.approx(2 * optim.kaplan_lr(n))
  rule = [e for e in entries if e["overrides"]["optim.lr_rule"] == "kaplan"]
  assert {e["overrides"]["optim.schedule"] for e in rule} == {"cosine", "constant"}


# ------------------------------------------------------------------------------ pure parts


def test_overfitting_rule_from_table_2_is_the_papers_5e3_n_074():
  exp3 = _analysis("03_l_of_n_d")
  p = {k: common.paper(f"L_N_D.fit_table2.{k}") for k in ("alpha_N", "alpha_D", "N_c", "D_c")}
  k, e = exp3.overfitting_rule(p)
  assert e == pytest.approx(0.74, abs=0.005)
  assert 4e3 < k < 6e3  # the 2% penalty threshold reproduces "D >~ 5e3 N^0.74"
  x = 1e8 ** e / (k * 1e8 ** e)  # exactly at the rule
  assert exp3.penalty_curve(p, np.array([x]))[0] == pytest.approx(0.02, rel=1e-6)


def test_off_optimal_size_costs_about_20_percent_with_the_papers_fit():
  exp5 = _analysis("05_compute_frontier")
  p = {k: common.paper(f"L_N_S.fit_table3.{k}") for k in ("alpha_N", "alpha_S")}
  extra = exp5.excess_compute(p, [0.6, 1.0, 2.2])
  assert extra[1] == pytest.approx(0.0, abs=1e-12)
  assert 0.12 < extra[0] < 0.22 and 0.15 < extra[2] < 0.25  # "~20% extra compute"
  ks = np.geomspace(0.3, 3, 201)
  assert ks[np.argmin(exp5.excess_compute(p, ks))] == pytest.approx(1.0, rel=0.02)


def test_best_lr_refines_a_bracketed_minimum():
  exp9 = _analysis("09_lr_schedule")
  lr = np.array([2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3])
  loss = 3.0 + (np.log(lr) - np.log(1.3e-3)) ** 2
  best, bracketed = exp9.best_lr(lr, loss)
  assert best == pytest.approx(1.3e-3, rel=1e-6) and bracketed
  assert exp9.best_lr(lr[:2], loss[:2]) == (5e-4, False)  # not bracketed: a bound


def test_n_groups_clusters_within_tolerance():
  exp6 = _analysis("06_shape")
  ids = exp6.n_groups(np.array([100.0, 1000.0, 110.0, 1200.0, 5000.0]), 1.3)
  assert ids[0] == ids[2] and ids[1] == ids[3] and len(set(ids)) == 3


# ------------------------------------------------------------------------------ analyses


@pytest.mark.slow
def test_01_l_of_n(tmp_path, capsys):
  runs = tiny_runs("sizes")
  exp = _analysis("01_l_of_n")
  assert exp.main([runs, "--out", str(tmp_path)]) == 0
  s = rundir.read_json(str(tmp_path / "summary.json"))
  pts = {p["run"]: p for p in s["points"]}
  for name in "ABCD":
    facts = rundir.read_config(os.path.join(runs, name))["facts"]
    assert pts[name]["N"] == facts["n_params"] and pts[name]["N_total"] == facts["n_params_total"]
  # Same N, different depth: different total parameter counts (the paper's point).
  assert pts["B"]["N"] == pts["C"]["N"] and pts["B"]["N_total"] != pts["C"]["N_total"]
  assert s["fit_N"]["alpha_N"] > 0 and math.isfinite(s["rms_log_residual_N"])
  assert (tmp_path / "l_of_n.png").stat().st_size > 10_000
  assert "0.076" in capsys.readouterr().out  # the paper's alpha_N printed beside ours


@pytest.mark.slow
def test_02_l_of_n_s_min(tmp_path):
  exp = _analysis("02_l_of_n_steps")
  runs = common.load_runs(tiny_runs("sizes"))
  tab = exp.learning_table(runs, "gns")
  assert np.all(tab["S_min"] < tab["S"]) and np.all(tab["B_crit"] > 0)
  # One B_crit(L) law for every point of every run: the project's chooser, not each run's
  # own reading.
  law = bcrit.choose_b_crit("gns", runs)
  np.testing.assert_allclose(tab["B_crit"], law(tab["L"]))
  np.testing.assert_allclose(tab["S_min"], tab["S"] / (1 + tab["B_crit"] / tab["B"]))
  s = exp.analyze(tiny_runs("sizes"), str(tmp_path))
  assert s["n_points"] == len(tab["L"]) and set(s["fit"]) == {"N_c", "S_c", "alpha_N", "alpha_S"}
  assert (tmp_path / "l_of_n_s_min.png").is_file()


@pytest.mark.slow
def test_03_l_of_n_d(tmp_path):
  exp = _analysis("03_l_of_n_d")
  s = exp.analyze([tiny_runs("sizes"), tiny_runs("data_lr")], str(tmp_path))
  d = {p["run"]: p["D"] for p in s["points"]}
  assert d["A_D2k_kaplan_constant"] == 2048 and d["A"] == 60_000
  # Early stopping: the loss is the lowest eval loss the run logged.
  a = common.load_runs(tiny_runs("data_lr"))[0]
  assert a.records[-1]["epoch"] > 3  # 30 steps x 512 tokens over 2048 tokens: it repeats
  assert next(p["L"] for p in s["points"] if p["run"] == a.name) == min(a.series()[1])
  p = s["fit"]
  n = np.array([q["N"] for q in s["points"]])
  l = np.array([q["L"] for q in s["points"]])
  np.testing.assert_allclose(s["penalty"], l / (p["N_c"] / n) ** p["alpha_N"] - 1, rtol=1e-9)
  assert (tmp_path / "l_of_n_d.png").is_file()


@pytest.mark.slow
def test_04_critical_batch(tmp_path, capsys):
  exp = _analysis("04_critical_batch")
  sizes = tiny_runs("sizes")
  s = exp.analyze([os.path.join(sizes, "A"), os.path.join(sizes, "B"), tiny_runs("batch")],
                  str(tmp_path))
  assert sorted(s["runs"]) == ["A", "A_b32", "A_b64"]  # the model with the most batch sizes
  assert sorted(s["sweep"]["batch_tokens"]) == [16 * 32, 32 * 32, 64 * 32]
  assert s["sweep"]["levels"] and all(lv["b_crit"] > 0 for lv in s["sweep"]["levels"])
  assert s["b_crit_gns"]["source"] == "gns" and s["b_crit_gns"]["n_runs"] == 3
  assert (tmp_path / "b_crit_vs_loss.png").is_file()
  assert (tmp_path / "steps_vs_examples.png").is_file()
  # A sweep without a batch-size scan: exit code 2 and a one-line error, no traceback.
  assert exp.main([tiny_runs("sizes"), "--out", str(tmp_path / "x")]) == 2
  assert "error: 1 distinct batch sizes" in capsys.readouterr().err


@pytest.mark.slow
def test_05_compute_frontier(tmp_path):
  exp = _analysis("05_compute_frontier")
  runs = common.load_runs(tiny_runs("sizes"))
  env = exp.envelope(runs)
  assert set(env["N_opt"]) <= {r.n_params for r in runs}
  for r in runs:  # the envelope is below every curve where that curve exists
    steps, loss = r.series()
    c = np.array([r.value_at("flops", x) for x in steps])
    inside = (env["C"] >= c.min()) & (env["C"] <= c.max())
    interp = np.interp(np.log(env["C"][inside]), np.log(c), loss)
    assert np.all(env["L"][inside] <= interp + 1e-12)
  s = exp.analyze(tiny_runs("sizes"), str(tmp_path))
  assert s["excess_compute_paper"][s["size_factors"].index(1.0)] == pytest.approx(0, abs=1e-12)
  assert "closed_form" in s and s["closed_form"]["loss_ratio"] > 1
  assert (tmp_path / "compute_frontier.png").is_file()


@pytest.mark.slow
def test_06_shape(tmp_path):
  exp = _analysis("06_shape")
  s = exp.analyze(tiny_runs("sizes"), str(tmp_path))
  (group,) = s["groups"]  # only B and C share N
  assert sorted(group["runs"]) == ["B", "C"] and group["N_ref"] == pytest.approx(12288)
  inc = sorted(p["increase"] for p in s["points"] if "increase" in p)
  assert inc[0] == 0.0 and inc[1] == pytest.approx(group["max_increase"]) and inc[1] > 0
  assert (tmp_path / "shape.png").is_file()


@pytest.mark.slow
def test_07_transfer(tmp_path):
  exp = _analysis("07_transfer")
  runs = tiny_runs("sizes")
  s = exp.analyze(runs, str(tmp_path))
  assert s["sets"] == ["validation", "ood_numpy", "ood_prose"]
  loaded = common.load_runs(runs)
  diff = [r.final("eval/ood_numpy/loss") - r.final("eval/validation/loss") for r in loaded]
  assert s["per_set"]["ood_numpy"]["offset"] == pytest.approx(np.mean(diff))
  assert s["per_set"]["ood_numpy"]["offset"] > 0.2  # uniform random tokens transfer worst
  with pytest.raises(common.ExperimentError, match="eval_sets"):
    exp.analyze(tiny_runs("batch"), str(tmp_path / "none"))  # validation only


@pytest.mark.slow
def test_08_architectures_and_loss_by_position(tmp_path):
  exp = _analysis("08_architectures")
  arch = tiny_runs("arch")
  for name in ("lstm", "universal"):
    run = os.path.join(arch, name)
    by_pos = common.loss_by_position(run)
    assert by_pos.shape == (32,) and np.all(np.isfinite(by_pos))
    # The mean over positions is the trainer's own eval loss on the same batches.
    final = common.load_runs(run)[0].final()
    assert float(by_pos.mean()) == pytest.approx(final, abs=2e-4)
  # A relative run directory (as `run_all --out runs/` passes) restores the same checkpoint.
  np.testing.assert_array_equal(common.loss_by_position(os.path.relpath(run)), by_pos)
  s = exp.analyze([tiny_runs("sizes"), arch], str(tmp_path))
  assert set(s["per_arch"]) == {"transformer", "universal", "lstm"}
  uni = s["per_arch"]["universal"]
  c_twin = common.load_runs(os.path.join(tiny_runs("sizes"), "C"))[0].final("flops")
  assert uni["C"] == [c_twin]  # same shape as C: same FLOPs, 1/n_layer of its N
  assert uni["N"] == [12288 / 2]
  assert set(s["loss_by_position"]) >= {"lstm", "universal", "A"}
  assert s["position_gap"]["lstm"] == "lstm"
  assert (tmp_path / "architectures.png").is_file()


@pytest.mark.slow
def test_09_lr_schedule(tmp_path):
  exp = _analysis("09_lr_schedule")
  s = exp.analyze([tiny_runs("sizes"), tiny_runs("data_lr")], str(tmp_path))
  pts = {p["run"]: p for p in s["points"]}
  n_a = pts["A"]["N"]
  kaplan = pts["A_D2k_kaplan_constant"]
  assert kaplan["peak_lr"] == pytest.approx(optim.kaplan_lr(int(n_a)))
  assert pts["A"]["peak_lr"] == pytest.approx(3e-3) and pts["A"]["schedule"] == "cosine"
  # Summed LR of 30 steps: constant after a 2-step linear warmup (0, lr/2, then lr).
  assert kaplan["summed_lr"] == pytest.approx(kaplan["peak_lr"] * (0.5 + 28), rel=1e-5)
  per_a = next(e for e in s["per_N"] if e["N"] == n_a)
  assert set(per_a["schedules"]) == {"cosine", "constant"} and per_a["n_lrs"] == 2
  assert (tmp_path / "lr_schedule.png").is_file()


# ------------------------------------------------------------------------------ recorded runs
# Real CPU-scale runs of `python -m experiments.run_all` (experiments/RESULTS.md), kept small
# by `python -m experiments.recorded SWEEP_DIR tests/data/experiments_<sweep>.json`: the
# analyses must keep recovering what they found on the full runs.


def _out(tmp_path, name: str) -> str:
  (tmp_path / name).mkdir()
  return str(tmp_path / name)


def _recorded(sweep: str, tmp_path) -> str:
  return recorded.materialize(str(common.REPO / "tests" / "data" / f"experiments_{sweep}.json"),
                              str(tmp_path / sweep))


def test_04_critical_batch_on_recorded_cpu_runs(tmp_path):
  """The 2 x 64 model at 8..64 sequences: B_crit(L) from the batch sweep and from the GNS
  as found on the full runs (RESULTS.md), and growing as the loss falls (the paper's
  Fig. 10-11), with the GNS within an order of magnitude of the sweep's B_crit."""
  exp = _analysis("04_critical_batch")
  s = exp.analyze([_recorded("04_critical_batch", tmp_path)], _out(tmp_path, "out"))
  assert s["b_crit_sweep"]["alpha_B"] == pytest.approx(0.103, abs=0.005)
  assert s["b_crit_gns"]["alpha_B"] == pytest.approx(0.151, abs=0.005)
  lo, hi = s["b_crit_gns"]["alpha_B_interval"]
  assert lo < 0.151 < hi and hi - lo < 0.2
  levels = sorted(s["sweep"]["levels"], key=lambda lv: -lv["loss"])
  assert len(levels) == 6 and levels[-1]["b_crit"] > 10 * levels[0]["b_crit"]
  assert 0.1 < s["b_crit_over_b_simple"] < 10


@functools.lru_cache(maxsize=None)
def _recorded_ladder() -> str:
  """The size ladder's four runs (experiments 1, 2, 5 and 7), materialized once."""
  return recorded.materialize(str(common.REPO / "tests" / "data" / "experiments_ladder.json"),
                              str(_root() / "recorded_ladder"))


def test_01_and_07_on_recorded_cpu_runs(tmp_path):
  """L(N) and transfer on the real ladder (N = 25k..786k, 300 steps): the exponents and
  offsets found on the full runs (RESULTS.md)."""
  s = _analysis("01_l_of_n").analyze(_recorded_ladder(), _out(tmp_path, "01"))
  assert s["fit_N"]["alpha_N"] == pytest.approx(0.0452, abs=0.002)
  assert s["fit_total"]["alpha_N"] == pytest.approx(0.0866, abs=0.003)
  loss = [p["L"] for p in sorted(s["points"], key=lambda p: p["N"])]
  assert loss == sorted(loss, reverse=True) and len(loss) == 4  # bigger is better
  t = _analysis("07_transfer").analyze(_recorded_ladder(), _out(tmp_path, "07"))
  numpy_, prose = t["per_set"]["ood_numpy"], t["per_set"]["ood_prose"]
  assert numpy_["offset"] == pytest.approx(0.527, abs=0.01)
  assert prose["offset"] == pytest.approx(1.646, abs=0.01)
  assert numpy_["slope"] == pytest.approx(0.69, abs=0.02)
  assert prose["slope"] == pytest.approx(0.83, abs=0.02)
  # The paper's "roughly constant offset": prose's moves by ~0.1 nats while the validation
  # loss falls by 0.6.
  base = np.array(t["per_set"]["validation"]["final"])
  assert np.ptp(np.array(prose["final"]) - base) < 0.15 < 0.5 < np.ptp(base)


@pytest.mark.slow  # two L(N, S_min) fits and the pooled GNS law: ~25 s on 2 loaded cores
def test_02_and_05_on_recorded_cpu_runs(tmp_path):
  """L(N, S_min) and the compute frontier on the real ladder: the envelope's N_opt ~ C^p
  (0.70 here, 0.73 in the paper) and the cost of off-optimal sizes found on the full runs."""
  s = _analysis("02_l_of_n_steps").analyze(_recorded_ladder(), _out(tmp_path, "02"))
  assert s["n_points"] == 52 and s["fit"]["alpha_S"] == pytest.approx(0.246, abs=0.03)
  f = _analysis("05_compute_frontier").analyze(_recorded_ladder(), _out(tmp_path, "05"))
  assert f["fit_N_opt"]["p"] == pytest.approx(0.705, abs=0.02)
  assert f["fit_L_C"]["alpha_C"] == pytest.approx(0.0883, abs=0.005)
  extra = dict(zip(f["size_factors"], f["excess_compute"]))
  assert extra[0.6] == pytest.approx(0.12, abs=0.03)
  assert extra[2.2] == pytest.approx(0.196, abs=0.03)


def test_06_shape_on_recorded_cpu_runs(tmp_path):
  """Ten shapes at N ~ 9.8e4: the head count changes the loss by < 0.5% (the paper's
  finding), depth and d_ff by the 13% and 7% found on the full runs (RESULTS.md)."""
  s = _analysis("06_shape").analyze(_recorded("06_shape", tmp_path), _out(tmp_path, "out"))
  (group,) = s["groups"]
  assert len(group["runs"]) == 10 and group["best"] == "ffn_r1_d88"
  spread = {}
  for p in s["points"]:
    spread.setdefault(p["family"], []).append(p["increase"])
  assert np.ptp(spread["heads"]) < 0.005
  assert np.ptp(spread["depth"]) == pytest.approx(0.133, abs=0.01)
  assert np.ptp(spread["ffn"]) == pytest.approx(0.069, abs=0.01)
  assert group["max_increase"] == pytest.approx(0.134, abs=0.01)


# ------------------------------------------------------------------------------ bad input


def _one_error_line(capsys, command: str) -> str:
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith(f"scaling-jax {command}: error: "), err
  return err


def test_load_runs_names_each_run_it_leaves_out(tmp_path, capsys):
  """A sweep with one readable run and one whose config.json was cut short: the analysis gets the
  readable run, and stderr names the other (it is not silently dropped)."""
  from tests.test_runs import make_run
  make_run(tmp_path, "good", 1e6, steps=range(10, 101, 10))
  make_run(tmp_path, "cut", 2e6, steps=range(10, 101, 10))
  (tmp_path / "cut" / "config.json").write_text('{"config": {"model"')
  loaded = common.load_runs(str(tmp_path))
  assert [r.name for r in loaded] == ["good"]
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("warning: ") and "cut/config.json" in err[0], err


@pytest.mark.parametrize("name", ["03_l_of_n_d", "08_architectures", "09_lr_schedule"])
def test_analysis_bad_input_is_one_line_and_exit_2(name, tmp_path, capsys):
  """A sweep whose one run has a damaged config.json (skipped, so nothing to analyse), a bad
  --bootstrap and an --out below a file: one stderr line each, exit code 2."""
  run = tmp_path / "sweep" / "B16"
  run.mkdir(parents=True)
  (run / "config.json").write_text('{"config": {"model"')
  main = _analysis(name).main
  assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 2
  err = _one_error_line(capsys, f"experiment {name}")
  assert "no run directories" in err and "B16/config.json" in err  # the skipped run is named
  assert main([str(tmp_path / "sweep"), "--bootstrap", "many"]) == 2
  assert "--bootstrap" in _one_error_line(capsys, f"experiment {name}")
  (tmp_path / "file").write_text("")
  assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "file" / "out")]) == 2
  assert "--out" in _one_error_line(capsys, f"experiment {name}")


def test_run_all_and_recorded_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
  b8 = tmp_path / "04_critical_batch" / "B8"
  b8.mkdir(parents=True)
  (b8 / "status.json").write_text("finished")  # not a JSON object
  assert run_all.main(["--out", str(tmp_path), "--only", "4", "--dry-run"]) == 2
  assert "B8/status.json" in _one_error_line(capsys, "experiments.run_all")
  (tmp_path / "run_all.json").write_text('{"runs": []}')  # a damaged time record
  with pytest.raises(rundir.DamagedRunFile, match="run_all.json"):
    run_all.read_record(str(tmp_path))
  assert run_all.main(["--out", str(tmp_path), "--bootstrap", "-1"]) == 2
  assert "--bootstrap" in _one_error_line(capsys, "experiments.run_all")
  assert recorded.main([str(tmp_path / "missing"), str(tmp_path / "x.json")]) == 2
  assert "not a directory" in _one_error_line(capsys, "experiments.recorded")
  (b8 / "config.json").write_text('{"config": {"model"')  # cut short
  assert recorded.main([str(tmp_path / "04_critical_batch"), str(tmp_path / "x.json")]) == 2
  assert "B8/config.json" in _one_error_line(capsys, "experiments.recorded")
  with pytest.raises(common.ExperimentError, match="does not exist"):
    recorded.materialize(str(tmp_path / "none.json"), str(tmp_path / "m"))


def test_08_architectures_on_recorded_cpu_runs(tmp_path):
  """Transformers, Universal Transformers and LSTMs at N = 1.2e4..4.1e5 after 300 steps, with
  each final checkpoint's loss by context position (recorded): the Universal Transformer
  slightly better per parameter and no better per FLOP (the paper's Fig. 7 finding), and
  the LSTM ahead of the Transformer at this scale, at every position, but improving more
  slowly with N (RESULTS.md)."""
  path = str(common.REPO / "tests" / "data" / "experiments_08_architectures.json")
  runs = recorded.materialize(path, str(tmp_path / "08"))
  s = _analysis("08_architectures").analyze(runs, _out(tmp_path, "out"),
                                            positions=recorded.positions(path))
  arch = s["per_arch"]
  assert {a: len(e["runs"]) for a, e in arch.items()} == {
      "transformer": 3, "universal": 3, "lstm": 3}
  assert arch["transformer"]["fit"]["alpha_N"] == pytest.approx(0.0458, abs=0.002)
  assert arch["universal"]["fit"]["alpha_N"] == pytest.approx(0.0510, abs=0.002)
  assert arch["lstm"]["fit"]["alpha_N"] == pytest.approx(0.0299, abs=0.002)
  assert np.median(arch["universal"]["ratio_N"]) == pytest.approx(0.977, abs=0.003)
  assert np.median(arch["universal"]["ratio_C"]) == pytest.approx(1.005, abs=0.003)
  assert np.median(arch["lstm"]["ratio_N"]) == pytest.approx(0.942, abs=0.003)
  gap = s["position_gap"]
  assert (gap["lstm"], gap["transformer"]) == ("lstm_n2_d160", "transformer_n3_d96")
  assert gap["early"] == pytest.approx(-0.179, abs=0.005)
  assert gap["late"] == pytest.approx(-0.278, abs=0.005)
  # The recorded positions average to each run's logged final eval loss.
  for name, by_pos in recorded.positions(path).items():
    assert by_pos.mean() == pytest.approx(common.load_runs(os.path.join(runs, name))[0].final(),
                                          abs=2e-4)


def test_03_l_of_n_d_on_recorded_cpu_runs(tmp_path):
  """3 sizes x 4 dataset sizes (5e4 tokens, repeated 25 times, to the whole 9.2e6-token
  corpus), early-stopped: L(N, D)'s exponents as found on the full runs (RESULTS.md), and
  the overfitting penalty one increasing function of N^(alpha_N/alpha_D)/D (Fig. 9)."""
  exp = _analysis("03_l_of_n_d")
  s = exp.analyze(_recorded("03_l_of_n_d", tmp_path), _out(tmp_path, "out"))
  p = s["fit"]
  assert len(s["points"]) == 12
  assert p["alpha_N"] == pytest.approx(0.0452, abs=0.003)
  assert p["alpha_D"] == pytest.approx(0.143, abs=0.01)
  assert s["our_rule"]["exponent"] == pytest.approx(0.317, abs=0.02)
  x, pen = np.asarray(s["x"]), np.asarray(s["penalty"])
  assert np.abs(pen - exp.penalty_curve(p, x)).max() < 0.02  # one curve of x for every N
  by = {(q["N"], q["D"]): v for q, v in zip(s["points"], pen)}
  for d in (5e4, 2e5):  # at a fixed small D, the penalty grows with N
    row = [by[(n, d)] for n in sorted({n for n, _ in by})]
    assert row == sorted(row) and row[0] > 0.05
  assert max(by[(n, 5e4)] for n, _ in by) == pytest.approx(0.318, abs=0.01)
  assert s["max_penalty_obeying_rule"] < 0.02  # the one run with D >= 5e3 N^0.74


def test_09_lr_schedule_on_recorded_cpu_runs(tmp_path):
  """3 sizes x (0.5, 1, 2, 4 x Kaplan's LR(N), cosine; 1x constant) after 300 steps: the
  loss still falls at 4x the rule (every best LR a bound at the scan's edge), and at about
  equal summed LR the constant and the cosine schedule reach the same loss (RESULTS.md)."""
  s = _analysis("09_lr_schedule").analyze(_recorded("09_lr_schedule", tmp_path),
                                          _out(tmp_path, "out"))
  per_n = s["per_N"]
  assert len(per_n) == 3 and not any(e["bracketed"] for e in per_n)
  for e in per_n:
    assert e["best_lr"] == pytest.approx(4 * e["kaplan_lr"], rel=1e-6)
  assert [round(e["kaplan_gap"], 3) for e in per_n] == [0.042, 0.021, 0.019]
  assert s["lr_rule_fit"]["n_bounds"] == 3
  assert s["fit_L_N"]["alpha_N"] == pytest.approx(0.0238, abs=0.002)
  pts = {p["run"]: p for p in s["points"]}
  for size in ("n2_d32", "n2_d64", "n3_d96"):
    const, cos2 = pts[f"{size}_kaplan_constant"], pts[f"{size}_lr2x"]
    assert const["summed_lr"] == pytest.approx(cos2["summed_lr"], rel=0.12)
    assert const["L"] == pytest.approx(cos2["L"], rel=0.006)
    assert pts[f"{size}_kaplan_cosine"]["L"] > const["L"] + 0.2  # same peak LR, less summed
