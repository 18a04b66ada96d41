"""Data pipeline: builders on small real files, tokenizer, packing, sharding, resume, D-limits."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from scaling_jax import data
from scaling_jax.config import ConfigError, default_config
from scaling_jax.data import builders, corpus, loader, sources, tokenizer

REPO = pathlib.Path(__file__).resolve().parents[1]
STDLIB = corpus.stdlib_root()
# Small real human-written files from the interpreter's standard library.
REAL_FILES = ["textwrap.py", "bisect.py", "shlex.py", "fnmatch.py", "colorsys.py", "queue.py",
              "sched.py", "getopt.py", "keyword.py", "numbers.py", "heapq.py", "glob.py",
              "this.py", "abc.py", "copy.py", "netrc.py"]
VOCAB = 512


def make_corpus(root: pathlib.Path) -> pathlib.Path:
  """Real text files plus a jsonl, a binary file, invalid UTF-8 and bad jsonl lines."""
  root.mkdir(parents=True, exist_ok=True)
  for name in REAL_FILES:
    shutil.copy(STDLIB / name, root / f"{pathlib.Path(name).stem}.txt")
  lines = [json.dumps({"text": (STDLIB / "json" / "__init__.py").read_text()[i * 2000:(i + 1) * 2000]})
           for i in range(5)]
  lines += ["not json {", json.dumps({"no_text": 1}), ""]
  (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
  (root / "latin1.txt").write_bytes("café crème, naïve façade\n".encode("latin-1") * 20)
  (root / "blob.txt").write_bytes(bytes(range(256)) * 8)
  (root / "empty.txt").write_text("  \n")
  return root


def cfg(tmp, **data_overrides):
  c = default_config()
  c.seed = 0
  c.model.vocab_size = VOCAB
  c.model.n_ctx = 32
  c.train.batch_size = 8
  c.data.name = "text_files"
  c.data.paths = str(tmp / "corpus")
  c.data.data_dir = str(tmp / "cache")
  c.data.eval_sets = ("validation", "test")
  c.data.eval_batches = 3
  for k, v in data_overrides.items():
    setattr(c.data, k, v)
  return c


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("data")
  make_corpus(tmp / "corpus")
  c = cfg(tmp)
  return tmp, c, data.prepare(c)


def take(it, n):
  return [next(it) for _ in range(n)]


def test_text_files_builder_splits_counts_and_tokenizer(built):
  tmp, c, info = built
  assert info.name == "text_files" and info.vocab_size == VOCAB
  assert info.dataset_tokens == info.train_tokens > 10_000
  assert info.eval_sets == ("validation", "test")
  b = builders.text_files_builder(pathlib.Path(c.data.data_dir), c.data.paths)
  md = b.info.metadata
  docs = md["documents"]
  assert docs["validation"] >= 1 and docs["test"] >= 1 and docs["train"] >= 15
  # The binary file is skipped, latin-1 is kept with replacements, bad jsonl lines skipped.
  assert md["counts"]["train"]["binary_files"] == 1
  assert md["counts"]["train"]["invalid_utf8_files"] == 1
  assert md["counts"]["train"]["bad_jsonl_lines"] == 2
  assert sum(b.info.splits[s].num_examples for s in ("train", "validation", "test")) == sum(docs.values())
  # Tokenizer: the config's vocabulary, lossless on code (newlines, indentation) and bytes.
  sp = tokenizer.load(data.tokenizer_path(c))
  assert sp.get_piece_size() == VOCAB
  text = (STDLIB / "textwrap.py").read_text()[:3000] + "\n\t日本語 ☃\n"
  assert sp.decode(sp.encode(text)) == text
  # The token file is the train documents, each followed by EOS.
  train = np.load(sources.prepare(c).token_paths["train"])
  assert (train == tokenizer.EOS_ID).sum() == b.info.splits["train"].num_examples
  assert train.max() < VOCAB and train[-1] == tokenizer.EOS_ID


def test_tokenizer_training_is_deterministic(tmp_path):
  texts = [(STDLIB / n).read_text() for n in REAL_FILES]
  tokenizer.train(texts, VOCAB, tmp_path / "a.model")
  tokenizer.train(texts, VOCAB, tmp_path / "b.model")
  assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()


def test_splits_are_deterministic_by_key():
  keys = [f"doc{i}" for i in range(100)]
  a = corpus.assign_splits(keys)
  b = corpus.assign_splits(list(reversed(keys)))
  assert a == b
  assert sorted(list(a.values()).count(s) for s in ("train", "validation", "test")) == [5, 5, 90]


def test_train_batches_pack_the_first_D_tokens(built):
  tmp, c0, _ = built
  c = cfg(tmp, max_tokens=2000)
  info = data.prepare(c)
  assert info.dataset_tokens == 2000
  tokens = np.load(sources.prepare(c).token_paths["train"])[:2000]
  it = data.make_train_iterator(c)
  n_seq = (2000 - 1) // 32  # 62 windows
  assert it.n_sequences == n_seq
  batches = take(it, 2 * n_seq // 8 + 1)  # > 2 epochs
  assert all(b.shape == (8, 33) and b.dtype == np.int32 for b in batches)
  rows = np.concatenate(batches)
  windows = {tuple(tokens[i * 32:i * 32 + 33]): i for i in range(n_seq)}
  ids = [windows[tuple(r)] for r in rows]  # KeyError if a row is not a window of tokens[:D]
  assert sorted(ids[:n_seq]) == list(range(n_seq))  # each sequence once per epoch
  assert sorted(ids[n_seq:2 * n_seq]) == list(range(n_seq))
  assert ids[:n_seq] != ids[n_seq:2 * n_seq]  # reshuffled each epoch
  assert it.epoch == pytest.approx(len(batches) * 8 / n_seq)


def test_determinism_seed_and_no_shuffle(built):
  tmp, c, _ = built
  a = take(data.make_train_iterator(c), 4)
  b = take(data.make_train_iterator(c), 4)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  c2 = cfg(tmp)
  c2.seed = 1
  assert not np.array_equal(a[0], next(data.make_train_iterator(c2)))
  tokens = np.load(sources.prepare(c).token_paths["train"])
  first = next(data.make_train_iterator(cfg(tmp, shuffle=False)))
  np.testing.assert_array_equal(first[1], tokens[32:65])


def test_two_processes_get_disjoint_complete_shards(built):
  _, c, _ = built
  whole = take(data.make_train_iterator(c), 3)
  p0 = take(data.make_train_iterator(c, process_index=0, process_count=2), 3)
  p1 = take(data.make_train_iterator(c, process_index=1, process_count=2), 3)
  for w, a, b in zip(whole, p0, p1):
    assert a.shape == b.shape == (4, 33)
    np.testing.assert_array_equal(np.concatenate([a, b]), w)
  with pytest.raises(ConfigError, match="not divisible"):
    data.make_train_iterator(c, process_index=0, process_count=3)


def test_resumed_iterator_continues_on_the_exact_next_batch(built):
  tmp, _, _ = built
  c = cfg(tmp, max_tokens=1000)  # 31 windows: the resume point is past an epoch end
  ref = take(data.make_train_iterator(c), 9)
  it = data.make_train_iterator(c)
  take(it, 5)
  state = json.loads(json.dumps(it.get_state()))
  resumed = data.make_train_iterator(c)
  resumed.set_state(state)
  assert resumed.epoch == pytest.approx(5 * 8 / 31)
  for want, got in zip(ref[5:], take(resumed, 4)):
    np.testing.assert_array_equal(want, got)
  with pytest.raises(ConfigError, match="other data settings"):
    data.make_train_iterator(cfg(tmp, max_tokens=2000)).set_state(state)


def test_eval_batches_fixed_and_sharded(built):
  _, c, _ = built
  for name in ("validation", "test"):
    a = data.make_eval_batches(c, name)
    assert len(a) == 3 and all(x.shape == (8, 33) and x.dtype == np.int32 for x in a)
    b = data.make_eval_batches(c, name)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    halves = [data.make_eval_batches(c, name, process_index=p, process_count=2) for p in (0, 1)]
    np.testing.assert_array_equal(np.concatenate([halves[0][0], halves[1][0]]), a[0])
  val = data.make_eval_batches(c, "validation")[0]
  assert not np.array_equal(val, data.make_eval_batches(c, "test")[0])
  with pytest.raises(ConfigError, match="eval_sets"):
    data.make_eval_batches(c, "ood_prose")


def test_array_dataset(tmp_path):
  ids = np.random.default_rng(0).integers(0, 100, size=5000).astype(np.int32)
  np.save(tmp_path / "toks.npy", ids)
  c = cfg(tmp_path, name="array", array_path=str(tmp_path / "toks.npy"), max_tokens=1000,
          eval_sets=("validation",))
  c.model.vocab_size = 100
  info = data.prepare(c)
  assert (info.train_tokens, info.dataset_tokens, info.vocab_size) == (5000, 1000, 100)
  batch = next(data.make_train_iterator(c))
  assert batch.shape == (8, 33) and batch.max() < 100
  assert len(data.make_eval_batches(c, "validation")) == 3
  c.model.vocab_size = 50
  with pytest.raises(ConfigError, match="vocab_size >= 100"):
    data.prepare(c)


@pytest.mark.parametrize("change, match", [
    (dict(paths="/nonexistent/corpus/*.txt"), "does not exist"),
    (dict(name="no_such_dataset_xyz"), "TFDS catalog"),
    (dict(tokenizer_vocab_size=1024), "differs from config.model.vocab_size"),
    (dict(eval_sets=("validation", "ood_nope")), "unknown eval set"),
    (dict(name="array", array_path="/nonexistent.npy"), "is not a file"),
    (dict(max_tokens=20), "fewer than one sequence"),
])
def test_bad_input_gives_clear_errors(built, change, match):
  tmp, _, _ = built
  with pytest.raises(ConfigError, match=match):
    data.prepare(cfg(tmp, **change))


def test_empty_corpus_and_small_vocab_errors(tmp_path):
  (tmp_path / "corpus").mkdir()
  (tmp_path / "corpus" / "a.txt").write_text("   \n\n")
  (tmp_path / "corpus" / "b.txt").write_bytes(b"\x00\x01\x02")
  with pytest.raises(ConfigError, match="no non-empty"):
    data.prepare(cfg(tmp_path))
  with pytest.raises(ConfigError, match="too small"):
    tokenizer.train(["hello world"], 100, tmp_path / "x.model")


def test_half_built_dataset_is_never_read(tmp_path, monkeypatch):
  make_corpus(tmp_path / "corpus")
  c = cfg(tmp_path)
  real = builders.ScalingJaxTextFiles._generate_examples

  def crash(self, split, split_of):
    for i, ex in enumerate(real(self, split, split_of)):
      if i == 3:
        raise KeyboardInterrupt("killed mid-build")
      yield ex

  monkeypatch.setattr(builders.ScalingJaxTextFiles, "_generate_examples", crash)
  with pytest.raises(KeyboardInterrupt):
    data.prepare(c)
  b = builders.ScalingJaxTextFiles(
      data_dir=str(tmp_path / "cache" / "tfds"),
      config=builders.TextFilesConfig(
          name=f"c{corpus.files_fingerprint(corpus.expand_paths(c.data.paths))}"),
      file_format="array_record")
  assert not b.is_prepared()
  monkeypatch.setattr(builders.ScalingJaxTextFiles, "_generate_examples", real)
  assert data.prepare(c).train_tokens > 10_000


@pytest.mark.multiprocess
def test_two_processes_building_at_once_agree(tmp_path):
  make_corpus(tmp_path / "corpus")
  code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import tests.test_data as t; "
          "import pathlib; from scaling_jax import data; "
          "i = data.prepare(t.cfg(pathlib.Path(sys.argv[2]))); print(json.dumps([i.train_tokens, i.version]))")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(REPO), str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=120) for p in procs]
  assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
  results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
  assert results[0] == results[1] and results[0][0] > 10_000
  assert data.prepare(cfg(tmp_path)).train_tokens == results[0][0]


class ScalingJaxTestCatalog(builders._LocalBuilder):  # pylint: disable=protected-access
  """A registered (catalog-style) builder standing in for lm1b/c4 without a download."""
  VERSION = builders.tfds.core.Version("1.0.0")

  def _info(self):
    return builders.tfds.core.DatasetInfo(
        builder=self, features=builders.tfds.features.FeaturesDict(
            {"sentence": builders.tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    texts = [(STDLIB / n).read_text() for n in REAL_FILES]
    return {"train": self._generate_examples(texts[:-2]), "test": self._generate_examples(texts[-2:])}

  def _generate_examples(self, texts):
    for i, t in enumerate(texts):
      yield i, {"sentence": t}


def test_tfds_catalog_dataset_by_name(tmp_path):
  c = cfg(tmp_path, name="scaling_jax_test_catalog", eval_sets=("test",))
  with pytest.raises(ConfigError, match="not prepared"):
    data.prepare(c)
  ScalingJaxTestCatalog(data_dir=str(tmp_path / "cache" / "tfds"),
                        file_format="array_record").download_and_prepare()
  info = data.prepare(c)
  assert info.name == "scaling_jax_test_catalog" and info.train_tokens > 10_000
  assert next(data.make_train_iterator(c)).shape == (8, 33)
  assert data.make_eval_batches(c, "test")[0].shape == (8, 33)
  with pytest.raises(ConfigError, match="choose among"):
    data.prepare(cfg(tmp_path, name="scaling_jax_test_catalog", eval_sets=("validation",)))


def test_stdlib_builder_with_ood_sets(tmp_path, monkeypatch):
  """The embedded corpus on a subset of its files (the full build takes ~30 s)."""
  subset = [f for f in corpus.stdlib_files() if f in REAL_FILES]
  assert len(subset) == len(REAL_FILES)
  assert not any(f.startswith("pydoc_data/") for f in corpus.stdlib_files())
  monkeypatch.setattr(corpus, "stdlib_files", lambda: subset)
  monkeypatch.setattr(corpus, "OOD_MAX_CHARS", 100_000)
  c = cfg(tmp_path, name="stdlib", eval_sets=("validation", "ood_prose", "ood_numpy"))
  info = data.prepare(c)
  assert info.name == "stdlib" and info.version.startswith("1.0.0+py")
  b = builders.stdlib_builder(pathlib.Path(c.data.data_dir))
  files = b.info.metadata["files"]
  assert sorted(sum(files.values(), [])) == sorted(subset)
  for name in ("validation", "ood_prose", "ood_numpy"):
    batches = data.make_eval_batches(c, name)
    assert len(batches) == 3 and batches[0].shape == (8, 33)
  assert sources.token_count(c, "ood_prose") > 10_000
  # OOD sets also evaluate models trained on another corpus (with that corpus's tokenizer).
  make_corpus(tmp_path / "corpus")
  c2 = cfg(tmp_path, eval_sets=("ood_prose",))
  assert data.make_eval_batches(c2, "ood_prose")[0].max() < VOCAB


def test_cli_builds_and_reports(tmp_path, capsys):
  from scaling_jax.data import cli
  make_corpus(tmp_path / "corpus")
  rc = cli.main(["--name", "text_files", "--paths", str(tmp_path / "corpus"), "--data-dir",
                 str(tmp_path / "cache"), "--vocab-size", str(VOCAB), "--quiet",
                 "--config.data.max_tokens=5000"])
  out = capsys.readouterr().out
  assert rc == 0 and "D (dataset_tokens) 5,000" in out and "validation" in out
  assert cli.main(["--name", "nope_xyz", "--data-dir", str(tmp_path / "cache"), "--quiet"]) == 2
  assert "TFDS catalog" in capsys.readouterr().err
