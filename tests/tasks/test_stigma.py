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
    # Each note spans two physical lines; ids are the line where the row starts.
    assert [r.id for r in adamant[:3]] == ["line2", "line4", "line6"]
    assert adamant[0].legacy_id == "row1" and adamant[0].fields["fold_eval"] == 0
    other = FAMILIES["stigma_other"].load(data_root / "stigma")
    assert other[0].id == "line162" and other[0].legacy_id == "row81"


# The study's instructions, spelled out here as its code writes them (serial comma).
STUDY_INSTRUCTIONS = {
    "adamant": "Classify this sentence as difficult, disbelief, or exclude, regarding the "
               "credibility and obstinacy of the patient: ",
    "compliance": "Classify this sentence as negative, neutral, or positive, regarding the "
                  "patient's compliance with medical advice: ",
    "other": "Classify this sentence as exclude, negative, neutral, or positive, regarding the "
             "patient's behavior and demeanor: ",
}


@pytest.mark.parametrize("category", ["adamant", "compliance", "other"])
@pytest.mark.parametrize("anchor", [False, True])
def test_prompts_as_the_study_builds_them(category, anchor):
    label = stigma.STIGMA_LABELS[category][0]
    note = "Pt refused , stating he  knows best."
    to_examples = FAMILIES[f"stigma_{category}"].to_examples
    for split in ("train", "validation", "test"):
        record = stigma.parse_row({"split": "dev", "fold_eval": "2.0", "note_text": note,
                                   "label": label, "keyword_category": category}, 7, category)
        # The study adds the instruction to every test note before prompting (anchor only).
        text = STUDY_INSTRUCTIONS[category] + note if anchor and split == "test" else note
        for flan, expected in ((False, category + ": " + text),
                               (True, STUDY_INSTRUCTIONS[category] + text)):
            formatting = Formatting(flan, False, split == "train", 512, TokenCounter(None),
                                    split=split, anchor_compatible=anchor)
            example = to_examples([record], formatting)[0]
            assert example == {"id": "line7", "inputs": expected, "targets": label}
    assert record.fields["fold_eval"] == 2


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
    skipped = [r.id for r in FAMILIES["stigma_adamant"].load(data_root / "stigma")]
    assert len(skipped) == 40
    # Ids do not depend on which rows were skipped: a valid row of another category there instead
    # leaves every adamant id the same.
    lines[1] = "compliance,train,1,text,negative"
    path.write_bytes("\r\n".join(lines).encode("utf-8"))
    assert [r.id for r in FAMILIES["stigma_adamant"].load(data_root / "stigma")] == skipped


def test_needs_exactly_one_csv(data_root):
    (data_root / "stigma" / "other.csv").write_text("x\n")
    with pytest.raises(UserInputError, match="exactly one .csv file, found 2"):
        FAMILIES["stigma_other"].load(data_root / "stigma")
