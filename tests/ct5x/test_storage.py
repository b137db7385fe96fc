"""A run whose MODEL_DIR and DATA_DIR are `gs://` URLs, against a GCS emulator on localhost: it
trains, is killed with SIGKILL, resumes to the uninterrupted local run's parameters, and is
evaluated, reported and converted from the bucket. STORAGE_EMULATOR_HOST is all that aims ct5x at
the emulator. The object-store helpers of `ct5x.storage` are checked against it too."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest
from training_run import (
    REFERENCE_MACROS,
    REPO,
    gin_flags,
    run_train,
    subprocess_env,
    train_command,
)

from ct5x import storage
from ct5x.atomic import write_text
from ct5x.checkpoints import load_checkpoint
from ct5x.checkpoints import train_state as saved
from ct5x.checkpoints.tree import flatten
from ct5x.cli import main
from ct5x.run_directory import RunDirectory


def _worst(expected: dict, found: dict) -> float:
    assert expected.keys() == found.keys()
    return max(float(np.max(np.abs(expected[key] - found[key]))) for key in expected)


@pytest.fixture(scope="module")
def bucket_inputs(gcs_bucket, synthetic_inputs):
    """(DATA_DIR, INITIAL_CHECKPOINT_PATH), both copied into the bucket."""
    data_dir, checkpoint = synthetic_inputs
    inputs = storage.path(gcs_bucket) / "inputs"
    storage.upload_tree(data_dir, inputs / "data")
    storage.upload_tree(checkpoint, inputs / "hf_tiny")
    return f"{inputs}/data", f"{inputs}/hf_tiny"


@pytest.fixture(scope="module")
def bucket_run(gcs_bucket, bucket_inputs):
    """The reference run in the bucket, killed with SIGKILL once its second checkpoint has begun,
    then started again to the end: (model_dir URL, the restart's CompletedProcess)."""
    model_dir = f"{gcs_bucket}/runs/fold0"
    # The restart loads the killed run's programs from JAX's compilation cache, in the bucket too.
    flags = gin_flags(model_dir, *bucket_inputs, **REFERENCE_MACROS,
                      COMPILATION_CACHE_DIR=f"{gcs_bucket}/compilation_cache")
    process = subprocess.Popen(train_command(flags), cwd=REPO, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    begun = storage.path(model_dir) / "checkpoint_8"
    deadline = time.time() + 240
    while not begun.is_dir() and process.poll() is None:
        assert time.time() < deadline, "no checkpoint_8 in time"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return model_dir, run_train(flags)


def test_bucket_run_resumes_after_sigkill_to_the_local_parameters(reference_run, bucket_run):
    reference_dir, record = reference_run
    model_dir, restarted = bucket_run
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "resuming from" in restarted.stdout
    assert "from the compilation cache" in restarted.stdout
    found = flatten(load_checkpoint(f"{model_dir}/checkpoint_24").params)
    assert _worst(flatten(load_checkpoint(reference_dir / "checkpoint_24").params), found) <= 1e-6
    run = json.loads((storage.path(model_dir) / "run.json").read_text())
    assert run["finished"] and run["best_step"] == record["best_step"]
    # Every committed step has its marker; pruning left the best and the newest.
    assert saved.complete_steps(model_dir) == sorted({record["best_step"], 24})
    local = [line for line in (reference_dir / "metrics.jsonl").read_text().splitlines()]
    kept = (storage.path(model_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in kept] == [
        json.loads(line)["step"] for line in local]
    assert storage.rglob(storage.path(model_dir) / "validation", "events.out.tfevents.*")


def test_evaluate_and_report_read_and_write_the_bucket(bucket_run, gcs_bucket):
    model_dir, _ = bucket_run
    assert main(["evaluate", "--runs", f"{gcs_bucket}/runs", "--no-progress"]) == 0
    metrics = json.loads((storage.path(model_dir) / "metrics.json").read_text())
    assert metrics["checkpoint_step"] == json.loads(
        (storage.path(model_dir) / "run.json").read_text())["best_step"]
    assert (storage.path(model_dir) / "predictions.jsonl").is_file()
    out = f"{gcs_bucket}/report"
    assert main(["report", "--runs", f"{gcs_bucket}/runs", "--out", out, "--num-folds", "1"]) == 0
    assert (storage.path(out) / "report.md").is_file()


def test_convert_and_predict_read_and_write_the_bucket(bucket_run, gcs_bucket, tmp_path):
    """`ct5x convert` reads a T5X checkpoint from the bucket; `ct5x predict` with its checkpoint,
    input and output in the bucket writes what it writes from local copies."""
    model_dir, _ = bucket_run
    checkpoint = f"{model_dir}/checkpoint_24"
    assert main(["convert", checkpoint, str(tmp_path / "hf"), "--to", "hf"]) == 0
    expected = flatten(load_checkpoint(checkpoint).params)
    assert _worst(expected, flatten(load_checkpoint(tmp_path / "hf").params)) == 0
    lines = "".join(json.dumps({"inputs": text}) + "\n" for text in ("cancer of the", "a tumour"))
    (tmp_path / "in.jsonl").write_text(lines)
    write_text(f"{gcs_bucket}/predict/in.jsonl", lines)
    decode = ["--max-decode-length", "4"]
    assert main(["predict", "--checkpoint", checkpoint, "--input", f"{gcs_bucket}/predict/in.jsonl",
                 "--output", f"{gcs_bucket}/predict/out.jsonl", *decode]) == 0
    assert main(["predict", "--checkpoint", str(tmp_path / "hf"), "--input",
                 str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl"), *decode]) == 0
    found = (storage.path(gcs_bucket) / "predict" / "out.jsonl").read_text()
    assert found == (tmp_path / "out.jsonl").read_text() and len(found.splitlines()) == 2


def test_object_writes_appends_and_searches(gcs_bucket):
    root = storage.path(gcs_bucket) / "helpers"
    write_text(root / "a" / "run.json", "{}")
    storage.append_text(root / "log.jsonl", "1\n")
    storage.append_text(root / "log.jsonl", "2\n")
    assert (root / "log.jsonl").read_text() == "1\n2\n"
    assert storage.rglob(root, "*.json") == [root / "a" / "run.json"]
    directory = RunDirectory(f"{gcs_bucket}/helpers/run")
    directory.prepare(checkpoint_bytes=10**15)  # no free-space figure in a bucket: not checked
    directory.append_metrics({"step": 1})
    directory.append_metrics({"step": 2})
    directory.truncate_metrics(after_step=1)
    assert directory.metrics() == [{"step": 1}]
