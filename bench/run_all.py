"""Runs every CPU benchmark in turn (what `make bench` does); each rewrites its BENCHMARKS.md section.

  python bench/run_all.py

The PyTorch comparisons (bench_torch.py; bench_trainer.py, the trainer as a user runs it;
bench_matmul.py, the matmul kernels alone) run
only if torch is installed (`pip install -e '.[bench]'`); the GPU
suite (`bench_train.py --suite gpu`) and bench_experiments.py are left to be run by hand.
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
RUNS = [["bench_loader.py"], ["bench_train.py", "--suite", "cpu"],
        ["bench_train.py", "--suite", "gns"], ["bench_profile.py"], ["bench_fitter.py"],
        ["bench_memory.py"], ["bench_trainer.py", "--profile", "2x64"], ["bench_op_trace.py"]]


def main() -> int:
  runs = list(RUNS)
  if importlib.util.find_spec("torch") is not None:
    runs += [["bench_torch.py"], ["bench_trainer.py"], ["bench_matmul.py"]]
  else:
    print("torch not installed: skipping bench_torch.py, bench_trainer.py and bench_matmul.py "
          "(pip install -e '.[bench]')")
  failed = 0
  for args in runs:
    print(f"== {' '.join(args)}", flush=True)
    failed += subprocess.call([sys.executable, str(HERE / args[0]), *args[1:]]) != 0
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
