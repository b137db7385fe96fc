"""The local sweep runner: finished runs skipped, a failed run reported while the rest go on,
missing checkpoints named before anything starts. A real sweep interrupted mid-run and resumed is
in tests/ct5x/test_demo.py."""

import json
import pathlib

import pytest
from run_records import run_record, write_run_record

import ct5x.errors
import ct5x_tasks
from ct5x.cli import main
from ct5x.gin_utils import macro, parse_gin
from ct5x.run_record import SWEEP_ERROR_LOG, read_run_record
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


EXPERIMENT_GIN = """
from __gin__ import dynamic_registration
from ct5x.sweep import grid
EXPERIMENT = @grid.experiment()
grid.experiment:
  name = 'small'
  runs_dir = {runs_dir}
  models = [{{'name': 'A', 'gin_file': 'demo/model.gin'}},
            {{'name': 'B', 'gin_file': 'demo/model.gin'}}]
  settings = [{{'name': 'low', 'tasks': ['stigma_adamant'], 'fractions': [0.01],
               'learning_rates': [1e-3, 1e-4], 'batch_size': 4}}]
  folds = [0, 1, 2]
"""


@pytest.fixture
def swept(tmp_path, monkeypatch):
    """A grid trained earlier: model A's better rate (1e-4) lost fold 1 to a failed run; test
    scoring is stood in for by writing each run's metrics.json (known scores)."""
    from ct5x.evaluation import scoring
    from ct5x.gin_utils import gin_literal
    from ct5x.run_record import BestMetric
    from ct5x_tasks.catalog import Selection
    from tests.ct5x.evaluation.grid import metrics_record

    experiment_file = tmp_path / "small.gin"
    experiment_file.write_text(EXPERIMENT_GIN.format(runs_dir=gin_literal(str(tmp_path))))
    runs = expand(experiment("small", [{"name": "A"}, {"name": "B"}], [
        {"name": "low", "tasks": ["stigma_adamant"], "fractions": [0.01],
         "learning_rates": [1e-3, 1e-4], "batch_size": 4}], runs_dir=str(tmp_path),
        folds=[0, 1, 2]))
    for run in runs:
        failed = run.model == "A" and run.learning_rate == 1e-4 and run.fold == 1
        if failed:
            pathlib.Path(run.model_dir).mkdir(parents=True)
            (pathlib.Path(run.model_dir) / SWEEP_ERROR_LOG).write_text("Traceback: OOM\n")
            continue
        value = 0.8 if run.learning_rate == 1e-4 else 0.6
        variant = ct5x_tasks.Variant("stigma_adamant", fold=run.fold, fraction=0.01)
        write_run_record(run.model_dir, run_record(
            model=run.model, task=run.task, variant=variant,
            best_metric=BestMetric("macro_f1", value), selection=Selection("macro_f1")))

    def fake_evaluate_runs(runs_dir, settings, show_progress=True):
        record = read_run_record(runs_dir)
        scores = {"macro_f1": record.best_metric.value - 0.1}
        metrics = metrics_record(record.model, "stigma_adamant", "pct1", 0.01,
                                 record.variant.fold, scores)
        (pathlib.Path(runs_dir) / "metrics.json").write_text(json.dumps(metrics))
        return scoring.EvaluationOutcome(scored=[pathlib.Path(runs_dir)])

    monkeypatch.setattr(scoring, "evaluate_runs", fake_evaluate_runs)
    return experiment_file, runs


def test_a_failed_fold_is_listed_and_the_report_still_written(swept, capsys):
    """A's better rate lost fold 1: A gets no rate (the worse, complete rate is not taken
    silently), B is reported, and the report lists the failed run; exit 1 after writing."""
    experiment_file, runs = swept
    assert main(["sweep", "run", str(experiment_file), "--report-only"]) == 1
    report_dir = experiment_file.parent / "small" / "report"
    report = json.loads((report_dir / "report.json").read_text())
    (table,) = report["tables"]
    assert [row["model"] for row in table["rows"]] == ["B"] and table["rows"][0]["n"] == 3
    failed = next(run for run in runs if run.model == "A" and run.learning_rate == 1e-4
                  and run.fold == 1)
    text = (report_dir / "report.md").read_text()
    assert "## Failed and missing runs" in text and failed.model_dir in text
    assert "training failed" in text and "no learning rate chosen" in text
    choices = [json.loads(line) for line in
               (experiment_file.parent / "small" / "learning_rates.jsonl").read_text()
               .splitlines()]
    assert [(c["model"], c["learning_rate"], c["incomplete"]) for c in choices] == [
        ("A", None, False), ("B", 1e-4, False)]
    assert "lr 0.0001 fold 1: training failed" in capsys.readouterr().err


def test_allow_incomplete_takes_the_complete_rate_flagged_and_report_reads_the_folder(
        swept, tmp_path, capsys):
    experiment_file, _ = swept
    assert main(["sweep", "run", str(experiment_file), "--report-only",
                 "--allow-incomplete"]) == 1
    report = json.loads((experiment_file.parent / "small" / "report" / "report.json")
                        .read_text())
    assert [row["model"] for row in report["tables"][0]["rows"]] == ["A", "B"]
    # Equal fold scores: the paired t of (rounding-level) differences is undefined, not inf.
    assert report["tables"][0]["comparisons"]["macro_f1"][0]["t"] is None
    assert "taken with folds missing" in capsys.readouterr().err
    # The experiment folder holds each chosen fold's scores once (no copies): `ct5x report` on
    # it finds the same rows.
    assert main(["report", "--runs", str(experiment_file.parent / "small"), "--out",
                 str(tmp_path / "again"), "--num-folds", "3"]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["tables"][0]["rows"] == report["tables"][0]["rows"]
