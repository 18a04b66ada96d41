"""Test setup: 8 simulated CPU devices, set before jax is imported anywhere."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than ~20 s on 2 CPU cores")
  config.addinivalue_line("markers", "multiprocess: starts several jax processes")


@pytest.fixture
def repo_root() -> pathlib.Path:
  return REPO
