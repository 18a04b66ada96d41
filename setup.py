"""scaling-jax: scaling-law research on language models in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="scaling-jax",
    version="0.1.0",
    description=(
        "Train Transformer families on any JAX mesh, measure the gradient noise "
        "scale and critical batch size, and fit scaling laws in JAX."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # configs/ (top of the repo) ships as scaling_jax.configs: the demo and the presets
    # work from an installed wheel as from a checkout.
    packages=find_packages(include=["scaling_jax", "scaling_jax.*"]) + ["scaling_jax.configs"],
    package_dir={"scaling_jax.configs": "configs"},
    package_data={"scaling_jax.scaling": ["reference/*.json", "reference/*.csv",
                                          "reference/*.md"]},
    install_requires=[
        "jax>=0.7.0",
        "flax>=0.11.0",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11.20",
        "tensorflow-datasets>=4.9.9",
        "array-record>=0.8.1",
        "grain>=0.2.12",
        "numpy>=1.26",
        "scipy>=1.11",
        "ml-collections>=1.1.0",
        "absl-py>=2.0",
        "sentencepiece>=0.2.0",
        "matplotlib>=3.8",
        "tqdm>=4.66",
        "tensorboardX>=2.6.2",
    ],
    extras_require={
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "scipy>=1.11",
                 "gcsfs>=2024.2.0", "gcp-storage-emulator>=2024.8.3"],
        # gs:// run directories (rundir goes through etils.epath, which needs gcsfs)
        "gcs": ["gcsfs>=2024.2.0"],
        "bench": ["scipy>=1.11", "torch>=2.4"],
        # The TPU compiler, for `scaling-jax compile` on any machine (libtpu, ~700 MB): the
        # jax extra picks the libtpu that matches jax, at the jax version already chosen.
        "tpu": ["jax[tpu]>=0.10.2"],
    },
    entry_points={"console_scripts": ["scaling-jax=scaling_jax.cli:main"]},
)
