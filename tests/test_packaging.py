"""The package works without the checkout, and the demo end to end: a wheel, installed
non-editable into a fresh venv, runs `scaling-jax demo --scale tiny` from a directory
outside the repo (the demo config and the presets ship as `scaling_jax.configs`) into a
report with a fitted exponent, its interval and held-out prediction errors. (One demo run
serves both checks: the tiny demo is the slowest thing the suite would otherwise do twice.)"""

import json
import math
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

from tests.helpers import write_token_array

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(cmd, **kw):
  proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
  assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
  return proc.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_the_demo_outside_the_checkout(tmp_path):
  wheels = tmp_path / "wheels"
  _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
        str(wheels), str(REPO)], cwd=tmp_path)
  (wheel,) = wheels.glob("scaling_jax-*.whl")
  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
  python = venv / "bin" / "python"
  # The dependencies (jax, flax, ...) come from this environment's site-packages, read-only:
  # a path line in a .pth file adds the directory without running its .pth files, so this
  # environment's editable scaling_jax (a .pth import hook) stays invisible.
  new_site = pathlib.Path(_run([str(python), "-c", "import sysconfig; print("
                                "sysconfig.get_paths()['purelib'])"]).strip())
  (new_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
        str(new_site), str(wheel)])
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  where = _run([str(python), "-c", "import scaling_jax.configs as c; print(c.__file__)"],
               cwd=elsewhere, env=env)
  assert where.startswith(str(new_site)), where  # the installed copy, not the checkout's
  array = write_token_array(tmp_path)
  out = elsewhere / "demo"
  # `python -m scaling_jax.cli` is the `scaling-jax` entry point, run by the new venv's python
  _run([str(python), "-m", "scaling_jax.cli", "demo", "--scale", "tiny", "--out", str(out),
        "--parallel", "2", "--bootstrap", "8", "--config.data.name=array",
        f"--config.data.array_path={array}", "--config.model.vocab_size=128"],
       cwd=elsewhere, env=env, timeout=900)
  rep = json.loads((out / "report" / "report.json").read_text())
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
  summary = json.loads((out / "demo.json").read_text())
  assert summary["scale"] == "tiny"
  assert summary["heldout"]["gns"]["rms_rel_error"] == rep["heldout"]["gns"]["rms_rel_error"]
