"""`scaling-jax fit`: run dirs or a table in, parameter table + JSON report + plots out."""

import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

from scaling_jax import cli as top_cli
from scaling_jax.scaling import cli, runs

def _load_test_runs():
  """The fake-run-dir helper of test_runs.py (tests/ is not a package)."""
  path = pathlib.Path(__file__).with_name("test_runs.py")
  spec = importlib.util.spec_from_file_location("_fit_cli_fake_runs", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_fake = _load_test_runs()
TRUE, make_run = _fake.TRUE, _fake.make_run


def _sweep(root):
  for n in (1e5, 3e5, 1e6, 3e6, 1e7):
    make_run(root, f"n{n:.0e}", n, b_crit=8192, steps=range(10, 3001, 10))
  return str(root)


@pytest.mark.slow
def test_fit_runs_with_gns_b_crit_recovers_the_law(tmp_path, capsys):
  src = _sweep(tmp_path / "sweep")
  out = tmp_path / "out"
  # ~100 rows, 1000 starts, 32 resamples: the shapes of test_fit's L_N_Smin fits (one compile).
  rc = top_cli.main(["fit", src, "--law", "L_N_Smin", "--out", str(out), "--bootstrap", "32",
                     "--holdout", "--b-crit", "gns", "--grid", "1000", "--points", "20"])
  text = capsys.readouterr().out
  assert rc == 0, text
  assert "alpha_S" in text and "holdout" in text and "frontier" in text
  report = json.loads((out / "fit_report.json").read_text())
  assert report["converged"] and report["bootstrap"] == 32
  for k in ("alpha_N", "alpha_S", "S_c"):
    assert report["params"][k] == pytest.approx(TRUE[k], rel=1e-3), k
  assert report["holdout"]["mean_abs_rel_error"] < 1e-3
  assert report["b_crit"]["source"] == "gns"  # the pooled GNS law: a constant 8192 here
  np.testing.assert_allclose(report["b_crit"]["B_star"], 8192, rtol=1e-6)
  assert "GNS readings" in report["frontier"]["b_crit_source"]
  for p in report["plots"]:
    assert os.path.getsize(p) > 1000


def test_fit_table_file_and_errors(tmp_path, capsys):
  n = np.geomspace(1e5, 1e9, 8)
  runs.write_table({"run": [f"r{i}" for i in range(8)], "N": n,
                    "L": (8.8e13 / n) ** 0.076}, str(tmp_path / "t.csv"))
  rc = cli.main([str(tmp_path / "t.csv"), "--law", "L_N", "--bootstrap", "0", "--no-plots",
                 "--out", str(tmp_path / "o")])
  assert rc == 0
  report = json.loads((tmp_path / "o" / "fit_report.json").read_text())
  assert report["params"]["alpha_N"] == pytest.approx(0.076, rel=1e-6)
  assert cli.main([str(tmp_path / "t.csv"), "--law", "L_nope"]) == 2
  assert "unknown law" in capsys.readouterr().err
  assert cli.main([str(tmp_path / "t.csv"), "--law", "L_N_Smin"]) == 2
  assert "lacks ['S', 'B']" in capsys.readouterr().err
