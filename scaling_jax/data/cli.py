"""`scaling-jax data`: build a dataset and its tokenizer ahead of training; print token counts.

  scaling-jax data                                   # the embedded stdlib corpus
  scaling-jax data --name text_files --paths 'corpus/*.txt' --vocab-size 4096
  scaling-jax data --config configs/x.py --config.data.max_tokens=1000000
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import logging
import sys

from scaling_jax.config import ConfigError, default_config


def load_config(path: str | None):
  """default_config(), or get_config() of a config file."""
  if not path:
    return default_config()
  spec = importlib.util.spec_from_file_location("_scaling_jax_user_config", path)
  if spec is None or spec.loader is None:
    raise ConfigError(f"--config {path!r} is not a Python file with get_config()")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except FileNotFoundError:
    raise ConfigError(f"--config {path!r} does not exist") from None
  return module.get_config()


def apply_override(config, dotted: str, text: str) -> None:
  """Sets config.<dotted> from a command-line string, parsed as a Python literal if it is one."""
  *parents, leaf = dotted.split(".")
  node = config
  try:
    for p in parents:
      node = node[p]
    old = node[leaf]
  except (KeyError, AttributeError):
    raise ConfigError(f"--config.{dotted}: no such config field") from None
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if isinstance(old, str) and not isinstance(value, str):
    value = text
  if isinstance(old, tuple) and isinstance(value, (str, list)):
    value = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  node[leaf] = value


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  parser = argparse.ArgumentParser(prog="scaling-jax data", description=__doc__.splitlines()[0])
  parser.add_argument("--config", help="config file defining get_config() (default: defaults)")
  parser.add_argument("--name", help="stdlib | text_files | array | a TFDS catalog name")
  parser.add_argument("--paths", help="text_files: comma-separated files, dirs or globs")
  parser.add_argument("--vocab-size", type=int, help="tokenizer (and model) vocabulary size")
  parser.add_argument("--data-dir", help="cache directory (default $SCALING_JAX_DATA or "
                      "~/.cache/scaling_jax)")
  parser.add_argument("--eval-sets", help="comma-separated, e.g. validation,ood_prose,ood_numpy")
  parser.add_argument("--quiet", action="store_true", help="no build logs")
  args = parser.parse_args(rest)
  logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                      format="%(levelname)s %(name)s: %(message)s")
  from scaling_jax import data  # pylint: disable=g-import-not-at-top
  try:
    config = load_config(args.config)
    for item in overrides:
      if "=" not in item:
        raise ConfigError(f"{item}: write --config.FIELD=VALUE")
      key, value = item[len("--config."):].split("=", 1)
      apply_override(config, key, value)
    if args.name:
      config.data.name = args.name
    if args.paths:
      config.data.paths = args.paths
    if args.vocab_size:
      config.model.vocab_size = args.vocab_size
      config.data.tokenizer_vocab_size = -1
    if args.data_dir:
      config.data.data_dir = args.data_dir
    if args.eval_sets:
      config.data.eval_sets = tuple(s.strip() for s in args.eval_sets.split(",") if s.strip())
    info = data.prepare(config)
    counts = {"train": info.train_tokens}
    for name in info.eval_sets:
      counts[name] = data.sources.token_count(config, name)
  except ConfigError as e:
    print(f"scaling-jax data: error: {e}", file=sys.stderr)
    return 2
  print(f"dataset {info.name} {info.version}  vocab {info.vocab_size}  "
        f"D (dataset_tokens) {info.dataset_tokens:,}")
  for name, n in counts.items():
    print(f"  {name:<12} {n:>12,} tokens")
  path = data.tokenizer_path(config)
  if path is not None:
    print(f"  tokenizer    {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
