"""`scaling-jax demo`: the default sweep spans >= 30x in N with >= 5 models sharing data and
settings, and `--scale tiny` runs end to end on an array corpus into a report with a fitted
exponent, its interval and a held-out prediction error."""

import json
import math
import os

import pytest

from scaling_jax import accounting, demo, sweep
from tests.helpers import write_token_array


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


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path):
  array = write_token_array(tmp_path)
  out = tmp_path / "demo"
  rc = demo.main(["--scale", "tiny", "--out", str(out), "--parallel", "2", "--bootstrap", "8",
                  "--config.data.name=array", f"--config.data.array_path={array}",
                  "--config.model.vocab_size=128"])
  assert rc == 0
  rep = json.load(open(out / "report" / "report.json"))
  assert rep["b_crit"]["source"] == "gns"  # the demo uses the chain: S_min from the GNS law
  f = rep["L_N_Smin"]
  lo, hi = f["intervals"]["alpha_N"]
  assert math.isfinite(f["params"]["alpha_N"]) and math.isfinite(lo) and lo < hi
  assert set(rep["heldout"]) == {"gns", "kaplan", "none"}
  for h in rep["heldout"].values():
    assert h["run"] == "L2_d48" and math.isfinite(h["rms_rel_error"]) and h["n_points"] >= 5
    assert math.isfinite(h["final_rel_error"]) and 0 <= h["fraction_in_band"] <= 1
  assert len(rep["runs"]) == 4 and all(r["status"] == "finished" for r in rep["runs"])
  assert all(r["b_simple_final_tokens"] for r in rep["runs"])  # GNS recorded in every run
  assert rep["environment"]["base_config"]["data"]["name"] == "array"
  for name in rep["figures"].values():
    assert os.path.getsize(out / "report" / name) > 10_000
  summary = json.load(open(out / "demo.json"))
  assert summary["scale"] == "tiny"
  assert summary["heldout"]["gns"]["rms_rel_error"] == rep["heldout"]["gns"]["rms_rel_error"]
