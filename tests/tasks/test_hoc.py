"""HoC: sentence-level JSONL and BLURB abstract TSV, two separate tasks."""

import pytest

from ct5x.errors import UserInputError
from ct5x_tasks import hoc
from ct5x_tasks.family import Formatting
from ct5x_tasks.labels import HOC_LABELS
from ct5x_tasks.windows import TokenCounter

FORMAT = Formatting(False, False, True, 256, TokenCounter(None))


def test_sentence_level(data_root):
    records = hoc.load_sentences(data_root / "hoc")
    assert [sum(r.split == s for r in records) for s in ("train", "dev", "test")] == [20, 8, 6]
    assert records[0].id == "train:s0" and records[0].group == records[1].group == "train:doc:d0"
    assert records[0].fields["labels"] == () and records[1].fields["labels"] == (HOC_LABELS[1],)
    examples = hoc.to_examples(records[:2], FORMAT)
    assert examples[0]["targets"] == "" and examples[1]["targets"] == HOC_LABELS[1]
    assert examples[0]["inputs"] == "hoc: " + records[0].fields["text"]


def test_blurb_ids_map_alphabetically_and_ten_is_none(data_root):
    records = hoc.load_blurb(data_root / "hoc")
    assert records[0].id == "train:a0" and records[0].group == "train:a0"
    assert records[0].fields["labels"] == ()
    assert records[1].fields["labels"] == (HOC_LABELS[1], HOC_LABELS[4])
    assert hoc.parse_label_ids("9,0") == (HOC_LABELS[0], HOC_LABELS[9])
    flan = hoc.to_examples(records[1:2], Formatting(True, False, True, 256, TokenCounter(None)))
    assert flan[0]["inputs"].endswith(f"class labels: {', '.join(HOC_LABELS)}.")
    assert flan[0]["targets"] == "avoiding immune destruction, evading growth suppressors"


@pytest.mark.parametrize("labels, reason", [("11", "outside 0-10"), ("10,2", "combined"),
                                            ("x", "not integers"), ("", "outside")])
def test_bad_blurb_labels(data_root, labels, reason):
    path = data_root / "hoc" / "blurb" / "test.tsv"
    path.write_text(path.read_text() + f"z1\tsome text\t{labels}\n")
    with pytest.raises(UserInputError, match=rf"test\.tsv:8: .*{reason}"):
        hoc.load_blurb(data_root / "hoc")


def test_bad_sentence_labels(data_root, monkeypatch):
    path = data_root / "hoc" / "sentence" / "dev.jsonl"
    path.write_text(path.read_text() + '{"text": "t", "labels": ["hallmark x"]}\n')
    with pytest.raises(UserInputError, match=r"dev\.jsonl:9: label outside"):
        hoc.load_sentences(data_root / "hoc")
    monkeypatch.setenv("CT5X_ON_BAD_RECORD", "skip")
    assert len(hoc.load_sentences(data_root / "hoc")) == 34


def test_blurb_header_is_required(data_root):
    (data_root / "hoc" / "blurb" / "dev.tsv").write_text("a\tb\nx\ty\n")
    with pytest.raises(UserInputError, match=r"dev\.tsv:1: header needs"):
        hoc.load_blurb(data_root / "hoc")
