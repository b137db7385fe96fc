"""MedNLI reader and prompts."""


import pytest

from ct5x.errors import UserInputError
from ct5x_tasks import mednli
from ct5x_tasks.family import Formatting
from ct5x_tasks.windows import TokenCounter


def _formatting(flan, deid=False):
    return Formatting(flan, deid, True, 256, TokenCounter(None))


def test_reads_pairs_with_ids_and_premise_groups(data_root):
    records = mednli.load(data_root / "mednli")
    assert [sum(r.split == s for r in records) for s in ("train", "dev", "test")] == [24, 9, 6]
    assert records[0].id == "train:train-0"
    assert records[0].group == records[2].group != records[3].group


def study_input(sentence1: str, sentence2: str, flan: bool) -> str:
    """The study's rule: prompt with the stripped hypothesis, then "." if the prompt lacks it."""
    if flan:
        text = "Answer entailment, contradiction or neutral. Premise: " + sentence1 + \
            " Hypothesis: " + sentence2.strip()
    else:
        text = "mednli premise: " + sentence1 + " hypothesis: " + sentence2.strip()
    return text if text[-1] == "." else text + "."


@pytest.mark.parametrize("sentence1, sentence2", [
    ("Pt has fever", "Pt is febrile"),
    ("Pt has fever.", "  Pt is febrile.  "),
    ("\ufeffNo acute distress", "Patient is stable ."),
    ("BP 120/80", ""),
])
def test_prompts_as_the_study_builds_them(sentence1, sentence2):
    record = mednli.parse_pair(
        {"sentence1": sentence1, "sentence2": sentence2, "gold_label": "entailment"}, "train", 4)
    assert record.id == "train:4"
    for flan in (False, True):
        example = mednli.to_examples([record], _formatting(flan))[0]
        expected = study_input(sentence1.removeprefix("\ufeff"), sentence2, flan)
        assert example == {"id": "train:4", "inputs": expected, "targets": "entailment"}
    t5 = mednli.to_examples([record], _formatting(False))[0]["inputs"]
    assert t5.endswith(".") and "\ufeff" not in t5


def test_deid_variant_replaces_spans_in_the_whole_prompt():
    record = mednli.parse_pair({"sentence1": "Seen at [**Hospital1 18**] on [**2101-3-4**]",
                                "sentence2": "Seen by [**Doctor Last Name 3**]",
                                "gold_label": "neutral"}, "dev", 1)
    example = mednli.to_examples([record], _formatting(False, deid=True))[0]
    # The study joins the text around each replaced span with single spaces.
    assert example["inputs"] == ("mednli premise: Seen at  [Company]  on  2101-3-4  hypothesis: "
                                 "Seen by  [Name] .")


def test_anchor_switch_drops_over_length_examples_from_every_split():
    records = [mednli.parse_pair({"sentence1": " ".join(["w"] * n), "sentence2": "h",
                                  "gold_label": "neutral"}, "test", n) for n in (10, 20, 30)]
    # T5 prompt words: 'mednli premise:' (2) + n + 'hypothesis: h.' (2): 14, 24, 34 "tokens".
    kept = mednli.to_examples(records, Formatting(False, False, False, 26, TokenCounter(None),
                                                  split="test", anchor_compatible=True))
    assert [example["id"] for example in kept] == ["test:10", "test:20"]
    everything = mednli.to_examples(records, Formatting(False, False, False, 26,
                                                        TokenCounter(None), split="test"))
    assert len(everything) == 3


@pytest.mark.parametrize("line, reason", [
    ('{"sentence1": "a", "sentence2": "b"', "not valid JSON"),
    ('{"sentence1": "a", "gold_label": "neutral"}', "missing or non-str field 'sentence2'"),
    ('{"sentence1": "a", "sentence2": "b", "gold_label": "maybe"}', "gold_label outside"),
    ('["a", "b"]', "not a JSON object"),
])
def test_bad_records_name_file_and_line(data_root, monkeypatch, line, reason):
    path = data_root / "mednli" / "mli_dev_v1.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + [line] + lines[2:]) + "\n")
    with pytest.raises(UserInputError, match=rf"mli_dev_v1\.jsonl:3: {reason}"):
        mednli.load(data_root / "mednli")
    monkeypatch.setenv("CT5X_ON_BAD_RECORD", "skip")
    assert sum(r.split == "dev" for r in mednli.load(data_root / "mednli")) == 9


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserInputError, match=r"mli_train_v1\.jsonl: file not found"):
        mednli.load(tmp_path)


def test_unknown_policy_is_rejected(data_root, monkeypatch):
    monkeypatch.setenv("CT5X_ON_BAD_RECORD", "ignore")
    with pytest.raises(UserInputError, match="on_bad_record"):
        mednli.load(data_root / "mednli")
