"""`ct5x evaluate` scores a run as run.json says it was trained: the selection metric and the
scoring its record names (never its task name), and its recorded anchor mode for the test set,
the decoding length and the metrics, whatever gin or a flag holds."""

import json
import pathlib

import gin
import pytest
from run_records import run_record, write_run_record

import ct5x_tasks
from ct5x.checkpoints import load_checkpoint, save_t5x
from ct5x.cli import main
from ct5x.evaluation.collect import find_metrics_files, group_tables, read_scores
from ct5x.evaluation.report_numbers import metric_order
from ct5x.run_record import BestMetric, DataLocations
from ct5x_tasks.catalog import Selection
from tests.tasks.conftest import make_radqa, write_jsonl

DATA_GIN = pathlib.Path(__file__).parents[3] / "gin" / "tasks" / "data.gin"
# A user's question-answering data, scored as RadQA (task name unlike any paper task's).
QA_TASK = "evaluation_notes_qa"


def _save_run(directory, hf_dir, data_dir, step, **fields):
    save_t5x(load_checkpoint(hf_dir), directory, step=step)
    write_run_record(directory, run_record(
        latest_step=step, best_step=step, data_settings=DataLocations(data_dir=str(data_dir)),
        vocabulary=str(directory / "spiece.model"), **fields))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, make_hf_t5):
    root = tmp_path_factory.mktemp("as_trained")
    data = root / "data"
    for split, count in (("train", 4), ("dev", 2), ("test", 3)):
        write_jsonl(data / QA_TASK / f"{split}.jsonl", [
            {"input": f"question {i}: where is it? context: left lobe", "target": "left lobe"}
            for i in range(count)])
    ct5x_tasks.register_custom_task(QA_TASK, ct5x_tasks.CustomTaskSettings(
        score_as="radqa", input_length=32, target_length=8))
    make_radqa(data / "radqa")
    ct5x_tasks.write_folds("radqa", str(data), str(data / "radqa" / "folds" / "radqa"))
    hf_dir = make_hf_t5(seed=7)
    _save_run(root / "qa", hf_dir, data, 3, task=QA_TASK, variant=ct5x_tasks.Variant(QA_TASK),
              scored_as="radqa", selection=Selection("f1"), best_metric=BestMetric("f1", 0.2),
              task_feature_lengths={"inputs": 32, "targets": 8})
    _save_run(root / "anchor", hf_dir, data, 2, task="radqa_fold0",
              variant=ct5x_tasks.Variant("radqa", fold=0), scored_as="radqa",
              selection=Selection("f1"), best_metric=BestMetric("f1", 0.3),
              task_feature_lengths={"inputs": 64, "targets": 30}, anchor_compatible=True)
    return root


def test_a_users_task_scored_as_radqa_reports_f1_as_its_headline(runs):
    assert main(["evaluate", "--runs", str(runs / "qa"), "--no-progress"]) == 0
    record = json.loads((runs / "qa" / "metrics.json").read_text())
    assert (record["selection_metric"], record["scored_as"]) == ("f1", "radqa")
    assert set(record["metrics"]) == {"f1", "exact_match"} and record["n_examples"] == 3
    scores, problems = read_scores(find_metrics_files(runs / "qa"))
    (table,), left_out = group_tables(scores)
    assert not problems and not left_out
    assert table.selection_metric == "f1" and metric_order(table) == ["f1", "exact_match"]


def test_the_recorded_anchor_mode_is_used_and_gin_is_left_alone(runs, monkeypatch, capsys):
    """Evaluation applies the run's mode as a `ct5x_tasks.settings` block: a gin config saying
    otherwise neither wins nor is cleared (ct5x 0.1 re-parsed gin and lost the switch)."""
    monkeypatch.delenv("CT5X_ANCHOR_COMPATIBLE", raising=False)
    gin.parse_config_files_and_bindings([str(DATA_GIN)], ["ANCHOR_COMPATIBLE = False"])
    assert main(["evaluate", "--runs", str(runs / "anchor"), "--no-progress"]) == 0
    record = json.loads((runs / "anchor" / "metrics.json").read_text())
    assert record["anchor_compatible"] is True
    assert record["decoding"]["max_decode_length"] == 19  # the study's cap, as trained
    assert gin.query_parameter("%ANCHOR_COMPATIBLE") is False
    # Asking for another mode than the run's is an error naming both.
    monkeypatch.setenv("CT5X_ANCHOR_COMPATIBLE", "0")
    capsys.readouterr()
    assert main(["evaluate", "--runs", str(runs / "anchor"), "--force", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "anchor_compatible=true" in error and "CT5X_ANCHOR_COMPATIBLE asks for false" in error
    monkeypatch.delenv("CT5X_ANCHOR_COMPATIBLE")
    assert main(["evaluate", "--runs", str(runs / "qa"), "--force", "--anchor-compatible",
                 "--no-progress"]) == 2
    assert "anchor_compatible=false, but --anchor-compatible asks for true" in \
        capsys.readouterr().err


def test_a_bug_while_scoring_is_an_internal_error_with_its_traceback(runs, monkeypatch, capsys):
    import ct5x_tasks.metrics

    def broken(*args, **kwargs):
        return {"f1": 1 / 0}

    monkeypatch.setattr(ct5x_tasks.metrics, "compute_metrics", broken)
    capsys.readouterr()
    assert main(["evaluate", "--runs", str(runs / "qa"), "--force", "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "internal error" in error and "ZeroDivisionError: division by zero" in error
    assert "Traceback" not in error
    assert main(["--verbose", "evaluate", "--runs", str(runs / "qa"), "--force",
                 "--no-progress"]) == 1
    assert "Traceback" in capsys.readouterr().err
