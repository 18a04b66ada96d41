"""`scaling-jax demo`: the default sweep spans >= 30x in N with >= 5 models sharing data and
settings. `--scale tiny` end to end (a report with a fitted exponent, its interval and a
held-out prediction error) is tests/test_packaging.py, which runs it from the installed wheel."""

import pytest

from scaling_jax import accounting, demo, sweep


def _n(run):
  c = sweep.load_run_config(run["config"], run["overrides"])
  return accounting.counts(c.model).n_params


def test_default_sweep_spans_30x_in_n():
  runs = demo.demo_runs("small")
  ns = sorted(_n(r) for r in runs)
  assert len(runs) >= 5 and ns[-1] / ns[0] >= 30
  assert ns[0] == 24_576 and ns[-1] == 786_432  # (2, 32) .. (4, 128)
  shared = [{k: v for k, v in r["overrides"].items() if not k.startswith("model.")
             or k in ("model.n_ctx", "model.vocab_size")} for r in runs]
  assert all(s == shared[0] for s in shared)  # same data, batch, steps, schedule
  assert len({r["name"] for r in runs}) == len(runs)
  for r in runs:
    assert r["overrides"]["model.d_model"] % r["overrides"]["model.n_heads"] == 0
  with pytest.raises(demo.ConfigError, match="scale"):
    demo.demo_runs("huge")
  assert demo.main(["--out", "unused", "not-an-override"]) == 2
