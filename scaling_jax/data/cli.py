"""`scaling-jax data`: build a dataset and its tokenizer ahead of training; print token counts.

  scaling-jax data                                   # the embedded stdlib corpus
  scaling-jax data --name text_files --paths 'corpus/*.txt' --vocab-size 4096
  scaling-jax data --config configs/x.py --config.data.max_tokens=1000000
"""

from __future__ import annotations

import logging
import sys

from scaling_jax import errors, preflight
from scaling_jax.config import format_override, load_config


def flag_overrides(args) -> list[str]:
  """The convenience flags (--name, --paths, ...) as the config overrides they stand for."""
  fields = {"data.name": args.name, "data.paths": args.paths, "data.data_dir": args.data_dir}
  if args.vocab_size is not None:
    fields.update({"model.vocab_size": args.vocab_size, "data.tokenizer_vocab_size": -1})
  if args.eval_sets is not None:
    fields["data.eval_sets"] = tuple(s.strip() for s in args.eval_sets.split(",") if s.strip())
  return [format_override(k, v) for k, v in fields.items() if v is not None]


@errors.boundary("data")
def main(argv: list[str]) -> int:
  parser = errors.ArgumentParser(prog="scaling-jax data", description=__doc__.splitlines()[0])
  parser.add_argument("--config", help="config file defining get_config() (default: defaults)")
  parser.add_argument("--name", help="stdlib | text_files | array | a TFDS catalog name")
  parser.add_argument("--paths", help="text_files: comma-separated files, dirs or globs")
  parser.add_argument("--vocab-size", type=errors.positive_int,
                      help="tokenizer (and model) vocabulary size")
  parser.add_argument("--data-dir", help="cache directory, local or gs://BUCKET/DIR (default "
                      "$SCALING_JAX_DATA or ~/.cache/scaling_jax)")
  parser.add_argument("--eval-sets", help="comma-separated, e.g. validation,ood_prose,ood_numpy")
  parser.add_argument("--quiet", action="store_true", help="no build logs")
  args, overrides = parser.parse_known_args(argv)
  # the flags come after --config.X=V overrides, so they win
  config = load_config(args.config, overrides + flag_overrides(args))
  if config.data.data_dir:
    preflight.check_output_dir(config.data.data_dir, "--data-dir")
  logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                      format="%(levelname)s %(name)s: %(message)s")
  from scaling_jax import data  # pylint: disable=g-import-not-at-top
  info = data.prepare(config)
  counts = {"train": info.train_tokens}
  for name in info.eval_sets:
    counts[name] = data.sources.token_count(config, name)
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
