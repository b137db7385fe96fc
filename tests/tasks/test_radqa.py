"""RadQA reader and long-context rule: the question stays, training windows hold the answer."""

import json

import pytest

from ct5x.errors import UserInputError
from ct5x_tasks import radqa
from ct5x_tasks.family import Formatting
from ct5x_tasks.windows import TokenCounter


def _formatting(training, length=1024, flan=False, deid=False):
    return Formatting(flan, deid, training, length, TokenCounter(None))


def test_reads_questions_grouped_by_report(data_root):
    records = radqa.load(data_root / "radqa")
    assert [sum(r.split == s for r in records) for s in ("train", "dev", "test")] == [24, 12, 8]
    first = records[0]
    assert first.id == "train:q0-0" and first.group == "train:report0"
    assert {r.group for r in records[:4]} == {"train:report0"}
    examples = radqa.to_examples(records[:2], _formatting(True))
    assert examples[0]["targets"] == "ANSWER0x0" and examples[0]["answers"] == ["ANSWER0x0"]
    assert examples[1]["targets"] == "" and examples[1]["answers"] == []
    assert examples[0]["inputs"].startswith("question: what is the finding ? context: ")


def test_training_window_keeps_question_and_answer(data_root, caplog):
    records = radqa.load(data_root / "radqa")
    answerable = [r for r in records if r.fields["answer"] and r.split == "train"]
    with caplog.at_level("INFO"):
        examples = radqa.to_examples(answerable, _formatting(True, length=40))
    for record, example in zip(answerable, examples):
        assert example["inputs"].startswith("question: what is the finding ? context: ")
        assert example["targets"] in example["inputs"].split(" context: ", 1)[1]
        assert len(example["inputs"].split()) <= 39
        assert len(example["inputs"]) < len(record.fields["context"])
    assert f"{len(answerable)} of {len(answerable)} contexts cut" in caplog.text
    assert "ANSWER" not in caplog.text


def test_evaluation_keeps_the_beginning_and_counts_lost_answers(data_root, caplog):
    records = [r for r in radqa.load(data_root / "radqa") if r.split == "test"]
    with caplog.at_level("INFO"):
        examples = radqa.to_examples(records, _formatting(False, length=40, flan=True))
    for record, example in zip(records, examples):
        context = example["inputs"].split("Context: ", 1)[1].split(" Question: ")[0]
        assert record.fields["context"].startswith(context)
        assert " Question: what is the finding ?" in example["inputs"] or "fracture" in \
            example["inputs"]
        assert len(example["inputs"].split()) <= 39
    answerable = sum(r.fields["answer"] is not None for r in records)
    assert f"{len(records)} of {len(records)} contexts cut" in caplog.text
    assert f"{answerable} gold answers fall outside" in caplog.text


def test_deid_moves_the_answer_span():
    qa = {"id": "x", "question": "who ?", "is_impossible": False,
          "answers": [{"text": "Dr [**Last Name 4**]", "answer_start": 24}]}
    context = "Seen [**2101-1-1**] by   Dr [**Last Name 4**] today"
    record = radqa.parse_question(qa, context, "train", "g")
    example = radqa.to_examples([record], _formatting(True, deid=True))[0]
    # The study joins the text around each replaced span with single spaces.
    assert example["targets"] == "Dr  [Name]" and example["answers"] == ["Dr  [Name]"]
    assert example["inputs"] == "question: who ? context: Seen  2101-1-1  by   Dr  [Name]  today"


def test_deid_answer_inside_a_span_is_kept_as_its_text():
    qa = {"id": "x", "question": "who ?", "answers": [{"text": "Last Name", "answer_start": 11}]}
    record = radqa.parse_question(qa, "Seen by [**Last Name 4**] today", "train", "g")
    example = radqa.to_examples([record], _formatting(True, deid=True))[0]
    assert example["targets"] == "Last Name"
    assert example["inputs"] == "question: who ? context: Seen by  [Name]  today"


def _study_inputs(question: str, context: str, answer: str, training: bool):
    """The study's `preprocess_squad_batch` then, for training only, `replace_list_of_notes` on
    the whole input (`--replace_text_with_tags`); its labels are the answer as written."""
    from ct5x_tasks.deid import deidentify

    text = f"question: {question.lstrip()} context: {context.lstrip()}"
    return (deidentify(text) if training else text), answer


def test_anchor_deid_converts_training_inputs_only_as_the_study():
    qa = {"id": "x", "question": "who is [**Name 3**] ?", "is_impossible": False,
          "answers": [{"text": "Dr [**Last Name 4**]", "answer_start": 24}]}
    context = "Seen [**2101-1-1**] by   Dr [**Last Name 4**] today"
    for training in (True, False):
        record = radqa.parse_question(qa, context, "train" if training else "test", "g")
        formatting = Formatting(False, True, training, 1024, TokenCounter(None),
                                anchor_compatible=True)
        example = radqa.to_examples([record], formatting)[0]
        inputs, target = _study_inputs(qa["question"], context, "Dr [**Last Name 4**]",
                                       training)
        assert (example["inputs"], example["targets"]) == (inputs, target)
    assert "[Name]" in _study_inputs(qa["question"], context, "", True)[0]


@pytest.mark.parametrize("question, context", [("what is seen?", "Lungs clear. No effusion."),
                                               ("  any mass ?", "   No mass .")])
def test_prompts_as_the_study_builds_them(question, context):
    qa = {"id": "q", "question": question, "answers": [], "is_impossible": True}
    record = radqa.parse_question(qa, context, "test", "g")
    t5, flan = (radqa.to_examples([record], _formatting(False, flan=f))[0] for f in (False, True))
    assert t5["inputs"] == f"question: {question.lstrip()} context: {context.lstrip()}"
    assert flan["inputs"] == (
        f"Context: {context.lstrip()} Question: {question.lstrip()} If no answer is found in the "
        "context, do not reply; otherwise, give an answer from the context: ")
    assert t5["targets"] == flan["targets"] == ""


def test_answer_found_when_offset_is_wrong_and_missing_answer_is_bad():
    qa = {"id": "x", "question": "q", "answers": [{"text": "lung", "answer_start": 0}]}
    assert radqa.parse_question(qa, "clear lung", "dev", "g").fields["answer"] == (6, 10)
    qa["answers"][0]["text"] = "heart"
    with pytest.raises(radqa.BadRecord, match="not found"):
        radqa.parse_question(qa, "clear lung", "dev", "g")


def test_bad_entries_are_located(data_root, monkeypatch):
    path = data_root / "radqa" / "dev.json"
    document = json.loads(path.read_text())
    del document["data"][1]["paragraphs"][0]["qas"][1]["question"]
    path.write_text(json.dumps(document))
    with pytest.raises(UserInputError, match=r"dev\.json:data\[1\]\.paragraphs\[0\]\.qas\[1\]: "
                                             r"missing or non-str field 'question'"):
        radqa.load(data_root / "radqa")
    monkeypatch.setenv("CT5X_ON_BAD_RECORD", "skip")
    assert sum(r.split == "dev" for r in radqa.load(data_root / "radqa")) == 11
    path.write_text('{"data": [\n  {"paragraphs": ]}')
    monkeypatch.delenv("CT5X_ON_BAD_RECORD")
    with pytest.raises(UserInputError, match=r"dev\.json:2: not valid JSON"):
        radqa.load(data_root / "radqa")
