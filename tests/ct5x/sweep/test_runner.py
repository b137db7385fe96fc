"""The local sweep runner: finished runs skipped, a failed run reported while the rest go on,
missing checkpoints named before anything starts. A real sweep interrupted mid-run and resumed is
in tests/ct5x/test_demo.py."""

import pathlib

import pytest
from run_records import run_record, write_run_record

import ct5x.errors
from ct5x.gin_utils import macro, parse_gin
from ct5x.run_record import SWEEP_ERROR_LOG
from ct5x.sweep import runner
from ct5x.sweep.grid import expand, experiment


def test_failed_run_is_reported_and_the_rest_continue(tmp_path):
    grid = experiment("x", [{"name": "a", "gin_file": "demo/model.gin"}], [
        {"name": "s", "tasks": ["mednli"], "learning_rates": [1e-4], "batch_size": 8}],
        runs_dir=str(tmp_path), folds=[0, 1, 2])
    runs = expand(grid)
    called = []

    def train(gin_files, bindings):
        called.append(bindings)
        if len(called) == 1:
            raise ValueError("out of memory\nsecond line")
        return {}

    summary = runner.train_runs(runs, train_fn=train)
    assert len(called) == 3 and len(summary.trained) == 2
    assert [(run.fold, message) for run, message in summary.failed] == [(0, "out of memory")]
    assert "ValueError" in (pathlib.Path(runs[0].model_dir) / SWEEP_ERROR_LOG).read_text()


def test_missing_checkpoint_is_named_before_anything_runs(tmp_path):
    parse_gin(["experiments/in_domain.gin"], [f"RUNS_DIR = '{tmp_path}'",
                                              f"T5_DEN_CHECKPOINT = '{tmp_path}/none'"])
    grid = macro("EXPERIMENT")
    runs = expand(grid)
    with pytest.raises(ct5x.errors.UserInputError, match=r"T5-Den: checkpoint .*/none not found"):
        runner.check_checkpoints(grid, runs[:1])
    with pytest.raises(ct5x.errors.UserInputError, match="bind --gin.T5_SUP_CHECKPOINT"):
        runner.check_checkpoints(grid, [run for run in runs if run.model == "T5-Sup"][:1])


def test_finished_runs_are_skipped(tmp_path):
    grid = experiment("x", [{"name": "a", "gin_file": "demo/model.gin"}], [
        {"name": "s", "tasks": ["mednli"], "learning_rates": [1e-4], "batch_size": 8}],
        runs_dir=str(tmp_path), folds=[0, 1])
    runs = expand(grid)
    write_run_record(runs[0].model_dir, run_record())
    called = []
    summary = runner.train_runs(runs, train_fn=lambda files, bindings: called.append(bindings))
    assert summary.skipped == [runs[0]] and summary.trained == [runs[1]]
    assert len(called) == 1 and f'MODEL_DIR="{runs[1].model_dir}"' in called[0]
    pathlib.Path(runs[1].model_dir).mkdir(parents=True)
    (pathlib.Path(runs[1].model_dir) / "run.json").write_text("{")
    summary = runner.train_runs(runs, train_fn=lambda files, bindings: called.append(bindings))
    assert len(called) == 1 and "not valid JSON" in summary.failed[0][1]
