"""The task-side subcommands as a user runs them: `ct5x tasks`, `ct5x folds`, `ct5x metrics`."""

import json

from data_paths import real_data

from ct5x.cli import main


def test_tasks_lists_every_base_task_and_its_variants(capsys):
    assert main(["tasks"]) == 0
    names = capsys.readouterr().out.split()
    assert names == sorted(names)
    for name in ("mednli", "radqa", "clip", "stigma_adamant", "hoc", "hoc_blurb",
                 "ncbi_disease", "bc5cdr_disease", "ncbi_disease_flan_fold0", "paper_main"):
        assert name in names


def test_folds_then_metrics_on_real_ncbi_data(tmp_path, capsys):
    data_dir = real_data("NCBI_disease").parent
    assert main(["folds", "--task", "ncbi_disease", "--data-dir", str(data_dir),
                 "--out", str(tmp_path)]) == 0
    folds = json.loads((tmp_path / "folds.json").read_text())
    assert folds["task"] == "ncbi_disease" and len(folds["folds"]) == 5
    assert len(folds["test"]) == 940

    target = "The disease* adenomatous polyposis coli *disease protein ."
    lines = [{"target": target, "prediction": target},
             {"target": target, "prediction": "The adenomatous polyposis coli protein ."}]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()
    assert main(["metrics", "--task", "ncbi_disease_fold0", "--predictions",
                 str(predictions)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["precision"] == 1.0 and metrics["recall"] == 0.5


def test_metrics_names_the_bad_line(tmp_path, capsys):
    predictions = tmp_path / "p.jsonl"
    good = json.dumps({"target": "neutral", "prediction": "neutral"})
    predictions.write_text(good + "\n" + json.dumps({"target": "neutral"}) + "\n")
    capsys.readouterr()
    assert main(["metrics", "--task", "mednli", "--predictions", str(predictions)]) == 2
    assert f"{predictions}:2" in capsys.readouterr().err
