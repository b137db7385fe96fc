"""HoC: sentence-level JSONL and BLURB abstract TSV, two separate tasks."""

import pytest

from ct5x.errors import UserInputError
from ct5x_tasks import hoc
from ct5x_tasks.family import Formatting
from ct5x_tasks.labels import HOC_LABELS
from ct5x_tasks.windows import TokenCounter

FORMAT = Formatting(False, False, True, 256, TokenCounter(None))


# The study's class lists, written out: targets name labels in this order, and FLAN lists them.
STUDY_CLASS_ORDER = [
    "evading growth suppressors", "tumor promoting inflammation",
    "enabling replicative immortality", "cellular energetics", "resisting cell death",
    "activating invasion and metastasis", "genomic instability and mutation",
    "inducing angiogenesis", "sustaining proliferative signaling", "avoiding immune destruction",
]
# SciFive's ids: the hallmarks in alphabetical order, 10 = none.
SCIFIVE_IDS = sorted(STUDY_CLASS_ORDER)


def test_sentence_level(data_root):
    records = hoc.load_sentences(data_root / "hoc")
    assert [sum(r.split == s for r in records) for s in ("train", "dev", "test")] == [20, 8, 6]
    assert records[0].id == "train:s0" and records[0].group == records[1].group == "train:doc:d0"
    assert records[0].fields["labels"] == () and records[1].fields["labels"] == (HOC_LABELS[1],)
    examples = hoc.to_examples(records[:2], FORMAT)
    assert examples[0]["targets"] == "" and examples[1]["targets"] == HOC_LABELS[1]
    assert examples[0]["inputs"] == "hoc: " + records[0].fields["text"]


@pytest.mark.parametrize("ids", ["0|4|8", "5|7", "2", "9|0", "10", "3|1|6"])
def test_prompts_and_targets_as_the_study_builds_them(ids):
    names = [] if ids == "10" else [SCIFIVE_IDS[int(i)] for i in ids.split("|")]
    target = ", ".join(name for name in STUDY_CLASS_ORDER if name in names)
    record = hoc.Record("test:1", "test:1", "test",
                        {"text": "Some abstract .", "labels": hoc.parse_label_ids(ids)})
    t5, flan = (hoc.to_examples([record], Formatting(f, False, False, 256, TokenCounter(None)))[0]
                for f in (False, True))
    assert t5 == {"id": "test:1", "inputs": "hoc: Some abstract .", "targets": target}
    assert flan["inputs"] == (
        "Sentence: Some abstract . Assign the above sentence as zero or more of the following "
        "class labels: " + ", ".join(STUDY_CLASS_ORDER) + ".")
    assert flan["targets"] == target


def test_blurb_with_header_maps_ids_alphabetically_and_ten_is_none(data_root):
    records = hoc.load_blurb(data_root / "hoc")
    assert records[0].id == "train:a0" and records[0].group == "train:a0"
    assert records[0].fields["labels"] == ()
    assert set(records[1].fields["labels"]) == {SCIFIVE_IDS[1], SCIFIVE_IDS[4]}


def test_blurb_as_scifive_distributes_it(data_root):
    """No header, `text TAB ids` with ids joined by '|' (SciFive's HoC/*_blurb.tsv)."""
    folder = data_root / "hoc" / "blurb"
    rows = {"train": ["First abstract .\t0|4|8", "Second \" quoted \" one .\t10"],
            "dev": ["Third .\t5|7"], "test": ["Fourth .\t2", "Fifth .\t7|9"]}
    for split, lines in rows.items():
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    records = hoc.load_blurb(data_root / "hoc")
    assert [r.id for r in records] == ["train:1", "train:2", "dev:1", "test:1", "test:2"]
    assert records[1].fields == {"text": 'Second " quoted " one .', "labels": ()}
    assert records[0].fields["labels"] == ("evading growth suppressors",
                                           "activating invasion and metastasis",
                                           "sustaining proliferative signaling")
    (folder / "dev.tsv").write_text("Third .\t5|11\n")
    with pytest.raises(UserInputError, match=r"dev\.tsv:1: label ids outside 0-10"):
        hoc.load_blurb(data_root / "hoc")
    (folder / "dev.tsv").write_text("Third .\t5|7\nA stray\ttab\t2\n")
    expected = r"dev\.tsv:2: expected 2 tab-separated columns, found 3"
    with pytest.raises(UserInputError, match=expected):
        hoc.load_blurb(data_root / "hoc")


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


def test_header_without_a_label_column_is_refused(data_root):
    (data_root / "hoc" / "blurb" / "dev.tsv").write_text("sentence\tb\nx\ty\n")
    with pytest.raises(UserInputError, match=r"dev\.tsv:1: header needs"):
        hoc.load_blurb(data_root / "hoc")
