"""Fixtures the `ct5x train` tests share (one process and several)."""

import pytest
from training_run import fixture_data, synthetic_ncbi_lines


@pytest.fixture(scope="session")
def synthetic_inputs(tmp_path_factory):
    """(DATA_DIR, initial checkpoint) of a small synthetic NCBI-disease run."""
    lines = synthetic_ncbi_lines(240, seed=3)
    splits = {"train": lines[:160], "dev": lines[160:200], "test": lines[200:]}
    return fixture_data(tmp_path_factory.mktemp("ncbi"), splits)
