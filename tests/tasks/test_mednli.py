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


def test_prompts_follow_the_spec():
    record = mednli.parse_pair(
        {"sentence1": "Pt has fever", "sentence2": "Pt is febrile", "gold_label": "entailment"},
        "train", 4)
    assert record.id == "train:4"
    t5, flan = (mednli.to_examples([record], _formatting(f))[0] for f in (False, True))
    assert t5 == {"id": "train:4", "inputs": "mednli premise: Pt has fever hypothesis: Pt is "
                  "febrile.", "targets": "entailment"}
    assert flan["inputs"] == ("Answer entailment, contradiction or neutral. Premise: Pt has fever "
                              "Hypothesis: Pt is febrile")


def test_deid_variant_replaces_spans():
    record = mednli.parse_pair({"sentence1": "Seen at [**Hospital1 18**] on [**2101-3-4**]",
                                "sentence2": "Seen.", "gold_label": "neutral"}, "dev", 1)
    example = mednli.to_examples([record], _formatting(False, deid=True))[0]
    assert example["inputs"] == "mednli premise: Seen at [Hospital] on [Date] hypothesis: Seen."


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
