"""EVALUATE_AFTER_TRAINING: `ct5x train` scores the test split in its own process, writing what
`ct5x evaluate --runs MODEL_DIR` writes; a scoring failure exits 2 with one line, and several
processes are refused before training."""

import json
import shutil

from training_run import REFERENCE_MACROS, gin_flags

from ct5x import multihost, train
from ct5x.evaluation import EvaluationSettings, evaluate_runs

EVALUATE = {**REFERENCE_MACROS, "EVALUATE_AFTER_TRAINING": True}


def _copy(reference_dir, destination):
    shutil.copytree(reference_dir, destination)
    return destination


def test_training_then_scoring_in_one_process_writes_what_ct5x_evaluate_writes(
        reference_run, synthetic_inputs, tmp_path, capsys):
    reference_dir, record = reference_run
    trained = _copy(reference_dir, tmp_path / "trained")
    # As run.json stood before the final evaluation: training runs it, then the test split.
    stale = {**record, "latest_step": 12, "finished": False, "best_step": None,
             "best_metric": None}
    (trained / "run.json").write_text(json.dumps(stale))
    assert not (trained / "metrics.json").exists()
    assert train.main(gin_flags(trained, *synthetic_inputs, **EVALUATE)) == 0
    said = capsys.readouterr().out
    assert "test split: f1 " in said and str(trained / "metrics.json") in said

    separate = _copy(reference_dir, tmp_path / "separate")
    shutil.copyfile(trained / "run.json", separate / "run.json")
    assert evaluate_runs(separate, EvaluationSettings(force=True), show_progress=False).scored
    for name in ("predictions.jsonl", "metrics.json"):
        assert (trained / name).read_text() == (separate / name).read_text(), name
    scored = json.loads((trained / "metrics.json").read_text())
    assert scored["checkpoint_step"] == json.loads((trained / "run.json").read_text())[
        "best_step"]
    assert scored["split"] == "test" and scored["n_examples"] > 0

    # Run again: training has finished and the test split is scored; both are left as they are.
    before = (trained / "metrics.json").stat().st_mtime_ns
    assert train.main(gin_flags(trained, *synthetic_inputs, **EVALUATE)) == 0
    assert "already finished" in capsys.readouterr().out
    assert (trained / "metrics.json").stat().st_mtime_ns == before


def test_a_scoring_failure_exits_2_naming_it(reference_run, synthetic_inputs, tmp_path,
                                            capsys):
    reference_dir, record = reference_run
    moved = _copy(reference_dir, tmp_path / "moved")
    record = {**record, "data_settings": {**record["data_settings"],
                                          "data_dir": str(tmp_path / "gone")}}
    (moved / "run.json").write_text(json.dumps(record))
    assert train.main(gin_flags(moved, *synthetic_inputs, **EVALUATE)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith(f"ct5x train: error: scoring the test split: {moved}: ")
    assert not (moved / "metrics.json").exists()


def test_several_processes_are_refused_before_training(synthetic_inputs, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setattr(multihost, "is_multiprocess", lambda: True)
    monkeypatch.setattr(multihost, "stop_every_process", lambda code, message: None)
    model_dir = tmp_path / "run"
    assert train.main(gin_flags(model_dir, *synthetic_inputs, **EVALUATE)) == 2
    assert "EVALUATE_AFTER_TRAINING=True scores in one process" in capsys.readouterr().err
    assert not model_dir.exists()
