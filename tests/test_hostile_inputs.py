"""Hostile input (issue #21): every command fails on bad input in one line, exit code 2.

Each case runs `scaling_jax.cli.main` in-process (the entry point the `scaling-jax` script
calls) and asserts: exit code 2, exactly one non-empty line on stderr (file descriptor 2, so
a library's warning would count), that line naming the command and what was wrong, and
every file of a shared world of existing runs, studies, sweeps and tables unchanged byte for
byte. Bad input is rejected before anything is built or compiled, so each case is cheap.
A few cases go through a real `python -m scaling_jax.cli` subprocess; the launchers and the
experiments' analyses run inside the same boundary and are checked the same way.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from experiments import common as experiments_common
from experiments import run_all
from launch import local, slurm, sweep_fanout, tpu_vm
from scaling_jax import cli, metrics as metrics_lib, rundir
from tests.helpers import write_token_array
from tests.test_runs import make_run

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.py")


def tree_digest(root) -> dict[str, str]:
  """{relative path: sha256} of every file under `root` (and the directories, as "dir")."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for d in dirnames:
      out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
    for f in filenames:
      p = os.path.join(dirpath, f)
      out[os.path.relpath(p, root)] = hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()
  return out


def _write_run(path, config_json=None):
  """A run directory as training leaves it: config.json (this code's versions), metrics,
  status.json; `config_json` (bytes) replaces its config.json."""
  os.makedirs(path)
  rundir.write_json_atomic(os.path.join(path, rundir.CONFIG_FILE),
                           {"config": {}, "facts": {"n_params": 1000, "batch_tokens": 512},
                            "versions": rundir.code_versions()})
  w = metrics_lib.MetricsWriter(path, tensorboard=False)
  w.write({"step": 5, "loss": 5.0})
  w.close()
  rundir.write_status(path, "preempted", step=5)
  if config_json is not None:
    pathlib.Path(path, rundir.CONFIG_FILE).write_bytes(config_json)
  return str(path)


def _py(path, text: str | bytes) -> str:
  p = pathlib.Path(path)
  p.write_bytes(text if isinstance(text, bytes) else text.encode())
  return str(p)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  """Existing files a bad command must not touch; {name: path}."""
  root = tmp_path_factory.mktemp("world")
  w = {"root": str(root), "tokens": str(write_token_array(root, n_tokens=4000))}
  for name, raw in {"run_list": b"[1, 2]", "run_trunc": b'{"config": {"model": {"n_la',
                    "run_latin1": '{"config": "caf\xe9"}'.encode("latin-1"),
                    "run_shape": b'{"config": 5, "versions": {}}',
                    "run_other_version": json.dumps(
                        {"config": {}, "versions": {"scaling_jax": "0.0.1"}}).encode()}.items():
    w[name] = _write_run(root / name, raw)
  w["run_ok"] = _write_run(root / "run_ok")
  study = root / "study"
  for i, n in enumerate((1e6, 4e6, 1.6e7)):
    make_run(study, f"n{i}", n, steps=range(10, 201, 10))
  w["study"] = str(study)
  damaged = root / "study_damaged_status"
  make_run(damaged, "a", 1e6, steps=range(10, 101, 10))
  (damaged / "a" / rundir.STATUS_FILE).write_bytes(b'{"status": "fini')
  w["study_damaged_status"] = str(damaged)
  w["study_empty"] = str(root / "study_empty")
  os.makedirs(w["study_empty"])
  w["a_file"] = _py(root / "a_file.txt", "not a directory\n")
  w["table"] = _py(root / "table.csv", "run,N,L\na,1e6,4.0\nb,1e7,3.5\nc,1e8,3.1\n")
  w["table_latin1"] = _py(root / "table_latin1.csv",
                          "run,N,L\ncaf\xe9,1e6,4.0\nb,1e7,3.5\n".encode("latin-1"))
  w["table_empty"] = _py(root / "table_empty.csv", "")
  w["table_json_scalar"] = _py(root / "table.json", "42")
  # sweep files, and a sweep directory with one finished run
  runs = [{"name": "a", "config": TINY, "overrides": {"train.num_steps": 10}}]
  w["sweep_ok"] = _py(root / "sweep_ok.py", f"def get_sweep():\n  return {runs!r}\n")
  bad_sweeps = {
      "syntax": "def get_sweep(:\n",
      "raises": "def get_sweep():\n  raise ValueError('no grid for this scale')\n",
      "no_get_sweep": "RUNS = []\n",
      "none": "def get_sweep():\n  return None\n",
      "dict": "def get_sweep():\n  return {'name': 'a'}\n",
      "str_item": "def get_sweep():\n  return ['a']\n",
      "dup": f"def get_sweep():\n  return {runs + runs!r}\n",
      "slash": f"def get_sweep():\n  return [('a/b', {TINY!r}, {{}})]\n",
      "unknown_field": f"def get_sweep():\n  return [('a', {TINY!r}, {{'model.foo': 1}})]\n",
      "nan_lr": f"def get_sweep():\n  return [('a', {TINY!r}, {{'optim.lr': float('nan')}})]\n",
      "zero_keep":
          f"def get_sweep():\n  return [('a', {TINY!r}, {{'train.keep_checkpoints': 0}})]\n",
      "missing_config": "def get_sweep():\n  return [('a', 'configs/nope.py', {})]\n",
      "overrides_list": f"def get_sweep():\n  return [('a', {TINY!r}, [1, 2])]\n",
      "import_error": "import no_such_module_xyz\n",
      "latin1": "NAME = 'caf\xe9'\ndef get_sweep():\n  return []\n",
      "empty": "def get_sweep():\n  return []\n",
  }
  for name, text in bad_sweeps.items():
    w[f"sweep_{name}"] = _py(root / f"sweep_{name}.py",
                             text.encode("latin-1") if name == "latin1" else text)
  sweep_dir = root / "sweep_dir"
  _write_run(sweep_dir / "a")
  rundir.write_status(sweep_dir / "a", "finished", step=10)
  w["sweep_dir"] = str(sweep_dir)
  damaged_sweep = root / "sweep_damaged"
  _write_run(damaged_sweep / "a")
  (damaged_sweep / "a" / rundir.STATUS_FILE).write_bytes(b"\xff\xfe garbage")
  w["sweep_damaged"] = str(damaged_sweep)
  w["sweep_dir_with_file"] = str(root / "sweep_with_file")
  os.makedirs(w["sweep_dir_with_file"])
  _py(root / "sweep_with_file" / "a", "a file where run a's directory would go\n")
  # config files
  w["cfg_syntax"] = _py(root / "cfg_syntax.py", "def get_config(:\n")
  w["cfg_no_get"] = _py(root / "cfg_no_get.py", "X = 1\n")
  w["cfg_raises"] = _py(root / "cfg_raises.py", "def get_config():\n  return 1 / 0\n")
  w["cfg_list"] = _py(root / "cfg_list.py", "def get_config():\n  return [1, 2]\n")
  w["cfg_latin1"] = _py(root / "cfg_latin1.py", "NAME = 'caf\xe9'\n".encode("latin-1"))
  # critical-batch study files (get_study()), and a study directory whose base run's
  # status.json is damaged
  design = ("dict(base_batch=16, base_steps=800, branch_steps={steps}, batch_sizes=(8, 16, 32), "
            "target_drop={drop}, branch_max_tokens=1000, sweep_max_tokens=1000, "
            "eval_sequences=128, eval_every_sequences=80, lr_rule='gns')")
  bad_studies = {
      "syntax": "def get_study(:\n",
      "raises": "def get_study():\n  raise ValueError('no design at this scale')\n",
      "dict": "def get_study():\n  return {'base_batch': 16}\n",
      "not_callable": "get_study = 5\n",
      "import_error": "import no_such_module_xyz\n",
      "latin1": "NAME = 'caf\xe9'\ndef get_study():\n  return None\n",
      "few_fields": ("import ml_collections\ndef get_study():\n"
                     "  return ml_collections.ConfigDict({'base_batch': 16})\n"),
      "steps_int": ("import ml_collections\ndef get_study():\n  return ml_collections."
                    f"ConfigDict({design.format(steps=500, drop=0.03)})\n"),
      "drop_word": ("import ml_collections\ndef get_study():\n  return ml_collections."
                    f"ConfigDict({design.format(steps=(400,), drop=repr('x'))})\n"),
  }
  for name, text in bad_studies.items():
    w[f"study_{name}"] = _py(root / f"study_{name}.py",
                             text.encode("latin-1") if name == "latin1" else text)
  cb_damaged = root / "cb_damaged"
  _write_run(cb_damaged / "runs" / "base")
  (cb_damaged / "runs" / "base" / rundir.STATUS_FILE).write_bytes(b'{"status": "fini')
  w["cb_damaged"] = str(cb_damaged)
  # studies whose runs all failed, or none of which finished
  for key, statuses in (("study_all_failed", ("failed",) * 3),
                        ("study_unfinished", ("failed", "preempted", "running")),
                        ("study_one_failed", ("finished", "failed", "finished"))):
    for i, (n, status) in enumerate(zip((1e6, 4e6, 1.6e7), statuses)):
      make_run(root / key, f"n{i}", n, steps=range(10, 201, 10))
      rundir.write_status(root / key / f"n{i}", status, step=200)
    w[key] = str(root / key)
  return w


def _train(w, t, *extra):
  return ["train", "--config", TINY, "--workdir", str(t / "new_run"),
          "--config.data.name=array", f"--config.data.array_path={w['tokens']}",
          "--config.model.vocab_size=128", *extra]


def train_with(*extra):
  """`scaling-jax train` of configs/tiny.py on the array corpus, plus `extra` arguments."""
  return lambda w, t: _train(w, t, *extra)


def train_config(key):
  """`scaling-jax train --config` the world's file `key`."""
  return lambda w, t: ["train", "--config", w[key], "--workdir", str(t / "r")]


def train_into(key):
  """`scaling-jax train` into the world's existing run directory `key`."""
  return lambda w, t: _train(w, t, "--workdir", w[key])


def sweep_file(key, *extra):
  """`scaling-jax sweep` of the world's sweep file `key` into a new directory."""
  return lambda w, t: ["sweep", w[key], "--out", str(t / "o"), *extra]


def sweep_into(key, *extra):
  """`scaling-jax sweep` of a good sweep file into the world's existing directory `key`."""
  return lambda w, t: ["sweep", w["sweep_ok"], "--out", w[key], *extra]


def fit_with(*extra):
  """`scaling-jax fit` of a good table, plus `extra` arguments (later ones win)."""
  return lambda w, t: ["fit", w["table"], "--law", "L_N", "--bootstrap", "0", "--no-plots",
                       "--out", str(t / "fit_out"), *extra]


def fit_table(key):
  return lambda w, t: ["fit", w[key], "--law", "L_N", "--out", str(t / "f")]


def report_of(key, b_crit="kaplan"):
  """`scaling-jax report` of the world's study `key` into a new directory."""
  return lambda w, t: ["report", w[key], "--out", str(t / "r"), "--bootstrap", "0",
                       "--b-crit", b_crit]


def critical_batch_study(key):
  """`scaling-jax critical-batch --config` the world's study file `key`."""
  return lambda w, t: ["critical-batch", "--config", w[key], "--out", str(t / "cb")]


# (command argv from (world, tmp_path), a fragment the one stderr line must contain, or a
# tuple of them)
CASES = {
    # train: values
    "train_lr_nan": (train_with("--config.optim.lr=nan"), "optim.lr=nan"),
    "train_lr_inf": (train_with("--config.optim.lr=inf"), "optim.lr=inf"),
    "train_lr_negative": (train_with("--config.optim.lr=-0.001"), "> 0"),
    "train_lr_zero": (train_with("--config.optim.lr=0"), "optim.lr=0"),
    "train_keep_0": (train_with("--config.train.keep_checkpoints=0"), "keep_checkpoints=0"),
    "train_eval_batches_0": (train_with("--config.data.eval_batches=0"), "eval_sets=()"),
    "train_seed_negative": (train_with("--config.seed=-1"), "seed=-1"),
    "train_seed_huge": (train_with("--config.seed=4294967296"), "seed="),
    "train_d_model_abc": (train_with("--config.model.d_model=abc"), "d_model=abc"),
    "train_d_model_0": (train_with("--config.model.d_model=0"), "d_model=0"),
    "train_n_layer_negative": (train_with("--config.model.n_layer=-2"), "n_layer=-2"),
    "train_unknown_field": (train_with("--config.model.foo=1"), "'foo'"),
    "train_heads_not_dividing": (train_with("--config.model.n_heads=5"), "does not divide"),
    "train_optimizer_name": (train_with("--config.optim.name=sgd"), "one of"),
    "train_ema_1": (train_with("--config.gns.ema=1.0"), "gns.ema"),
    "train_b2_above_1": (train_with("--config.optim.b2=1.5"), "optim.b2"),
    "train_eps_0": (train_with("--config.optim.eps=0"), "optim.eps"),
    "train_weight_decay_negative": (train_with("--config.optim.weight_decay=-0.1"),
                                    "weight_decay"),
    "train_max_pass_tokens": (train_with("--config.train.max_pass_tokens=-5"),
                              "max_pass_tokens=-5"),
    "train_max_tokens_0": (train_with("--config.data.max_tokens=0"), "max_tokens=0"),
    "train_bool_maybe": (train_with("--config.train.progress=maybe"), "progress"),
    "train_mesh_0": (train_with("--config.mesh.data=0"), "mesh.data=0"),
    "train_empty_eval_set_name": (train_with("--config.data.eval_sets=('',)"), "eval_sets"),
    "train_warmup_negative": (train_with("--config.optim.warmup_steps=-1"), "warmup_steps=-1"),
    "train_warmup_past_end": (train_with("--config.optim.warmup_steps=1000"), "leaves no steps"),
    "train_batch_not_divisible": (train_with("--config.train.batch_size=7"), "not divisible"),
    "train_num_small_1": (train_with("--config.gns.num_small=1"), "num_small"),
    "train_empty_data_name": (train_with("--config.data.name="), "data.name"),
    "train_peak_flops_nan": (train_with("--config.train.peak_flops_per_device=nan"),
                             "peak_flops_per_device"),
    "train_max_skipped_negative": (train_with("--config.train.max_skipped_steps=-1"),
                                   "max_skipped_steps"),
    # train: the command line and config files
    "train_config_missing": (lambda w, t: ["train", "--config", str(t / "nope.py"), "--workdir",
                                           str(t / "r")], "does not exist"),
    "train_config_syntax": (train_config("cfg_syntax"), "SyntaxError"),
    "train_config_no_get_config": (train_config("cfg_no_get"), "no get_config()"),
    "train_config_raises": (train_config("cfg_raises"), "ZeroDivisionError"),
    "train_config_returns_list": (train_config("cfg_list"), "returned a list"),
    "train_config_not_utf8": (train_config("cfg_latin1"), "cannot load config file"),
    "train_no_workdir": (lambda w, t: ["train", "--config", TINY], "--workdir"),
    "train_unknown_argument": (train_with("--epochs", "3"), "--epochs"),
    "train_override_without_value": (train_with("--config.model.d_model"),
                                     "--config.FIELD=VALUE"),
    "train_dist_bogus": (train_with("--dist", "mpi"), "--dist"),
    # train: the workdir and the run already in it
    "train_config_json_list": (train_into("run_list"), "config.json is damaged"),
    "train_config_json_truncated": (train_into("run_trunc"), "not valid JSON"),
    "train_config_json_not_utf8": (train_into("run_latin1"), "not UTF-8"),
    "train_config_json_wrong_shape": (train_into("run_shape"), '"config" is a JSON int'),
    "train_other_code_version": (train_into("run_other_version"), "scaling_jax 0.0.1"),
    "train_workdir_is_a_file": (train_into("a_file"), "not a directory"),
    "train_workdir_under_a_file": (lambda w, t: _train(w, t, "--workdir", w["a_file"] + "/run"),
                                   "--workdir"),
    # sweep
    "sweep_file_missing": (lambda w, t: ["sweep", str(t / "nope.py"), "--out", str(t / "o")],
                           "not found"),
    "sweep_syntax_error": (sweep_file("sweep_syntax"), "SyntaxError"),
    "sweep_get_sweep_raises": (sweep_file("sweep_raises"), "ValueError: no grid for this scale"),
    "sweep_no_get_sweep": (sweep_file("sweep_no_get_sweep"), "no get_sweep()"),
    "sweep_returns_none": (sweep_file("sweep_none"), "returned a NoneType"),
    "sweep_returns_dict": (sweep_file("sweep_dict"), "returned a dict"),
    "sweep_item_is_a_string": (sweep_file("sweep_str_item"), "item 0"),
    "sweep_duplicate_names": (sweep_file("sweep_dup"), "unique"),
    "sweep_name_with_slash": (sweep_file("sweep_slash"), "directory name"),
    "sweep_unknown_field": (sweep_file("sweep_unknown_field"),
                            "run 'a': unknown config field 'foo'"),
    "sweep_run_lr_nan": (sweep_file("sweep_nan_lr"), "optim.lr=nan"),
    "sweep_run_keep_0": (sweep_file("sweep_zero_keep"), "keep_checkpoints=0"),
    "sweep_missing_config": (sweep_file("sweep_missing_config"), "configs/nope.py"),
    "sweep_overrides_not_a_dict": (sweep_file("sweep_overrides_list"), "item 0"),
    "sweep_import_error": (sweep_file("sweep_import_error"), "ModuleNotFoundError"),
    "sweep_file_not_utf8": (sweep_file("sweep_latin1"), "SyntaxError"),
    "sweep_no_runs": (sweep_file("sweep_empty"), "no runs"),
    "sweep_parallel_0": (sweep_file("sweep_ok", "--parallel", "0"), "--parallel"),
    "sweep_parallel_abc": (sweep_file("sweep_ok", "--parallel", "abc"), "'abc'"),
    "sweep_extra_override_nan": (sweep_into("sweep_dir", "--config.optim.lr=nan"),
                                 "optim.lr=nan"),
    "sweep_extra_argument": (sweep_into("sweep_dir", "--foo"), "--foo"),
    "sweep_out_under_a_file": (lambda w, t: ["sweep", w["sweep_ok"], "--out",
                                             w["a_file"] + "/o"], "not a directory"),
    "sweep_damaged_status": (sweep_into("sweep_damaged"), "status.json is damaged"),
    "sweep_run_dir_is_a_file": (sweep_into("sweep_dir_with_file"), "not a run directory"),
    "sweep_no_out": (lambda w, t: ["sweep", w["sweep_ok"]], "--out"),
    # fit
    "fit_source_missing": (lambda w, t: ["fit", str(t / "nope"), "--out", str(t / "f")],
                           "does not exist"),
    "fit_table_not_utf8": (fit_table("table_latin1"), "not UTF-8"),
    "fit_table_empty": (fit_table("table_empty"), "empty CSV"),
    "fit_table_json_scalar": (fit_table("table_json_scalar"), "expected a list of rows"),
    "fit_unknown_law": (fit_with("--law", "L_nope"), "L_nope"),
    "fit_b_crit_word": (fit_with("--b-crit", "banana"), "banana"),
    "fit_b_crit_negative": (fit_with("--b-crit", "-5"), "positive"),
    "fit_bootstrap_negative": (fit_with("--bootstrap", "-1"), "--bootstrap"),
    "fit_grid_0": (fit_with("--grid", "0"), "--grid"),
    "fit_delta_nan": (fit_with("--delta", "nan"), "--delta"),
    "fit_points_abc": (fit_with("--points", "abc"), "--points"),
    "fit_out_proc": (fit_with("--out", "/proc/scaling_jax_x"), "--out"),
    "fit_out_under_a_file": (lambda w, t: fit_with("--out", w["a_file"] + "/f")(w, t),
                             "not a directory"),
    "fit_no_runs": (lambda w, t: ["fit", w["study_empty"], "--out", str(t / "f")],
                    "no run directories"),
    "fit_damaged_config_json": (lambda w, t: ["fit", w["run_list"], "--out", str(t / "f")],
                                "config.json is damaged"),
    # report
    "report_study_missing": (lambda w, t: ["report", str(t / "nope")], "not a directory"),
    "report_study_is_a_file": (lambda w, t: ["report", w["a_file"]], "not a directory"),
    "report_b_crit_word": (lambda w, t: ["report", w["study"], "--b-crit", "banana",
                                         "--out", str(t / "r")], "banana"),
    "report_bootstrap_abc": (lambda w, t: ["report", w["study"], "--bootstrap", "abc"],
                             "--bootstrap"),
    "report_out_under_a_file": (lambda w, t: ["report", w["study"], "--out",
                                              w["a_file"] + "/r"], "not a directory"),
    "report_no_runs": (lambda w, t: ["report", w["study_empty"], "--out", str(t / "r")],
                       "no run directories"),
    "report_damaged_status": (lambda w, t: ["report", w["study_damaged_status"], "--out",
                                            str(t / "r")], "status.json is damaged"),
    "report_unknown_argument": (lambda w, t: ["report", w["study"], "--law", "L_N"], "--law"),
    "report_all_runs_failed": (report_of("study_all_failed"),
                               ("none of the 3 runs", "finished", "failed: n0, n1, n2",
                                "status.json", "train.log")),
    "report_no_run_finished": (report_of("study_unfinished"),
                               ("none of the 3 runs", "failed: n0", "preempted: n1",
                                "running: n2")),
    # the runs logged no GNS: the error also says which failed run was left out
    "report_error_names_the_left_out_run": (report_of("study_one_failed", "gns"),
                                            ("usable GNS", "left out 1 failed run of 3: n1")),
    # critical-batch: the study file, --out and the runs already in it
    "critical_batch_study_syntax": (critical_batch_study("study_syntax"),
                                    ("study_syntax.py", "SyntaxError")),
    "critical_batch_get_study_raises": (critical_batch_study("study_raises"),
                                        ("study_raises.py",
                                         "ValueError: no design at this scale")),
    "critical_batch_get_study_returns_dict": (critical_batch_study("study_dict"),
                                              ("study_dict.py", "returned a dict")),
    "critical_batch_get_study_not_callable": (critical_batch_study("study_not_callable"),
                                              "no get_study()"),
    "critical_batch_study_import_error": (critical_batch_study("study_import_error"),
                                          "ModuleNotFoundError"),
    "critical_batch_study_not_utf8": (critical_batch_study("study_latin1"), "SyntaxError"),
    "critical_batch_study_lacks_fields": (critical_batch_study("study_few_fields"),
                                          ("lacks", "base_steps")),
    "critical_batch_branch_steps_not_a_tuple": (critical_batch_study("study_steps_int"),
                                                "study.branch_steps=500"),
    "critical_batch_target_drop_word": (critical_batch_study("study_drop_word"),
                                        "study.target_drop='x'"),
    "critical_batch_out_under_a_file": (lambda w, t: ["critical-batch", "--out",
                                                      w["a_file"] + "/cb"], "not a directory"),
    "critical_batch_damaged_base_status": (lambda w, t: ["critical-batch", "--out",
                                                         w["cb_damaged"]],
                                           "status.json is damaged"),
    # data
    "data_vocab_override_abc": (lambda w, t: ["data", "--config.model.vocab_size=abc",
                                              "--data-dir", str(t / "d")], "vocab_size=abc"),
    "data_vocab_flag_0": (lambda w, t: ["data", "--vocab-size", "0", "--data-dir",
                                        str(t / "d")], "--vocab-size"),
    "data_vocab_flag_abc": (lambda w, t: ["data", "--vocab-size", "abc"], "--vocab-size"),
    "data_unknown_field": (lambda w, t: ["data", "--config.data.foo=1"], "'foo'"),
    "data_config_missing": (lambda w, t: ["data", "--config", str(t / "nope.py")],
                            "does not exist"),
    "data_dir_under_a_file": (lambda w, t: ["data", "--data-dir", w["a_file"] + "/cache"],
                              "--data-dir"),
    "data_eval_batches_0": (lambda w, t: ["data", "--config.data.eval_batches=0"],
                            "eval_batches=0"),
    "data_stray_argument": (lambda w, t: ["data", "corpus.txt"], "corpus.txt"),
    "data_empty_eval_set": (lambda w, t: ["data", "--eval-sets", ",", "--config.data.name="],
                            "data.name"),
    # demo and compile
    "demo_scale_huge": (lambda w, t: ["demo", "--scale", "huge", "--out", str(t / "d")],
                        "--scale"),
    "demo_parallel_0": (lambda w, t: ["demo", "--parallel", "0", "--out", str(t / "d")],
                        "--parallel"),
    "demo_override_nan": (lambda w, t: ["demo", "--out", str(t / "d"),
                                        "--config.optim.lr=nan"], "optim.lr=nan"),
    "demo_b_crit_word": (lambda w, t: ["demo", "--out", str(t / "d"), "--b-crit", "banana"],
                         "banana"),
    "demo_out_under_a_file": (lambda w, t: ["demo", "--out", w["a_file"] + "/d"],
                              "not a directory"),
    "compile_unknown_topology": (lambda w, t: ["compile", "--config", TINY, "--topology",
                                               "v9-8"], "v9-8"),
    "compile_bad_override": (lambda w, t: ["compile", "--config", TINY, "--topology", "v5e-4",
                                           "--config.model.n_heads=5"], "does not divide"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, world, tmp_path, capfd):
  make_argv, fragment = CASES[case]
  argv = make_argv(world, tmp_path)
  before = tree_digest(world["root"])
  rc = cli.main(argv)
  out, err = capfd.readouterr()
  lines = [line for line in err.splitlines() if line.strip()]
  assert rc == 2, (rc, err[-3000:])
  assert len(lines) == 1, err[-3000:]
  assert lines[0].startswith(f"scaling-jax {argv[0]}: error: "), lines[0]
  for f in fragment if isinstance(fragment, tuple) else (fragment,):
    assert f in lines[0], (f, lines[0])
  assert out == "", out[-3000:]  # no progress before the input was checked
  assert tree_digest(world["root"]) == before
  assert sorted(os.listdir(tmp_path)) == []  # no output directory, run or cache was made


def test_at_least_60_distinct_bad_inputs_across_the_commands():
  by_command = {}
  for name in CASES:
    by_command.setdefault(name.split("_")[0], []).append(name)
  assert len(CASES) >= 60
  assert all(len(by_command[c]) >= 5 for c in ("train", "sweep", "fit", "report", "data"))


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--config", "configs/tiny.py", "--workdir", "RUN", "--config.optim.lr=nan"],
     "optim.lr=nan"),
    (["fit", "TABLE", "--law", "L_N", "--out", "/proc/scaling_jax_x"], "--out"),
    (["sweep", "SWEEP", "--out", "OUT"], "ValueError"),
])
def test_the_installed_entry_point_prints_one_line(argv, fragment, world, tmp_path):
  """The real process: no traceback, one line, exit 2, nothing created."""
  subst = {"RUN": str(tmp_path / "run"), "TABLE": world["table"],
           "SWEEP": world["sweep_raises"], "OUT": str(tmp_path / "out")}
  proc = subprocess.run([sys.executable, "-m", "scaling_jax.cli",
                         *[subst.get(a, a) for a in argv]],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], proc.stderr
  assert os.listdir(tmp_path) == []


def test_a_bug_keeps_its_traceback(monkeypatch, capfd):
  """Only expected errors become one line: an internal error is not swallowed."""
  from scaling_jax import sweep

  def broken(path):
    raise KeyError("an internal bug")

  monkeypatch.setattr(sweep, "load_sweep", broken)
  with pytest.raises(KeyError, match="an internal bug"):
    cli.main(["sweep", "s.py", "--out", "o"])


def _analysis(name):
  return experiments_common.load_module(REPO / "experiments" / name / "analyze.py").main


# (entry point, its name in the error line, argv from (world, tmp_path), fragment)
OTHER_ENTRY_POINTS = {
    "local_no_command": (local.main, "launch/local.py", lambda w, t: ["-n", "2"], "-- COMMAND"),
    "local_processes_0": (local.main, "launch/local.py",
                          lambda w, t: ["-n", "0", "--dry-run", "--", "echo"], "-n"),
    "local_cpu_devices_negative": (local.main, "launch/local.py",
                                   lambda w, t: ["--cpu-devices", "-3", "--", "echo"],
                                   "--cpu-devices"),
    "local_timeout_nan": (local.main, "launch/local.py",
                          lambda w, t: ["--timeout", "nan", "--", "echo"], "--timeout"),
    "slurm_nodes_0": (slurm.main, "launch/slurm.py",
                      lambda w, t: ["--config", TINY, "--workdir", str(t / "r"), "--nodes", "0",
                                    "--dry-run"], "--nodes"),
    "tpu_vm_bad_env": (tpu_vm.main, "launch/tpu_vm.py",
                       lambda w, t: ["--tpu", "x", "--zone", "z", "--project", "p", "--env",
                                     "NOVALUE", "--dry-run", "--", "echo"], "NAME=VALUE"),
    "fanout_collect_damaged_status": (sweep_fanout.main, "launch/sweep_fanout.py",
                                      lambda w, t: ["collect", w["sweep_damaged"], "--mode",
                                                    "list"], "status.json is damaged"),
    "fanout_max_parallel_0": (sweep_fanout.main, "launch/sweep_fanout.py",
                              lambda w, t: ["submit", w["sweep_ok"], "--out", str(t / "o"),
                                            "--backend", "slurm", "--max-parallel", "0",
                                            "--dry-run"], "--max-parallel"),
    "fanout_collect_missing_source": (sweep_fanout.main, "launch/sweep_fanout.py",
                                      lambda w, t: ["collect", str(t / "nope"), "--dest",
                                                    str(t / "dest")], "does not exist"),
    "fanout_collect_one_source_missing": (sweep_fanout.main, "launch/sweep_fanout.py",
                                          lambda w, t: ["collect", w["sweep_dir"],
                                                        str(t / "nope"), "--dest",
                                                        str(t / "dest")], "nope"),
    "fanout_collect_source_is_a_file": (sweep_fanout.main, "launch/sweep_fanout.py",
                                        lambda w, t: ["collect", w["a_file"], "--dest",
                                                      str(t / "dest")], "not a directory"),
    "fanout_collect_no_runs": (sweep_fanout.main, "launch/sweep_fanout.py",
                               lambda w, t: ["collect", w["study_empty"], "--dest",
                                             str(t / "dest")], "no run directories"),
    "fanout_collect_copy_without_dest": (sweep_fanout.main, "launch/sweep_fanout.py",
                                         lambda w, t: ["collect", w["sweep_dir"]], "--dest"),
    "fanout_submit_out_under_a_file": (sweep_fanout.main, "launch/sweep_fanout.py",
                                       lambda w, t: ["submit", w["sweep_ok"], "--out",
                                                     w["a_file"] + "/o", "--backend", "local"],
                                       "choose another --out"),
    "fanout_tpu_without_project": (sweep_fanout.main, "launch/sweep_fanout.py",
                                   lambda w, t: ["submit", w["sweep_ok"], "--out",
                                                 w["sweep_dir"], "--backend", "tpu",
                                                 "--dry-run"], "--project"),
    "run_all_only_names_nothing": (run_all.main, "experiments.run_all",
                                   lambda w, t: ["--out", str(t / "o"), "--only", ",",
                                                 "--dry-run"], "01_l_of_n, 02_l_of_n_steps"),
    "run_all_only_empty": (run_all.main, "experiments.run_all",
                           lambda w, t: ["--out", str(t / "o"), "--only", "", "--dry-run"],
                           "names no experiment"),
    "run_all_out_under_a_file": (run_all.main, "experiments.run_all",
                                 lambda w, t: ["--out", w["a_file"] + "/o", "--only", "01"],
                                 "not a directory"),
    "experiment_only_a_damaged_run": (_analysis("01_l_of_n"), "experiment 01_l_of_n",
                                      lambda w, t: [w["run_list"], "--out", str(t / "a")],
                                      "no run directories"),  # the damaged run is skipped
    "experiment_bootstrap_negative": (_analysis("01_l_of_n"), "experiment 01_l_of_n",
                                      lambda w, t: [w["study"], "--bootstrap", "-1"],
                                      "--bootstrap"),
    "experiment_out_under_a_file": (_analysis("04_critical_batch"), "experiment 04_critical_batch",
                                    lambda w, t: [w["study"], "--out", w["a_file"] + "/a"],
                                    "--out"),
}



@pytest.mark.parametrize("case", sorted(OTHER_ENTRY_POINTS))
def test_launchers_and_analyses_fail_in_one_line(case, world, tmp_path, capfd):
  main, name, make_argv, fragment = OTHER_ENTRY_POINTS[case]
  before = tree_digest(world["root"])
  rc = main(make_argv(world, tmp_path))
  out, err = capfd.readouterr()
  err = [line for line in err.splitlines() if line.strip()]
  assert rc == 2 and len(err) == 1, (rc, err)
  assert err[0].startswith(f"scaling-jax {name}: error: ") and fragment in err[0], err[0]
  assert out == "", out[-3000:]  # nothing printed before the input was checked
  assert tree_digest(world["root"]) == before
  assert os.listdir(tmp_path) == []


def test_a_report_leaves_out_failed_runs_and_names_them(world, tmp_path, capfd):
  """Some runs finished, one failed: the report fits the others and says on stderr, in one
  line, which run it left out and where to look."""
  study = tmp_path / "study"
  for i, n in enumerate((1e6, 4e6, 1.6e7, 6.4e7)):
    make_run(study, f"n{i}", n, steps=range(10, 201, 10))
  rundir.write_status(study / "n3", "failed", step=120, error="TrainingDiverged: loss nan")
  assert cli.main(["report", str(study), "--out", str(tmp_path / "r"), "--bootstrap", "0",
                   "--b-crit", "kaplan"]) == 0
  err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
  assert len(err) == 1, err
  assert err[0].startswith("scaling-jax report: warning: left out 1 failed run of 4: n3 "), err
  assert "status.json" in err[0] and "train.log" in err[0], err[0]
  report_json = json.loads((tmp_path / "r" / "report.json").read_text())
  assert [r["name"] for r in report_json["runs"]] == ["n0", "n1", "n2"]
  assert report_json["source"] == str(study)
  assert any("n3" in n and "failed" in n for n in report_json["notes"])
  # `scaling-jax fit` on the same study leaves out the same run (one selection, study.select_runs)
  assert cli.main(["fit", str(study), "--out", str(tmp_path / "f"), "--law", "L_N",
                   "--last-only", "--bootstrap", "0", "--b-crit", "kaplan", "--no-plots"]) == 0
  fit_json = json.loads((tmp_path / "f" / "fit_report.json").read_text())
  assert fit_json["n_points"] == 3  # the final losses of n0, n1, n2
  assert any(w.startswith("left out 1 failed run of 4: n3") for w in fit_json["input_warnings"])
