"""Fixtures the `ct5x train` tests share (one process and several, local disk and a bucket)."""

import json

import pytest
from training_run import REFERENCE_MACROS, fixture_data, gin_flags, run_train, synthetic_ncbi_lines


@pytest.fixture(scope="session")
def synthetic_inputs(tmp_path_factory):
    """(DATA_DIR, initial checkpoint) of a small synthetic NCBI-disease run."""
    lines = synthetic_ncbi_lines(240, seed=3)
    splits = {"train": lines[:160], "dev": lines[160:200], "test": lines[200:]}
    return fixture_data(tmp_path_factory.mktemp("ncbi"), splits)


@pytest.fixture(scope="session")
def reference_run(synthetic_inputs, tmp_path_factory):
    """An uninterrupted run on local disk, in its own process, as the killed ones run:
    (model_dir, run.json)."""
    model_dir = tmp_path_factory.mktemp("runs") / "reference"
    result = run_train(gin_flags(model_dir, *synthetic_inputs, **REFERENCE_MACROS))
    assert result.returncode == 0, result.stderr[-2000:]
    return model_dir, json.loads((model_dir / "run.json").read_text())


@pytest.fixture(scope="session")
def gcs_bucket(tmp_path_factory):
    """`gs://` URL of a bucket in a GCS emulator on localhost, with STORAGE_EMULATOR_HOST set for
    this process and the ones it starts (the emulator's own variable, and all a user sets);
    skipped with one line when the emulator cannot start."""
    import importlib.util

    if importlib.util.find_spec("gcp_storage_emulator") is None:
        pytest.skip("GCS emulator not installed (pip install gcp-storage-emulator)")
    from gcs_emulator import BUCKET, Emulator

    emulator = Emulator(tmp_path_factory.mktemp("gcs") / "emulator.log")
    problem = emulator.wait_until_up()
    if problem is not None:
        emulator.stop()
        pytest.skip(f"GCS emulator cannot start: {problem}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        yield f"gs://{BUCKET}"
    emulator.stop()
