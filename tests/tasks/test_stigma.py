"""Stigma: one CSV, three tasks, the dataset's own folds."""

import pytest

from ct5x.errors import UserInputError
from ct5x_tasks import stigma
from ct5x_tasks.family import Formatting
from ct5x_tasks.windows import TokenCounter

FAMILIES = {family.base: family for family in stigma.FAMILIES}


def test_each_task_reads_its_category(data_root):
    for family in FAMILIES.values():
        records = family.load(data_root / "stigma")
        assert len(records) == 40
        assert [sum(r.split == s for r in records) for s in ("train", "dev", "test")] == [24, 8, 8]
        assert all(r.fields["note_text"].endswith("\nsecond line") for r in records)
    adamant = FAMILIES["stigma_adamant"].load(data_root / "stigma")
    assert adamant[0].id == "row1" and adamant[0].fields["fold_eval"] == 0
    other = FAMILIES["stigma_other"].load(data_root / "stigma")
    assert other[0].id == "row81"


def test_prompts():
    record = stigma.parse_row({"split": "dev", "fold_eval": "2.0", "note_text": "Pt refused.",
                               "label": "negative", "keyword_category": "compliance"}, 7,
                              "compliance")
    assert record.fields["fold_eval"] == 2
    to_examples = FAMILIES["stigma_compliance"].to_examples
    t5 = to_examples([record], Formatting(False, False, False, 512, TokenCounter(None)))[0]
    flan = to_examples([record], Formatting(True, False, False, 512, TokenCounter(None)))[0]
    assert t5 == {"id": "row7", "inputs": "compliance: Pt refused.", "targets": "negative"}
    assert flan["inputs"] == ("Classify this sentence as negative, neutral or positive, regarding "
                              "the patient's compliance with medical advice: Pt refused.")


@pytest.mark.parametrize("cells, reason", [
    (["adamant", "train", "7", "text", "difficult"], "fold_eval outside"),
    (["adamant", "train", "1", "text", "negative"], "label outside"),
    (["adamant", "holdout", "1", "text", "difficult"], "split outside"),
    (["rude", "train", "1", "text", "difficult"], "keyword_category outside"),
    (["adamant", "train", "1", "text"], "expected 5 columns"),
])
def test_bad_rows(data_root, monkeypatch, cells, reason):
    path = data_root / "stigma" / "annotations.csv"
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    lines.insert(1, ",".join(cells))
    path.write_bytes("\r\n".join(lines).encode("utf-8"))
    with pytest.raises(UserInputError, match=rf"annotations\.csv:2: {reason}"):
        FAMILIES["stigma_adamant"].load(data_root / "stigma")
    monkeypatch.setenv("CT5X_ON_BAD_RECORD", "skip")
    assert len(FAMILIES["stigma_adamant"].load(data_root / "stigma")) == 40


def test_needs_exactly_one_csv(data_root):
    (data_root / "stigma" / "other.csv").write_text("x\n")
    with pytest.raises(UserInputError, match="exactly one .csv file, found 2"):
        FAMILIES["stigma_other"].load(data_root / "stigma")
