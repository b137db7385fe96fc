"""A user's own dataset as a task, through gin bindings or a few lines of Python."""

import gin
import pytest
import seqio

import ct5x_tasks
from ct5x.errors import UserInputError
from tests.tasks.conftest import write_csv, write_jsonl


def _jsonl_dataset(folder):
    for split, count in (("train", 6), ("dev", 2), ("test", 3)):
        write_jsonl(folder / f"{split}.jsonl", [
            {"note": f"note {split} {i}", "answer": ["yes", "no"][i % 2], "key": i}
            for i in range(count)
        ])


def test_gin_bound_custom_task(tmp_path, monkeypatch, vocabulary):
    _jsonl_dataset(tmp_path / "custom")
    monkeypatch.setenv("CT5X_DATA_DIR", str(tmp_path))
    with gin.unlock_config():
        gin.parse_config([
            "ct5x_tasks.custom_task_settings.input_field = 'note'",
            "ct5x_tasks.custom_task_settings.target_field = 'answer'",
            "ct5x_tasks.custom_task_settings.id_field = 'key'",
            "ct5x_tasks.custom_task_settings.prefix = 'triage: '",
        ])
    try:
        task = seqio.get_mixture_or_task("custom")
        examples = list(task.get_dataset(None, split="test", shuffle=False).as_numpy_iterator())
        assert [e["id"].decode() for e in examples] == ["test:0", "test:1", "test:2"]
        assert examples[1]["inputs_pretokenized"].decode() == "triage: note test 1"
        assert examples[1]["targets_pretokenized"].decode() == "no"
        with pytest.raises(UserInputError, match="score_as"):
            task.postprocess_fn("yes")
        with gin.unlock_config():
            gin.bind_parameter("ct5x_tasks.custom_task_settings.score_as", "stigma_compliance")
        assert task.metric_fns[0](["negative", "neutral"], ["negative", "negative"])["accuracy"] \
            == pytest.approx(0.5)
    finally:
        gin.clear_config()


def test_registered_csv_task_with_folds(tmp_path, monkeypatch, vocabulary):
    folder = tmp_path / "my_notes"
    for split, count in (("train", 8), ("dev", 4), ("test", 2)):
        write_csv(folder / f"{split}.csv", ["text", "label", "patient"],
                  [[f"text {i}", "neutral", f"p{i // 2}"] for i in range(count)])
    settings = ct5x_tasks.CustomTaskSettings(
        file_format="csv", input_field="text", target_field="label", group_field="patient",
        score_as="mednli")
    ct5x_tasks.register_custom_task("my_notes", settings)
    assert "my_notes_fold4" in ct5x_tasks.task_names()
    monkeypatch.setenv("CT5X_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CT5X_FOLDS_DIR", str(tmp_path / "folds"))
    ct5x_tasks.write_folds("my_notes", str(folder), str(tmp_path / "folds" / "my_notes"))
    task = seqio.get_mixture_or_task("my_notes_fold0")
    ids = [e["id"].decode() for e in task.get_dataset(None, split="validation",
                                                      shuffle=False).as_numpy_iterator()]
    assert ids and len(ids) % 2 == 0  # patients (pairs of rows) are never split
    (folder / "dev.csv").write_text("text,label\nonly,neutral\n")
    with pytest.raises(UserInputError, match=r"dev\.csv:2: missing or non-scalar field 'patient'"):
        ct5x_tasks.write_folds("my_notes", str(folder), str(tmp_path / "again"))
