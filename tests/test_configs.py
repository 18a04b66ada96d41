"""Config files load and validate; overrides are typed; the CLI gives one-line errors."""

import pathlib
import re
import subprocess
import sys

import jax
import pytest

from scaling_jax import accounting, config as config_lib, model as model_lib
from scaling_jax.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_validates(path):
  c = load_config(str(path), [])
  config_lib.validate(c)


@pytest.mark.parametrize("name, n_params", [
    ("gpt_125m", 84_934_656), ("gpt_350m", 301_989_888), ("gpt_1_3b", 1_207_959_552)])
def test_paper_presets_have_the_gpt3_sizes(name, n_params):
  c = load_config(str(REPO / "configs" / f"{name}.py"), [])
  assert accounting.counts(c.model).n_params == n_params
  assert c.train.batch_size * c.model.n_ctx == 512 * 1024  # the paper's batch
  assert c.optim.lr_rule == "kaplan" and c.optim.warmup_steps == 3000


@pytest.mark.parametrize("name, total", [
    ("gpt_125m", 124_439_808), ("gpt_350m", 354_823_168), ("gpt_1_3b", 1_313_626_112)])
def test_paper_presets_match_their_names_in_total_with_tied_embeddings(name, total):
  """GPT-2 small is 124,439,808 parameters with its input and output embeddings tied: the
  preset's real parameter tree (eval_shape, nothing allocated) has exactly as many."""
  c = load_config(str(REPO / "configs" / f"{name}.py"), [])
  assert c.model.tie_embeddings
  tree = jax.eval_shape(model_lib.build(c.model).init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, c.model.n_ctx), jax.numpy.int32))
  assert accounting.count_tree(tree) == total == accounting.counts(c.model).n_params_total


def test_overrides_are_applied_and_typed():
  c = load_config(str(REPO / "configs" / "tiny.py"),
                  ["--config.model.d_model=64", "--config.optim.lr=0.01",
                   "--config.gns.enabled=False"])
  assert c.model.d_model == 64 and c.optim.lr == 0.01 and c.gns.enabled is False


@pytest.mark.parametrize("override, fragment", [
    ("--config.model.d_modle=64", "d_modle"),
    ("--config.model.d_model=abc", "d_model"),
])
def test_bad_overrides_raise_config_error(override, fragment):
  with pytest.raises(config_lib.ConfigError, match=fragment):
    load_config(str(REPO / "configs" / "tiny.py"), [override])


def _float_fields():
  return [f"{section}.{k}" for section, fields in config_lib.default_config().to_dict().items()
          if isinstance(fields, dict) for k, v in fields.items() if isinstance(v, float)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_every_float_field_refuses_non_finite_values(bad):
  """No float field (including ones added later without a rule) accepts NaN or inf."""
  assert len(_float_fields()) >= 8
  for name in _float_fields():
    section, field = name.split(".")
    c = config_lib.default_config()
    c[section][field] = bad
    with pytest.raises(config_lib.ConfigError, match=f"config.{name}="):
      config_lib.validate(c)


@pytest.mark.parametrize("override, fragment", [
    ("train.keep_checkpoints=0", ">= 1"), ("data.eval_batches=0", "eval_sets=()"),
    ("optim.lr=0.0", "> 0"), ("seed=-3", "seed=-3"), ("optim.b1=1.0", "[0.0, 1.0)"),
    ("model.loss_chunk_tokens=-2", "-1 (sized for the backend)"), ("mesh.tensor=-2", "-1"),
])
def test_values_out_of_range_are_refused_by_the_rule_table(override, fragment):
  key, value = override.split("=")
  with pytest.raises(config_lib.ConfigError, match=re.escape(fragment)):
    load_config(str(REPO / "configs" / "tiny.py"), [f"--config.{key}={value}"])


def test_turning_eval_off_is_explicit():
  c = load_config(str(REPO / "configs" / "tiny.py"), ["--config.data.eval_sets=()"])
  assert c.data.eval_sets == ()


def test_one_loader_for_the_default_config_and_files(tmp_path):
  """The data CLI's default config and a config file take the same typed overrides."""
  c = load_config(None, {"model.vocab_size": 4096, "data.eval_sets": ("validation", "ood")})
  assert c.model.vocab_size == 4096 and c.data.eval_sets == ("validation", "ood")
  with pytest.raises(config_lib.ConfigError, match="vocab_size=abc"):
    load_config(None, ["--config.model.vocab_size=abc"])


def test_a_config_file_without_get_config_is_never_served_the_previous_one(tmp_path):
  """ml_collections' loader caches the module by name: a second file without get_config()
  would run the first one's. Ours runs each file as a fresh module."""
  load_config(str(REPO / "configs" / "tiny.py"), [])
  (tmp_path / "empty.py").write_text("X = 1\n")
  with pytest.raises(config_lib.ConfigError, match="defines no get_config"):
    load_config(str(tmp_path / "empty.py"), [])


def test_cli_bad_input_is_one_line_without_traceback(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "scaling_jax.cli", "train", "--config", "configs/tiny.py",
       "--workdir", str(tmp_path / "run"), "--config.model.n_heads=5"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert "n_heads=5 does not divide config.model.d_model=32" in proc.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_lists_commands():
  proc = subprocess.run([sys.executable, "-m", "scaling_jax.cli", "--help"], cwd=REPO,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0
  for name in ("train", "sweep", "fit", "report", "demo", "data"):
    assert f"  {name}" in proc.stdout


def test_config_diff_counts_a_field_an_old_run_lacks_as_its_default():
  """A run written before a field existed resumes if the field is at its default now."""
  new = config_lib.default_config().to_dict()
  old = config_lib.default_config().to_dict()
  del old["model"]["loss_chunk_tokens"]
  assert config_lib.config_diff(old, new) == []
  new["model"]["loss_chunk_tokens"] = 64
  assert config_lib.config_diff(old, new) == ["model.loss_chunk_tokens: -1 there vs 64 now"]
