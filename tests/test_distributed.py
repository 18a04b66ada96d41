"""scaling_jax.distributed: the start-up decision on fake environments, nodelists, init."""

import pytest

from scaling_jax import distributed as dist
from scaling_jax.distributed import DistributedError, Plan, detect, expand_nodelist


@pytest.mark.parametrize("nodelist, hosts", [
    ("node001", ["node001"]),
    ("node001,host2", ["node001", "host2"]),
    ("gpu[001-004,007]", ["gpu001", "gpu002", "gpu003", "gpu004", "gpu007"]),
    ("gpu[8-11],login1", ["gpu8", "gpu9", "gpu10", "gpu11", "login1"]),
    ("a[09-10]-ib,b1", ["a09-ib", "a10-ib", "b1"]),
    ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
])
def test_expand_nodelist(nodelist, hosts):
  assert expand_nodelist(nodelist) == hosts
  assert dist.first_host(nodelist) == hosts[0]


@pytest.mark.parametrize("bad", ["gpu[001-004", "gpu001]", "gpu[4-1]", "gpu[a-b]"])
def test_expand_nodelist_rejects_malformed(bad):
  with pytest.raises(DistributedError, match="nodelist"):
    expand_nodelist(bad)


SLURM_2x8 = {
    "SLURM_JOB_ID": "123456", "SLURM_NTASKS": "16", "SLURM_PROCID": "11",
    "SLURM_LOCALID": "3", "SLURM_STEP_NODELIST": "gpu[007-008]",
    "SLURM_JOB_NODELIST": "gpu[001-004]", "SLURM_NTASKS_PER_NODE": "8",
    "SLURM_GPUS_ON_NODE": "8",
}


def test_detect_slurm_one_gpu_per_task():
  plan = detect(SLURM_2x8)
  # Step nodelist wins over the job's; port derived from the job id.
  assert plan == Plan("slurm", "gpu007:%d" % (61000 + 123456 % 4000), 16, 11, (3,),
                      reason="SLURM_NTASKS=16")


def test_detect_slurm_port_host_and_gpu_slices():
  env = {**SLURM_2x8, "SCALING_JAX_PORT": "5555", "SLURM_STEP_NODELIST": "",
         "SLURM_NTASKS_PER_NODE": "", "SLURM_TASKS_PER_NODE": "4(x4)", "SLURM_LOCALID": "1"}
  plan = detect(env)
  assert plan.coordinator == "gpu001:5555"  # falls back to the job nodelist
  assert plan.local_device_ids == (2, 3)  # 8 GPUs / 4 tasks: task 1 takes GPUs 2, 3
  env["SCALING_JAX_COORDINATOR_HOST"] = "head"  # what slurm.sbatch exports (scontrol)
  assert detect(env).coordinator == "head:5555"
  # One GPU visible per task (--gpus-per-task=1): let it use what it sees.
  one = {k: v for k, v in SLURM_2x8.items() if k != "SLURM_GPUS_ON_NODE"}
  assert detect({**one, "CUDA_VISIBLE_DEVICES": "5"}).local_device_ids is None


def test_detect_slurm_single_task_is_none_and_srun_needed():
  assert detect({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).mode == "none"
  with pytest.raises(DistributedError, match="srun"):
    detect({"SLURM_NTASKS": "4", "SLURM_JOB_NODELIST": "n1"})


def test_detect_explicit_env_beats_slurm():
  env = {**SLURM_2x8, "SCALING_JAX_COORDINATOR": "10.0.0.1:1234",
         "SCALING_JAX_NUM_PROCESSES": "2", "SCALING_JAX_PROCESS_ID": "1",
         "SCALING_JAX_LOCAL_DEVICE_IDS": "0,1"}
  assert detect(env) == Plan("explicit", "10.0.0.1:1234", 2, 1, (0, 1),
                             reason="SCALING_JAX_COORDINATOR is set")


@pytest.mark.parametrize("env, match", [
    ({"SCALING_JAX_COORDINATOR": "h:1", "SCALING_JAX_NUM_PROCESSES": "2"}, "process_id"),
    ({"SCALING_JAX_COORDINATOR": "h", "SCALING_JAX_NUM_PROCESSES": "2",
      "SCALING_JAX_PROCESS_ID": "0"}, "host:port"),
    ({"SCALING_JAX_COORDINATOR": "h:1", "SCALING_JAX_NUM_PROCESSES": "2",
      "SCALING_JAX_PROCESS_ID": "2"}, "process_id=2"),
    ({"SCALING_JAX_COORDINATOR": "h:1", "SCALING_JAX_NUM_PROCESSES": "two",
      "SCALING_JAX_PROCESS_ID": "0"}, "integer"),
    ({"SCALING_JAX_DIST": "mpi"}, "not one of"),
])
def test_detect_explicit_errors_say_what_to_set(env, match):
  with pytest.raises(DistributedError, match=match):
    detect(env)


def test_detect_tpu():
  hosts = {"TPU_WORKER_HOSTNAMES": "t-w-0,t-w-1,t-w-2,t-w-3", "TPU_WORKER_ID": "2"}
  assert detect(hosts).mode == "tpu"
  assert detect({"TPU_WORKER_HOSTNAMES": "localhost"}).mode == "none"  # one-host slice
  assert detect({"MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.2:8080"}).mode == "tpu"
  assert detect({"SCALING_JAX_DIST": "tpu"}).mode == "tpu"  # set by launch/tpu_vm.py
  # SLURM outranks TPU hints; SCALING_JAX_DIST=none outranks everything.
  assert detect({**hosts, **SLURM_2x8}).mode == "slurm"
  assert detect({**hosts, **SLURM_2x8, "SCALING_JAX_DIST": "none"}).mode == "none"


def test_detect_none_and_forced_modes():
  assert detect({}) == Plan("none", reason="no multi-process environment found")
  with pytest.raises(DistributedError, match="sbatch"):
    detect({}, mode="slurm")
  with pytest.raises(DistributedError, match="missing"):
    detect({}, mode="explicit")


def test_plan_from_args_arguments_beat_env():
  env = {"SCALING_JAX_COORDINATOR": "h:1", "SCALING_JAX_NUM_PROCESSES": "4",
         "SCALING_JAX_PROCESS_ID": "3"}
  plan = dist.plan_from_args(coordinator="127.0.0.1:99", num_processes=2, process_id=0,
                             local_device_ids=1, env=env)
  assert (plan.mode, plan.coordinator, plan.num_processes, plan.local_device_ids) == (
      "explicit", "127.0.0.1:99", 2, (1,))
  assert dist.plan_from_args("explicit", env=env).num_processes == 4
  with pytest.raises(DistributedError, match="num_processes"):
    dist.plan_from_args(coordinator="127.0.0.1:99", env={})


def test_initialize_single_process_is_idempotent():
  info = dist.initialize("none")
  assert (info.mode, info.process_index, info.process_count, info.is_main) == (
      "none", 0, 1, True)
  assert info.device_count == 8  # conftest's simulated CPU devices
  assert dist.initialize("none") is info
  assert dist.is_main_process()
  with pytest.raises(DistributedError, match="already initialized"):
    dist.initialize(coordinator="127.0.0.1:1", num_processes=2, process_id=0)


def test_main_only_runs_on_process_zero():
  calls = []

  @dist.main_only
  def write(x):
    calls.append(x)
    return x * 2

  assert write(3) == 6 and calls == [3]
