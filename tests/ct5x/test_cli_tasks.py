"""The task-side subcommands as a user runs them: `ct5x tasks`, `ct5x folds`, `ct5x metrics`."""

import argparse
import json

import pytest
from data_paths import real_data

from ct5x import task_commands
from ct5x.cli import main
from ct5x.errors import UserInputError
from ct5x_tasks import metrics
from tests.tasks.conftest import make_mednli
from tests.tasks.test_metrics import SAMPLES


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


def test_folds_writes_the_fractions_asked_for(tmp_path, capsys):
    make_mednli(tmp_path / "mednli")
    assert main(["folds", "--task", "mednli", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "out"), "--seed", "5", "--fractions", "0.2,0.4"]) == 0
    content = json.loads((tmp_path / "out" / "folds.json").read_text())
    assert content["seed"] == 5 and set(content["folds"][0]["fractions"]) == {"0.2", "0.4"}
    assert "folds.json" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["folds", "--task", "x", "--data-dir", "d", "--out", "o", "--fractions", "a"])


def test_metrics_names_the_bad_line(tmp_path, capsys):
    predictions = tmp_path / "p.jsonl"
    good = json.dumps({"target": "neutral", "prediction": "neutral"})
    predictions.write_text(good + "\n" + json.dumps({"target": "neutral"}) + "\n")
    capsys.readouterr()
    assert main(["metrics", "--task", "mednli", "--predictions", str(predictions)]) == 2
    assert f"{predictions}:2" in capsys.readouterr().err


def _run_cli(tmp_path, lines: list[str], *flags: str) -> tuple[int, dict]:
    path = tmp_path / "predictions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    parser = argparse.ArgumentParser()
    task_commands.register_command(parser.add_subparsers())
    args = parser.parse_args(["metrics", "--predictions", str(path), *flags])
    return args.run(args), path


def test_cli_prints_one_json_object(tmp_path, capsys):
    targets, predictions = SAMPLES["hoc"]
    lines = [json.dumps({"target": t, "prediction": p, "id": i}) for i, (t, p) in
             enumerate(zip(targets, predictions))]
    code, _ = _run_cli(tmp_path, lines + [""], "--task", "hoc_flan_fold1", "--anchor-compatible")
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "hoc"
    assert printed["examples"] == 2
    assert printed["selection_metric"] == "f1"
    assert printed["anchor_compatible"] is True
    expected = metrics.compute_metrics("hoc", targets, predictions, anchor_compatible=True)
    assert {key: printed[key] for key in expected} == pytest.approx(expected)


def test_cli_reads_the_anchor_switch_when_not_given(tmp_path, capsys, monkeypatch):
    lines = [json.dumps({"target": "difficult", "prediction": p}) for p in ("difficult", "x")]
    monkeypatch.setenv("CT5X_ANCHOR_COMPATIBLE", "yes")
    assert _run_cli(tmp_path, lines, "--task", "stigma_adamant")[0] == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["anchor_compatible"] is True
    assert printed["macro_f1"] == pytest.approx(2 / 3 / 2)
    monkeypatch.delenv("CT5X_ANCHOR_COMPATIBLE")
    assert _run_cli(tmp_path, lines, "--task", "stigma_adamant")[0] == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["anchor_compatible"] is False
    assert printed["macro_f1"] == pytest.approx(2 / 3 / 3)


def test_cli_accepts_answer_lists_for_radqa(tmp_path, capsys):
    line = json.dumps({"target": ["left lobe", "lobe"], "prediction": "lobe"})
    assert _run_cli(tmp_path, [line], "--task", "radqa")[0] == 0
    assert json.loads(capsys.readouterr().out)["exact_match"] == 1.0


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("{not json", "not valid JSON"),
        ('{"target": "entailment"}', '"prediction" field'),
        ('["entailment", "neutral"]', '"target"'),
        ('{"target": 3, "prediction": "neutral"}', "must be strings"),
        ('{"target": ["neutral"], "prediction": "neutral"}', "must be strings"),
        ('{"target": "banana", "prediction": "neutral"}', "not one of the mednli labels"),
    ],
)
def test_cli_names_file_and_line_of_a_bad_line(tmp_path, bad_line, message):
    good = json.dumps({"target": "neutral", "prediction": "neutral"})
    with pytest.raises(UserInputError, match=message) as raised:
        _run_cli(tmp_path, [good, bad_line, good], "--task", "mednli")
    assert str(raised.value).startswith(f"{tmp_path / 'predictions.jsonl'}:2:")
    assert "banana" not in str(raised.value)


def test_cli_rejects_empty_and_missing_files(tmp_path):
    with pytest.raises(UserInputError, match="no prediction lines"):
        _run_cli(tmp_path, [""], "--task", "mednli")
    parser = argparse.ArgumentParser()
    task_commands.register_command(parser.add_subparsers())
    args = parser.parse_args(["metrics", "--task", "mednli", "--predictions",
                              str(tmp_path / "absent.jsonl")])
    with pytest.raises(UserInputError, match="absent.jsonl"):
        args.run(args)
