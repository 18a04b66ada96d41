"""Launchers: exact --dry-run commands, sweep fan-out/collect, memory arithmetic, and a
real two-process CPU job started by launch/local.py."""

import io
import json
import os
import shlex
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO))
from launch import local, memory, slurm, sweep_fanout, tpu_vm  # noqa: E402
from scaling_jax import accounting, config as config_lib, model as model_lib, rundir  # noqa: E402

TRAIN = "scaling-jax train --config configs/gpt_125m.py --workdir runs/125m"


# ---------------------------------------------------------------------------- local.py

def test_local_dry_run_env_per_process(capsys, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=8")
  assert local.main(["-n", "3", "--port", "12345", "--cpu-devices", "2", "--dry-run", "--",
                     *shlex.split(TRAIN)]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 3
  for i, line in enumerate(lines):
    assert line == (
        "SCALING_JAX_COORDINATOR=127.0.0.1:12345 SCALING_JAX_NUM_PROCESSES=3 "
        f"SCALING_JAX_PROCESS_ID={i} "
        "XLA_FLAGS='--xla_cpu_foo=1 --xla_force_host_platform_device_count=2' "
        f"JAX_PLATFORMS=cpu {TRAIN}")


def test_local_dry_run_gpus_per_process(capsys):
  assert local.main(["-n", "2", "--port", "7", "--gpus-per-process", "4", "--dry-run", "--",
                     "python", "x.py"]) == 0
  assert capsys.readouterr().out.splitlines()[1] == (
      "SCALING_JAX_COORDINATOR=127.0.0.1:7 SCALING_JAX_NUM_PROCESSES=2 "
      "SCALING_JAX_PROCESS_ID=1 CUDA_VISIBLE_DEVICES=4,5,6,7 python x.py")


def test_local_free_port_binds():
  port = local.free_port()
  assert 1024 <= port <= 65535


SNIPPET = textwrap.dedent("""
    import numpy as np
    from scaling_jax import distributed
    info = distributed.initialize()  # reads SCALING_JAX_* set by launch/local.py
    assert distributed.initialize() is info
    import jax, jax.numpy as jnp
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding, PartitionSpec as P
    ids = multihost_utils.process_allgather(np.int32(jax.process_index()))
    mesh = jax.make_mesh((jax.device_count(),), ("d",))
    local = [jax.device_put(np.full((1,), jax.process_index(), np.int32), d)
             for d in jax.local_devices()]
    x = jax.make_array_from_single_device_arrays(
        (jax.device_count(),), NamedSharding(mesh, P("d")), local)
    total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(x)  # cross-process sum
    print(f"RESULT mode={info.mode} n={info.process_count} devices={info.device_count} "
          f"main={distributed.is_main_process()} ids={ids.tolist()} psum={int(total)}",
          flush=True)
""")


@pytest.mark.multiprocess
def test_local_two_processes_gloo_psum(tmp_path):
  script = tmp_path / "snippet.py"
  script.write_text(SNIPPET)
  out = io.StringIO()
  rc = local.run([sys.executable, str(script)], n=2, cpu_devices=1, timeout_s=90, out=out)
  text = out.getvalue()
  assert rc == 0, text
  results = sorted(line for line in text.splitlines() if "RESULT" in line)
  assert results == [
      "[p0] RESULT mode=explicit n=2 devices=2 main=True ids=[0, 1] psum=1",
      "[p1] RESULT mode=explicit n=2 devices=2 main=False ids=[0, 1] psum=1",
  ], text


def test_local_failure_stops_the_others_after_their_grace(tmp_path):
  code = ("import os, sys, time\n"
          "if os.environ['SCALING_JAX_PROCESS_ID'] == '1':\n"
          "  print('boom', flush=True); sys.exit(3)\n"
          "time.sleep(60)\n")
  out = io.StringIO()
  start = time.monotonic()
  rc = local.run([sys.executable, "-c", code], n=2, port=1, out=out, peer_grace_s=2)
  assert rc == 3
  assert time.monotonic() - start < 20  # process 0 was stopped after its 2 s, not waited for
  assert "[p1] boom" in out.getvalue()
  assert "process 1 exited with 3" in out.getvalue()


def test_a_survivor_gets_its_grace_and_a_stopped_run_is_recorded(tmp_path):
  """After one process dies, the other may still be writing (issue #27): it is not SIGTERMed
  at once; and a training run left `running` is recorded as failed by the launcher."""
  from scaling_jax import rundir
  run = tmp_path / "run"
  rundir.makedirs(str(run))
  rundir.write_status(str(run), "running")
  code = ("import os, sys, time\n"
          "if os.environ['SCALING_JAX_PROCESS_ID'] == '1':\n"
          "  os.kill(os.getpid(), 9)\n"
          "time.sleep(3); print('wrote', flush=True)\n")
  out = io.StringIO()
  rc = local.run([sys.executable, "-c", code, "--workdir", str(run)], n=2, port=1, out=out)
  assert rc == -9
  assert "[p0] wrote" in out.getvalue()  # 3 s after its peer died: within its grace
  status = rundir.read_status(str(run))
  assert status["status"] == "failed" and status["peer_lost"] is True
  assert "process 1 was killed by signal 9 (SIGKILL)" in status["error"]
  assert "start again (no checkpoint was written)" in status["error"]
  assert "recorded in status.json" in out.getvalue()

  stopped = tmp_path / "stopped"
  rundir.makedirs(str(stopped))
  rundir.write_status(str(stopped), "running")
  code = code.replace("time.sleep(3)", "time.sleep(60)")
  start = time.monotonic()
  assert local.run([sys.executable, "-c", code, f"--workdir={stopped}"], n=2, port=1,
                   out=io.StringIO(), peer_grace_s=1) == -9
  assert time.monotonic() - start < 20
  error = rundir.read_status(str(stopped))["error"]
  assert "the launcher stopped process 0 after its peer was lost" in error
  assert "process 1 was killed by signal 9" in error


# ---------------------------------------------------------------------------- tpu_vm.py

def test_tpu_vm_dry_run(capsys):
  assert tpu_vm.main(["--tpu", "pod1", "--zone", "us-central2-b", "--project", "proj",
                      "--create", "--accelerator-type", "v4-32", "--env", "FOO=a b",
                      "--delete", "--dry-run", "--", *shlex.split(TRAIN)]) == 0
  lines = capsys.readouterr().out.splitlines()
  where = "--zone=us-central2-b --project=proj"
  assert lines[0] == (f"gcloud compute tpus tpu-vm create pod1 {where} "
                      "--accelerator-type=v4-32 --version=tpu-ubuntu2204-base")
  assert lines[1].startswith("tar czf logs/scaling-jax.tar.gz --exclude=.git --exclude=.venv")
  assert lines[2] == (f"gcloud compute tpus tpu-vm scp logs/scaling-jax.tar.gz "
                      f"'pod1:~/scaling-jax.tar.gz' --worker=all {where}")
  install = shlex.split(lines[3])
  assert install[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod1",
                         "--worker=all", "--zone=us-central2-b"]
  assert "tar xzf ~/scaling-jax.tar.gz" in install[-1] and "jax[tpu]" in install[-1]
  run = shlex.split(lines[4])
  assert run[:7] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod1", "--worker=all"]
  assert run[-1] == ("--command=cd ~/scaling-jax && export PATH=$HOME/.local/bin:$PATH "
                     f"SCALING_JAX_DIST=tpu FOO='a b' && {TRAIN}")
  assert lines[5] == f"gcloud compute tpus tpu-vm delete pod1 {where} --quiet"
  assert len(lines) == 6


def test_tpu_vm_minimal_and_logged_run(tmp_path, capsys):
  cmds = tpu_vm.plan("pod1", "z", "p", ["echo", "hi"], copy=False, install=False)
  assert [c[:6] for c in cmds] == [["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod1"]]
  # run_logged streams each command's output to the terminal and the log file.
  log = tmp_path / "logs" / "run.log"
  out = io.StringIO()
  rc = tpu_vm.run_logged([[sys.executable, "-c", "print('worker says hi')"],
                          [sys.executable, "-c", "import sys; sys.exit(4)"],
                          ["never-run"]], str(log), out)
  assert rc == 4
  assert "worker says hi" in out.getvalue() and "worker says hi" in log.read_text()
  assert "never-run" not in log.read_text()


# ---------------------------------------------------------------------------- slurm.py

def test_slurm_dry_run(capsys):
  assert slurm.main(["--config", "configs/gpt_125m.py", "--workdir", "runs/125m",
                     "--nodes", "4", "--gpus-per-node", "8", "--time", "12:00:00",
                     "--partition", "h100", "--setup", "source .venv/bin/activate",
                     "--repo-dir", "/cluster/sj", "--dry-run", "--",
                     "--config.train.num_steps=100"]) == 0
  out = capsys.readouterr().out
  lines = out.splitlines()
  for expected in ["#!/bin/bash", "#SBATCH --job-name=125m", "#SBATCH --nodes=4",
                   "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                   "#SBATCH --time=12:00:00", "#SBATCH --partition=h100",
                   "#SBATCH --output=slurm_logs/%x-%j.out", "cd /cluster/sj",
                   "source .venv/bin/activate", "export SCALING_JAX_DIST=slurm",
                   "export SCALING_JAX_PORT=$((61000 + SLURM_JOB_ID % 4000))",
                   f"srun --kill-on-bad-exit=1 --cpu-bind=none {TRAIN} "
                   "--config.train.num_steps=100"]:
    assert expected in lines, expected
  assert any(l.startswith("export SCALING_JAX_COORDINATOR_HOST=$(scontrol show hostnames")
             for l in lines)
  assert "{{" not in out.replace("# {{...}}", "")
  assert lines[-1] == "sbatch slurm_logs/125m.sbatch"
  # All #SBATCH lines come before the first command, or SLURM ignores them.
  first_cmd = lines.index("set -euo pipefail")
  assert not any(l.startswith("#SBATCH") for l in lines[first_cmd:])


# ---------------------------------------------------------------------------- sweep_fanout.py

SWEEP = textwrap.dedent("""
    def get_sweep():
      runs = [{"name": f"d{d}", "config": "configs/tiny.py",
               "overrides": {"model.d_model": d, "train.num_steps": 10}} for d in (64, 128)]
      return runs + [("d256", "configs/tiny.py", {"model.d_model": 256})]
""")


@pytest.fixture
def sweep_file(tmp_path):
  path = tmp_path / "sweep.py"
  path.write_text(SWEEP)
  return str(path)


def _finish(run_dir, status="finished"):
  os.makedirs(run_dir, exist_ok=True)
  rundir.write_json_atomic(os.path.join(run_dir, "config.json"), {"config": {}, "facts": {}})
  rundir.write_status(run_dir, status)


def test_sweep_slurm_array_dry_run(sweep_file, tmp_path, capsys):
  out_dir = tmp_path / "sw"
  _finish(str(out_dir / "d64"))  # finished runs are not resubmitted
  assert sweep_fanout.main(["submit", sweep_file, "--out", str(out_dir), "--backend", "slurm",
                            "--nodes", "2", "--max-parallel", "1", "--partition", "gpu",
                            "--dry-run"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == "# skipping 1 finished runs: d64"
  table = lines[lines.index(f"# --- {out_dir}/slurm/commands.txt ---") + 1:][:2]
  assert table == [
      f"scaling-jax train --config configs/tiny.py --workdir {out_dir}/d128 "
      "--config.model.d_model=128 --config.train.num_steps=10",
      f"scaling-jax train --config configs/tiny.py --workdir {out_dir}/d256 "
      "--config.model.d_model=256"]
  for expected in ["#SBATCH --array=0-1%1", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8",
                   f"#SBATCH --output={out_dir}/slurm/logs/%x-%A_%a.out",
                   f'CMD=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {out_dir}/slurm/commands.txt)',
                   'srun --kill-on-bad-exit=1 --cpu-bind=none bash -c "$CMD"']:
    assert expected in lines, expected
  assert lines[-2:] == [f"mkdir -p {out_dir}/slurm/logs", f"sbatch {out_dir}/slurm/sweep.sbatch"]


def test_sweep_tpu_queued_resources_dry_run(sweep_file, tmp_path, capsys):
  out_dir = tmp_path / "sw"
  assert sweep_fanout.main(["submit", sweep_file, "--out", str(out_dir), "--backend", "tpu",
                            "--project", "proj", "--zone", "us-central2-b", "--bucket",
                            "gs://bkt/sw/", "--accelerator-type", "v4-32", "--spot",
                            "--dry-run"]) == 0
  lines = capsys.readouterr().out.splitlines()
  creates = [l for l in lines if l.startswith("gcloud compute tpus queued-resources create")]
  assert len(creates) == 3
  assert creates[1] == (
      "gcloud compute tpus queued-resources create sj-d128 --node-id=sj-d128 "
      "--project=proj --zone=us-central2-b --accelerator-type=v4-32 "
      "--runtime-version=tpu-ubuntu2204-base "
      f"--metadata-from-file=startup-script={out_dir}/tpu/d128.startup.sh --spot")
  assert f"gcloud storage cp {out_dir}/tpu/scaling-jax.tar.gz " \
         "gs://bkt/sw/code/scaling-jax.tar.gz" in lines
  start = lines.index(f"# --- {out_dir}/tpu/d128.startup.sh ---")
  script = lines[start + 1:lines.index(f"# --- end {out_dir}/tpu/d128.startup.sh ---")]
  assert ("scaling-jax train --config configs/tiny.py --workdir /opt/runs/d128 "
          "--config.model.d_model=128 --config.train.num_steps=10 2>&1 | tee -a /opt/train.log"
          ) in script
  assert any("gcloud storage rsync -r /opt/runs/d128 gs://bkt/sw/runs/d128" in l for l in script)
  assert "export PATH=$HOME/.local/bin:/usr/local/bin:$PATH SCALING_JAX_DIST=tpu" in script
  assert sweep_fanout.qr_name("sj", "Lr_3e-4.x") == "sj-lr-3e-4-x"
  # --gcs-workdir: train straight into the bucket, nothing to sync.
  files, _ = sweep_fanout.tpu_queued(
      [{"name": "a", "config": "c.py", "overrides": {}}], project="p", zone="z",
      accelerator_type="v4-8", runtime_version="v", bucket="gs://b", gcs_workdir=True)
  (text,) = files.values()
  assert "scaling-jax train --config c.py --workdir gs://b/runs/a 2>&1" in text
  assert "rsync" not in text
  assert "python3 -m pip install -e '.[gcs]'" in text  # gcsfs: what rundir needs for gs://
  assert any(l.endswith("python3 -m pip install -e .") for l in script)


def test_sweep_local_runs_sequentially(tmp_path, capsys):
  sweep = tmp_path / "sweep.py"
  sweep.write_text("def get_sweep():\n  return [{'name': 'a', 'config': 'c.py'},"
                   " {'name': 'b', 'config': 'c.py', 'overrides': {'x.y': True}}]\n")
  assert sweep_fanout.main(["submit", str(sweep), "--out", "o", "--backend", "local",
                            "--dry-run"]) == 0
  out = os.path.abspath("o")
  assert capsys.readouterr().out.splitlines() == [
      f"scaling-jax train --config c.py --workdir {out}/a",
      f"scaling-jax train --config c.py --workdir {out}/b --config.x.y=True"]


@pytest.mark.parametrize("body, match", [
    ("x = 1", "no get_sweep"),
    ("def get_sweep():\n  return [{'name': 'a b', 'config': 'c'}]", "directory name"),
    ("def get_sweep():\n  return [{'name': 'a', 'config': 'c'}] * 2", "unique"),
    ("def get_sweep():\n  return [{'config': 'c'}]", "each run must be"),
])
def test_sweep_file_errors(tmp_path, body, match):
  path = tmp_path / "sweep.py"
  path.write_text(body + "\n")
  with pytest.raises(sweep_fanout.SweepError, match=match):
    sweep_fanout.load_sweep(str(path))


def test_collect_finished_runs(tmp_path, capsys):
  for sweep, name, status in [("s1", "a", "finished"), ("s1", "b", "failed"),
                              ("s2", "a", "finished"), ("s2", "c", "running")]:
    run = tmp_path / sweep / name
    _finish(str(run), status)
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    (run / "checkpoints" / "1").mkdir(parents=True)
  dest = tmp_path / "study"
  assert sweep_fanout.main(["collect", str(tmp_path / "s1"), str(tmp_path / "s2"),
                            "--dest", str(dest)]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[:2] == [str(dest / "a"), str(dest / "s2__a")]
  assert sorted(l.split(":")[0] for l in out[2:]) == [
      f"# skipped {tmp_path}/s1/b", f"# skipped {tmp_path}/s2/c"]
  assert rundir.find_runs(str(dest)) == [str(dest / "a"), str(dest / "s2__a")]
  assert (dest / "a" / "metrics.jsonl").exists()
  assert not (dest / "a" / "checkpoints").exists()  # the fitter does not need them
  listed = sweep_fanout.collect([str(tmp_path / "s1"), str(tmp_path / "s2")], None, "list",
                                out=io.StringIO())
  assert listed == [str(tmp_path / "s1" / "a"), str(tmp_path / "s2" / "a")]


# ---------------------------------------------------------------------------- memory.py

def _model_params(model_cfg) -> int:
  """Parameters of the model a config builds (abstract init, nothing allocated)."""
  model = model_lib.build(model_cfg)
  tokens = jax.ShapeDtypeStruct((1, model_cfg.n_ctx), jnp.int32)
  return accounting.count_tree(jax.eval_shape(model.init, jax.random.key(0), tokens))


def test_estimate_memory_by_hand():
  # GPT-3 125M (12 x 768, 12 heads), n_ctx 1024, vocab 50257, untied, 1 sequence, 1 device.
  m = memory.estimate_memory(12, 768, 12, 1024, 50257, batch_per_device=1)
  d, s, layers, v = 768, 1024, 12, 50257
  untied = config_lib.default_config().model
  untied.update(n_layer=12, d_model=768, n_heads=12, d_ff=4 * 768, n_ctx=1024, vocab_size=v,
                tie_embeddings=False)
  n = _model_params(untied)
  assert m["n_params"] == n == 163_037_184  # the model's own count, untied
  assert m["state"] == 16 * n
  assert m["activations"] == layers * (32 * s * d + 2 * 12 * s * s) == 603_979_776
  # fused loss: one chunk of all 1024 tokens' f32 logits + gradient, the f32 dW, bf16 W
  assert m["loss"] == 8 * s * v + 4 * d * v + 2 * d * v
  assert m["attention_backward"] == 16 * 12 * s * s  # f32 scores, probs + their gradients
  assert m["total"] == 4_057_190_912  # 3.78 GiB
  unfused = memory.estimate_memory(12, 768, 12, 1024, 50257, batch_per_device=1,
                                   fused_loss=False)
  assert unfused["loss"] == 8 * s * v and unfused["total"] == 3_825_606_656
  flash = memory.estimate_memory(12, 768, 12, 1024, 50257, 1, flash_attention=True)
  assert flash["attention_backward"] == 0
  assert flash["activations"] == layers * 32 * s * d
  # 32 sequences: chunks of 128 positions (4096 tokens <= 1 GiB of f32 logits), not 32 x 1024
  big = memory.estimate_memory(12, 768, 12, 1024, 50257, batch_per_device=32)
  assert big["loss"] == 8 * 4096 * v + 6 * d * v
  # FSDP over 16 devices divides the state; full remat keeps block inputs + one block.
  r = memory.estimate_memory(12, 768, 12, 1024, 50257, 1, fsdp=16, remat="full")
  assert r["state"] == 16 * n // 16
  assert r["gathered_params"] == 2 * 2 * 12 * d * d  # bf16, two layers' weight matrices
  assert r["activations"] == layers * 2 * s * d + (32 * s * d + 2 * 12 * s * s)


@pytest.mark.parametrize("name", ["125M", "1.3B"])
def test_memory_table_counts_the_presets_as_the_model_does(name):
  # The presets tie their embeddings (GPT-2): the table's totals are the built model's.
  model_cfg = memory.preset_config(name).model
  n = _model_params(model_cfg)
  assert abs(n / {"125M": 125e6, "1.3B": 1.3e9}[name] - 1) < 0.02  # the name is the total
  assert memory.estimate_preset(name, 1, 1, "none")["n_params"] == n
  assert memory.estimate_preset(name, 1, 16, "none")["state"] == 16 * n // 16
  assert f"| {name} ({n / 1e6:.1f}M) | 8xH100 (74.5 GiB) | 64 |" in memory.table()
