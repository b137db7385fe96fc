"""`ct5x train` end to end on NCBI-format data: a complete run directory, a falling validation
loss, exact resume after SIGKILL, the same run with length buckets, and the same loss trajectory
on a simulated (4, 2) mesh."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from data_paths import SHARED_DATA
from training_run import (
    REFERENCE_MACROS,
    REPO,
    fixture_data,
    gin_flags,
    run_train,
    subprocess_env,
    train_command,
)

from ct5x import train
from ct5x.checkpoints import load_checkpoint
from ct5x.checkpoints.tree import flatten
from ct5x.run_record import read_run_record


def _metrics(model_dir):
    return [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]


def _losses(model_dir):
    return {line["step"]: line["loss"] for line in _metrics(model_dir) if "loss" in line}


def _check_run_directory(model_dir, record, steps):
    for name in ("config.gin", "config.json", "spiece.model", "run.json", "metrics.jsonl"):
        assert (model_dir / name).is_file(), name
    assert any((model_dir / "train").glob("events.out.tfevents.*"))
    assert any((model_dir / "validation").glob("events.out.tfevents.*"))
    on_disk = json.loads((model_dir / "run.json").read_text())
    assert on_disk == record
    assert record["finished"] and record["latest_step"] == steps == record["train_steps"]
    assert record["task"] == "ncbi_disease_fold0" and record["base_task"] == "ncbi_disease"
    assert record["variant"] == {"flan": False, "deid": False, "site": None, "fold": 0,
                                 "fraction": None}
    assert record["best_metric"]["name"] == "f1"
    assert record["vocabulary"] == str(model_dir / "spiece.model")
    # What evaluation needs to score the run as it was trained (run.json schema 2).
    assert {key: record[key] for key in ("schema_version", "anchor_compatible", "selection",
                                         "scored_as", "pack", "num_folds")} == {
        "schema_version": 2, "anchor_compatible": False, "scored_as": "ncbi_disease",
        "selection": {"metric": "f1", "higher_is_better": True}, "pack": False, "num_folds": 5}
    assert read_run_record(model_dir).to_json() == record
    best = load_checkpoint(model_dir / f"checkpoint_{record['best_step']}")
    assert best.step == record["best_step"]
    assert "MODEL_DIR" in (model_dir / "config.gin").read_text()
    lines = _metrics(model_dir)
    assert {"step", "epoch", "loss", "learning_rate", "tokens_per_s"} <= set(lines[0])
    validation = [line for line in lines if "validation/loss" in line]
    assert validation and all("validation/f1" in line for line in validation)
    return validation


def test_run_directory_is_complete_and_validation_loss_falls(reference_run):
    model_dir, record = reference_run
    validation = _check_run_directory(model_dir, record, REFERENCE_MACROS["TRAIN_STEPS"])
    assert validation[-1]["validation/loss"] < validation[0]["validation/loss"]
    losses = _losses(model_dir)
    assert np.mean([losses[s] for s in (21, 22, 23, 24)]) < np.mean([losses[s] for s in (1, 2, 3)])
    # The best and the newest checkpoint are kept, the others pruned.
    kept = sorted(int(p.name.split("_")[1]) for p in model_dir.glob("checkpoint_*"))
    assert kept == sorted({record["best_step"], 24})
    # No example text in the logs: metrics are numbers only.
    assert all(isinstance(value, (int, float)) for line in _metrics(model_dir)
               for value in line.values())


def test_finished_run_says_so_and_exits_0(reference_run, synthetic_inputs, capsys):
    model_dir, _ = reference_run
    flags = gin_flags(model_dir, *synthetic_inputs, **REFERENCE_MACROS)
    assert train.main(flags) == 0
    assert "already finished" in capsys.readouterr().out


def test_kill_between_final_save_and_run_json_evaluates_again(reference_run, synthetic_inputs,
                                                              tmp_path):
    reference_dir, record = reference_run
    model_dir = tmp_path / "copy"
    shutil.copytree(reference_dir, model_dir)
    # As run.json stood before the final evaluation named checkpoint_24.
    stale = {**record, "latest_step": 12, "finished": False, "best_step": None,
             "best_metric": None}
    (model_dir / "run.json").write_text(json.dumps(stale))
    assert train.main(gin_flags(model_dir, *synthetic_inputs, **REFERENCE_MACROS)) == 0
    final = json.loads((model_dir / "run.json").read_text())
    assert final["finished"] and final["latest_step"] == 24 and final["best_step"] == 24
    at_24 = [line for line in _metrics(model_dir)
             if line["step"] == 24 and "validation/loss" in line]
    original = [line for line in _metrics(reference_dir)
                if line["step"] == 24 and "validation/loss" in line]
    assert len(at_24) == 1
    assert at_24[0]["validation/loss"] == pytest.approx(original[0]["validation/loss"], rel=1e-4)


def test_resume_refuses_a_changed_batch_size_and_keeps_run_json_fixed_fields(
        reference_run, synthetic_inputs, tmp_path, capsys):
    reference_dir, record = reference_run
    model_dir = tmp_path / "copy"
    shutil.copytree(reference_dir, model_dir)
    (model_dir / "run.json").write_text(
        json.dumps({**record, "finished": False, "ct5x_version": "as first written"}))
    changed = gin_flags(model_dir, *synthetic_inputs, **{**REFERENCE_MACROS, "BATCH_SIZE": 16})
    assert train.main(changed) == train.EXIT_BAD_INPUT
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "trained with BATCH_SIZE=8, this run sets BATCH_SIZE=16" in error
    assert train.main(gin_flags(model_dir, *synthetic_inputs, **REFERENCE_MACROS)) == 0
    final = json.loads((model_dir / "run.json").read_text())
    assert final["finished"] and final["ct5x_version"] == "as first written"
    assert final["best_step"] == record["best_step"]


def test_sigkill_and_restart_end_with_the_uninterrupted_parameters(reference_run,
                                                                   synthetic_inputs, tmp_path):
    reference_dir, record = reference_run
    model_dir = tmp_path / "killed"
    flags = gin_flags(model_dir, *synthetic_inputs, **REFERENCE_MACROS)
    process = subprocess.Popen(train_command(flags), cwd=REPO, env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (model_dir / "checkpoint_8").is_dir() and process.poll() is None:
        assert time.time() < deadline, "no checkpoint_8 in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run_file = model_dir / "run.json"
    assert not run_file.is_file() or not json.loads(run_file.read_text())["finished"]
    restarted = run_train(flags)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "resuming from" in restarted.stdout
    expected = flatten(load_checkpoint(reference_dir / "checkpoint_24").params)
    resumed = flatten(load_checkpoint(model_dir / "checkpoint_24").params)
    assert expected.keys() == resumed.keys()
    worst = max(float(np.max(np.abs(expected[k] - resumed[k]))) for k in expected)
    assert worst <= 1e-6
    assert json.loads(run_file.read_text())["best_step"] == record["best_step"]


def test_steps_per_execution_repeat_the_one_step_run(reference_run, synthetic_inputs, tmp_path):
    """3 steps per execution between checkpoints every 4 steps: executions of 3 steps and of one
    alternate, and the run ends with the reference run's losses, checkpoints and parameters."""
    reference_dir, record = reference_run
    model_dir = tmp_path / "grouped"
    flags = gin_flags(model_dir, *synthetic_inputs, **REFERENCE_MACROS, STEPS_PER_EXECUTION=3)
    assert train.main(flags) == 0
    expected, found = _losses(reference_dir), _losses(model_dir)
    assert sorted(found) == sorted(expected) == list(range(1, 25))
    np.testing.assert_allclose([found[s] for s in found], [expected[s] for s in found], rtol=1e-5)
    # Log lines inside one execution share its throughput; a one-step execution has its own.
    rates = {line["step"]: line["tokens_per_s"] for line in _metrics(model_dir) if "loss" in line}
    assert rates[1] == rates[2] == rates[3] and rates[5] == rates[6] == rates[7]
    assert len({rates[3], rates[4], rates[5]}) == 3
    assert json.loads((model_dir / "run.json").read_text())["best_step"] == record["best_step"]
    want = flatten(load_checkpoint(reference_dir / "checkpoint_24").params)
    got = flatten(load_checkpoint(model_dir / "checkpoint_24").params)
    assert max(float(np.max(np.abs(want[k] - got[k]))) for k in want) <= 1e-5


def _largest_difference(first, second, step: int) -> float:
    want = flatten(load_checkpoint(first / f"checkpoint_{step}").params)
    got = flatten(load_checkpoint(second / f"checkpoint_{step}").params)
    assert want.keys() == got.keys()
    return max(float(np.max(np.abs(want[k] - got[k]))) for k in want)


def _predictions(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


BUCKETS_SCRIPT = """
import json, sys
from ct5x import train
from ct5x.evaluation import EvaluationSettings, evaluate_runs
from ct5x.trainer import Trainer
runs, model_dir = json.loads(sys.argv[1])
shapes = {}
original = Trainer.train
def recording(self, state, host_batches):
    shapes[current].add(tuple(host_batches[0][key].shape[axis] for key, axis in (
        ("encoder_input_tokens", 0), ("encoder_input_tokens", 1), ("decoder_target_tokens", 1))))
    return original(self, state, host_batches)
Trainer.train = recording
evaluated = {}
def rows_of(method, name):
    def recorded(self, params, batch, *options):
        evaluated[current].add((name, len(batch["encoder_input_tokens"]),
                                "encoder_segment_ids" in batch))
        return method(self, params, batch, *options)
    return recorded
Trainer.score = rows_of(Trainer.score, "score")
Trainer.predict = rows_of(Trainer.predict, "predict")
for current, flags in runs.items():
    shapes[current], evaluated[current] = set(), set()
    assert train.main(flags) == 0
predictions = []
for buckets in ((16, 32), None):
    settings = EvaluationSettings(length_buckets=buckets, force=True)
    assert evaluate_runs(model_dir, settings, show_progress=False).scored
    with open(model_dir + "/predictions.jsonl") as lines:
        predictions.append(lines.read())
print(json.dumps({"shapes": {name: sorted(found) for name, found in shapes.items()},
                  "evaluated": {name: sorted(found) for name, found in evaluated.items()},
                  "same_predictions": predictions[0] == predictions[1]}))
"""


def test_length_buckets_and_packed_batches_repeat_the_fixed_shape_run(synthetic_inputs, tmp_path):
    """Batches padded to length buckets, and batches packed into fewer rows (PACK_BATCHES, the
    default), both with dropout on, end with the fixed-shape run's parameters, losses, validation
    predictions and best checkpoint; `ct5x evaluate` predicts the same with and without buckets.
    The fixed run validates in batches of one microbatch (8 rows: 8, then 4 examples), the others
    at the default EVAL_BATCH_SIZE (32 rows: one batch of 12 examples cut to 16 rows, scored 8
    rows at a time; the packed run scores them packed into 8 rows), with the same validation
    losses and predictions. The runs share one process
    with XLA's fast compilation (their programs are most of the time)."""
    macros = {"TRAIN_STEPS": 6, "EVAL_PERIOD": 3, "LOG_PERIOD": 1, "EVAL_EXAMPLES": 12,
              "TASK_FEATURE_LENGTHS": {"inputs": 80, "targets": 80}}
    folders = {name: tmp_path / name for name in ("fixed", "bucketed", "packed")}
    runs = {"fixed": gin_flags(folders["fixed"], *synthetic_inputs, LENGTH_BUCKETS=None,
                               PACK_BATCHES=False, EVAL_BATCH_SIZE=8, **macros),
            "bucketed": gin_flags(folders["bucketed"], *synthetic_inputs, LENGTH_BUCKETS=(48, 64),
                                  PACK_BATCHES=False, **macros),
            "packed": gin_flags(folders["packed"], *synthetic_inputs, LENGTH_BUCKETS=(48, 64),
                                **macros)}
    payload = json.dumps([runs, str(folders["packed"])])
    env = subprocess_env()
    result = subprocess.run([sys.executable, "-c", BUCKETS_SCRIPT, payload], check=False,
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["same_predictions"]
    assert found["evaluated"]["fixed"] == [["predict", 8, False], ["score", 8, False]]
    assert found["evaluated"]["bucketed"] == [["predict", 16, False], ["score", 8, False]]
    # Packing the training batches packs the validation's scoring rows too (12 examples in 8).
    assert found["evaluated"]["packed"] == [["predict", 16, False], ["score", 8, True]]
    batch_rows = found["shapes"]["fixed"][0][0]
    assert found["shapes"]["fixed"] == [[batch_rows, 80, 80]]
    assert len(found["shapes"]["bucketed"]) > 1
    assert all(rows == batch_rows for rows, _, _ in found["shapes"]["bucketed"])
    assert all(rows < batch_rows for rows, _, _ in found["shapes"]["packed"])
    fixed = folders["fixed"]
    expected = _losses(fixed)
    for name, tolerance in (("bucketed", 1e-6), ("packed", 1e-5)):
        folder = folders[name]
        losses = _losses(folder)
        np.testing.assert_allclose([losses[s] for s in range(1, 7)],
                                   [expected[s] for s in range(1, 7)], rtol=1e-5)
        assert _largest_difference(fixed, folder, 6) <= tolerance, name
        records = [json.loads((f / "run.json").read_text()) for f in (fixed, folder)]
        assert records[0]["best_step"] == records[1]["best_step"]
        for step in (3, 6):
            path = f"validation/predictions_{step}.jsonl"
            assert _predictions(folder / path) == _predictions(fixed / path), name
        validation = [{line["step"]: line["validation/loss"] for line in _metrics(f)
                       if "validation/loss" in line} for f in (fixed, folder)]
        assert sorted(validation[1]) == [3, 6], name
        np.testing.assert_allclose([validation[1][s] for s in (3, 6)],
                                   [validation[0][s] for s in (3, 6)], rtol=1e-5)
        assert records[1]["eval_batch_size"] == 32 and records[0]["eval_batch_size"] == 8
    metrics = json.loads((folders["packed"] / "metrics.json").read_text())
    assert metrics["decoding"]["max_decode_length"] == 80 and metrics["max_input_length"] == 80


def test_compiling_ahead_runs_the_same_programs_once(synthetic_inputs, tmp_path):
    """COMPILE_AHEAD (the default) compiles the validation's programs and the other packed row
    counts' on a background thread: the run ends as the run that compiles each program when
    first called (parameters, losses, validation and test predictions), and compiles no program
    twice."""
    macros = {"TRAIN_STEPS": 6, "EVAL_PERIOD": 3, "LOG_PERIOD": 1, "EVAL_EXAMPLES": 8,
              "TASK_FEATURE_LENGTHS": {"inputs": 80, "targets": 80}, "LENGTH_BUCKETS": (48, 64),
              "PACKING_PROGRAM_COST": 0}
    env = subprocess_env()
    timelines = {}
    for name, ahead in (("ahead", True), ("as_called", False)):
        folder = tmp_path / name
        result = subprocess.run(
            train_command(gin_flags(folder, *synthetic_inputs, COMPILE_AHEAD=ahead, **macros)),
            check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        # More than one number of packed rows: a training program is compiled ahead too.
        assert re.search(r"packed rows of .* \d+ or \d+", result.stdout), result.stdout
        timelines[name] = json.loads((folder / "timings.jsonl").read_text().splitlines()[-1])
    ahead, as_called = tmp_path / "ahead", tmp_path / "as_called"
    assert timelines["ahead"]["programs_compiled"] == timelines["as_called"]["programs_compiled"]
    assert timelines["ahead"]["background_compile_seconds"] > 0
    assert timelines["as_called"]["background_compile_seconds"] == 0
    assert _losses(ahead) == _losses(as_called)
    assert _largest_difference(as_called, ahead, 6) == 0
    for path in ("validation/predictions_3.jsonl", "validation/predictions_6.jsonl"):
        assert _predictions(ahead / path) == _predictions(as_called / path), path


MESH_SCRIPT = """
import json, sys
from pathlib import Path
import jax
import numpy as np
from ct5x import partitioning, train
from ct5x.checkpoints import load_checkpoint, train_state
from ct5x.models import EncoderDecoderModel
from ct5x.optimizers import OptimizerSettings, make_optimizer
from ct5x.trainer import Trainer
files, bindings, model_dir = json.loads(sys.argv[1])
train.run(files, bindings)
checkpoint = load_checkpoint(model_dir + "/checkpoint_20")
trainer = Trainer(EncoderDecoderModel(checkpoint.config), make_optimizer(OptimizerSettings()),
                  partitioning.Partitioner(2), seed=0)
# The trained state (parameters and Adafactor's moments after 20 steps), restored onto the
# run's shardings.
tree = train_state.restore_train_state(
    Path(model_dir) / "checkpoint_20",
    train_state.abstract_tree(trainer.state_shapes, trainer.state_shardings))
state = train_state.tree_to_state(tree, trainer.state_shapes.opt_state)
layer = ("encoder", "layers_0")
def at(tree, *path):
    for key in (*layer, *path):
        tree = tree[key]
    return tree
def shards(array):
    return sorted({s.data.shape for s in array.addressable_shards})
moments = state.opt_state[0]
query = ("attention", "query", "kernel")
print(json.dumps({
    "mesh": dict(trainer.partitioner.mesh.shape), "step": int(state.step),
    "kernel": [at(state.params, "mlp", "wi_0", "kernel").shape,
               shards(at(state.params, "mlp", "wi_0", "kernel"))],
    "embedding": shards(state.params["token_embedder"]["embedding"]),
    "v_col": shards(at(moments.v_col, "mlp", "wi_0", "kernel")),
    "query": [at(state.params, *query).shape, shards(at(state.params, *query))],
    "query_v_row": shards(at(moments.v_row, *query)),
    "query_v_col": shards(at(moments.v_col, *query)),
    "trained": bool(np.all(np.asarray(at(moments.v_row, *query)) > 0)),
}))
"""


def test_mesh_of_8_devices_matches_one_device(reference_run, synthetic_inputs, tmp_path):
    reference_dir, _ = reference_run
    model_dir = tmp_path / "mesh"
    macros = {**REFERENCE_MACROS, "TRAIN_STEPS": 20, "EVAL_PERIOD": 20, "EVAL_EXAMPLES": 8,
              "NUM_PARTITIONS": 2, "CHECKPOINT_PERIOD": None}
    flags = train.parse_flags(gin_flags(model_dir, *synthetic_inputs, **macros))
    payload = json.dumps([flags.gin_files, flags.gin_bindings, str(model_dir)])
    result = subprocess.run([sys.executable, "-c", MESH_SCRIPT, payload], check=False,
                            cwd=REPO,
                            env=subprocess_env(devices=8), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shards = json.loads(result.stdout.strip().splitlines()[-1])
    assert shards["mesh"] == {"data": 4, "model": 2}
    assert shards["step"] == 20 and shards["trained"]
    assert shards["kernel"] == [[32, 48], [[32, 24]]]  # mlp split over "model"
    assert shards["embedding"] == [[64, 32]]  # vocab 128 split over "model"
    assert shards["v_col"] == [[24]]  # Adafactor's factored moment is split too
    # A square kernel: the moment averaged over its "model" axis keeps the unsplit one whole.
    assert shards["query"] == [[32, 32], [[32, 16]]]
    assert shards["query_v_row"] == [[32]] and shards["query_v_col"] == [[16]]
    expected, found = _losses(reference_dir), _losses(model_dir)
    steps = range(1, 21)
    np.testing.assert_allclose([found[s] for s in steps], [expected[s] for s in steps],
                               rtol=1e-5)


@pytest.mark.skipif(not (SHARED_DATA / "NCBI_disease").is_dir(),
                    reason="real NCBI-disease data not present in ../shared/data")
def test_fine_tune_on_real_ncbi_lines(tmp_path):
    splits = {
        split: (SHARED_DATA / "NCBI_disease" / f"{split}_blurb.tsv")
        .read_text(encoding="utf-8").splitlines()[:100]
        for split in ("train", "dev", "test")
    }
    data_dir, checkpoint = fixture_data(tmp_path, splits)
    model_dir = tmp_path / "model"
    flags = gin_flags(model_dir, data_dir, checkpoint, TRAIN_STEPS=30, EVAL_PERIOD=15,
                      EVAL_EXAMPLES=16, TASK_FEATURE_LENGTHS={"inputs": 48, "targets": 48})
    assert train.main(flags) == 0
    record = json.loads((model_dir / "run.json").read_text())
    validation = _check_run_directory(model_dir, record, 30)
    assert validation[-1]["validation/loss"] < validation[0]["validation/loss"]
