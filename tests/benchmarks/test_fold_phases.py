"""benchmarks/fold.py's pieces: the phase accounting of both pipelines, the fold subset and the
study pipeline's entity F1."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[2] / "benchmarks"))
from fold import parse_args, subset_folds
from fold_phases import PHASES, pipeline_phases, process_phases, summarise, table
from fold_study import bio_tags, entity_f1


def _phase(seconds, first_start, last_end, compile_seconds=0.0, compile_before=0.0, count=1):
    return {"seconds": seconds, "count": count, "first_start": first_start,
            "last_end": last_end, "compile_seconds": compile_seconds,
            "compile_before": compile_before}


# `ct5x train`: 10 s to the loop (1 s of it compiling), a loop from 10 to 70 s holding two
# validations (12 s, 3 s of it compiling) and two saves (2 s), 8 s compiling the train step.
TRAIN = {
    "marks": {"training_start": {"at": 10.0, "compile_before": 1.0},
              "training_end": {"at": 70.0, "compile_before": 12.0}},
    "phases": {"validation": _phase(12.0, 30.0, 69.0, compile_seconds=3.0, compile_before=9.0),
               "checkpoint_save": _phase(2.0, 35.0, 69.5, compile_before=12.0)},
    "compile_seconds": 12.0,
}
# `ct5x evaluate`: loads the checkpoint (1 s) at 6 s, predicts from 9 s to 29 s (4 s compiling).
EVALUATE = {
    "marks": {},
    "phases": {"checkpoint_load": _phase(1.0, 6.0, 7.0),
               "test_prediction": _phase(20.0, 9.0, 29.0, compile_seconds=4.0)},
    "compile_seconds": 4.0,
}


def test_train_process_splits_its_wall_time_without_counting_compilation_twice():
    phases = process_phases(TRAIN, wall=75.0)
    assert phases["start_up"] == pytest.approx(9.0)
    assert phases["compile"] == pytest.approx(12.0)
    assert phases["validation"] == pytest.approx(9.0)
    assert phases["checkpoints"] == pytest.approx(2.0)
    # 60 s of loop - 9 s validation - 2 s saves - 11 s compiled inside the loop
    assert phases["training"] == pytest.approx(38.0)
    assert phases["other"] == pytest.approx(5.0)
    assert sum(phases.values()) == pytest.approx(75.0)


def test_evaluate_process_start_up_ends_at_the_first_prediction():
    phases = process_phases(EVALUATE, wall=31.0)
    assert phases["start_up"] == pytest.approx(8.0)  # 9 s less the 1 s checkpoint load
    assert phases["checkpoints"] == pytest.approx(1.0)
    assert phases["test_prediction"] == pytest.approx(16.0)
    assert phases["compile"] == pytest.approx(4.0)
    assert phases["other"] == pytest.approx(2.0)


def test_train_process_that_scores_the_test_split_counts_it_after_the_loop():
    # EVALUATE_AFTER_TRAINING: the checkpoint load and the test prediction follow the loop.
    record = {**TRAIN, "phases": {
        **TRAIN["phases"],
        "checkpoint_load": _phase(1.0, 71.0, 72.0, compile_before=12.0),
        "test_prediction": _phase(20.0, 73.0, 93.0, compile_seconds=4.0, compile_before=12.0)},
        "compile_seconds": 16.0}
    phases = process_phases(record, wall=96.0)
    assert phases["start_up"] == pytest.approx(9.0)
    assert phases["training"] == pytest.approx(38.0)
    assert phases["compile"] == pytest.approx(16.0)
    assert phases["checkpoints"] == pytest.approx(3.0)
    assert phases["test_prediction"] == pytest.approx(16.0)
    assert phases["other"] == pytest.approx(5.0)
    assert sum(phases.values()) == pytest.approx(96.0)


def test_pipeline_adds_processes_and_ratios_are_per_round():
    ours = [pipeline_phases([(TRAIN, 75.0, 140.0), (EVALUATE, 31.0, 50.0)])] * 2
    assert ours[0]["whole"] == pytest.approx(106.0) and ours[0]["cpu"] == pytest.approx(190.0)
    assert sum(ours[0][name] for name in PHASES) == pytest.approx(106.0)
    theirs = [dict(row, whole=row["whole"] * factor, training=row["training"] * factor)
              for row, factor in zip(ours, (1.5, 2.5))]
    summary = summarise(ours, theirs)
    assert summary["whole"]["ratio"] == pytest.approx(2.0)
    assert summary["whole"]["ratio_range"] == [1.5, 2.5]
    assert summary["start_up"]["ratio"] == pytest.approx(1.0)
    assert "whole fold" in table(summary, rounds=2)


def test_fold_subset_keeps_file_order_and_the_test_ids(tmp_path):
    folds = tmp_path / "folds.json"
    content = {"task": "ncbi_disease", "test": ["test:1"], "folds": [
        {"fold": 0, "train": [f"train:{i}" for i in range(20)],
         "validation": [f"dev:{i}" for i in range(6)]},
        {"fold": 1, "train": [], "validation": []}]}
    folds.write_text(json.dumps(content))
    assert subset_folds(folds, train=5, validation=2) == {"train": 5, "validation": 2}
    fold = json.loads(folds.read_text())["folds"][0]
    positions = [int(name.split(":")[1]) for name in fold["train"]]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert fold["validation"] == ["dev:0", "dev:1"]
    assert json.loads(folds.read_text())["test"] == ["test:1"]


def test_quick_arguments_and_lengths():
    args = parse_args(["--quick"])
    assert (args.shape, args.input_length, args.target_length) == ("tiny", 64, 64)
    args = parse_args(["--lengths", "512/128"])
    assert (args.input_length, args.target_length) == (512, 128)


def test_study_entity_f1_reads_the_markup():
    target = "a disease* breast cancer *disease and disease* colitis *disease ."
    assert bio_tags(target) == ["O", "B-DISEASE", "I-DISEASE", "O", "B-DISEASE", "O"]
    assert entity_f1([target], [target])["f1"] == pytest.approx(1.0)
    half = "a disease* breast cancer *disease and colitis ."
    scores = entity_f1([half], [target])
    assert scores["precision"] == pytest.approx(1.0) and scores["recall"] == pytest.approx(0.5)
