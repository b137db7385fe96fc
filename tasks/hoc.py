"""Hallmarks of Cancer, two separate task families that are never mixed.

`hoc` (sentence level, BigBIO-style): `hoc/sentence/{train,dev,test}.jsonl`, one object per line
with `text`, `labels` (a list of label names from `labels.HOC_LABELS`; `[]` or `["none"]` for none)
and optional `id` and `document_id`. Sentences of one abstract share `document_id`, which is their
fold group; without it each sentence is its own group.

`hoc_blurb` (abstract level): `hoc/blurb/{train,dev,test}.tsv` in either layout:
- as SciFive and BLURB distribute it (`{train,dev,test}_blurb.tsv` renamed, or as is): no header,
  `text TAB ids` with the label ids joined by `|`; ids are `<split>:<line>`;
- with a header naming a text column (`sentence`, `text` or `abstract`), a label column (`labels`
  or `label`: ids joined by `,` or `|`) and optionally `index` or `id`.
Ids 0-9 are the hallmarks in alphabetical order (`labels.HOC_BLURB_IDS`), 10 is none and is never
combined with others. Each abstract is its own fold group.

Targets name the labels in the study's class order (`labels.HOC_LABELS`), joined by ", "; the
FLAN instruction lists the classes in that order too.
"""

import pathlib
from collections.abc import Sequence

from ct5x.errors import UserInputError
from ct5x_tasks.family import Family, Formatting, simple_examples
from ct5x_tasks.labels import HOC_BLURB_IDS, HOC_LABELS
from ct5x_tasks.records import (
    SOURCE_SPLITS,
    BadRecord,
    Record,
    bad_records,
    load_jsonl_splits,
    read_csv,
    read_tab_pairs,
    require_fields,
    require_file,
)

NONE_ID = len(HOC_BLURB_IDS)
_TEXT_COLUMNS = ("sentence", "text", "abstract")


def in_class_order(names: set[str]) -> tuple[str, ...]:
    """Label names in the study's class order."""
    return tuple(label for label in HOC_LABELS if label in names)


def sentence_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The sentence-level files, train first."""
    return [folder / "sentence" / f"{split}.jsonl" for split in SOURCE_SPLITS]


def blurb_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The BLURB abstract-level files, train first."""
    return [folder / "blurb" / f"{split}.tsv" for split in SOURCE_SPLITS]


def parse_sentence(obj: dict, split: str, line: int) -> Record:
    """One sentence with its label names."""
    require_fields(obj, ("text",))
    require_fields(obj, ("labels",), list)
    names = set(obj["labels"])
    if names == {"none"}:
        names = set()
    if not names <= set(HOC_LABELS):
        raise BadRecord("label outside the HoC label set")
    own_id = str(obj["id"]) if obj.get("id") not in (None, "") else str(line)
    record_id = f"{split}:{own_id}"
    document = obj.get("document_id")
    return Record(
        id=record_id,
        group=f"{split}:doc:{document}" if document not in (None, "") else record_id,
        split=split,
        fields={"text": obj["text"], "labels": in_class_order(names)},
    )


def load_sentences(folder: pathlib.Path) -> list[Record]:
    """All sentences of the three splits."""
    return load_jsonl_splits(sentence_files(folder), parse_sentence)


def parse_label_ids(text: str) -> tuple[str, ...]:
    """Label names, in class order, from BLURB ids joined by `|` or `,`."""
    try:
        ids = {int(part) for part in text.replace("|", ",").split(",") if part.strip()}
    except ValueError:
        raise BadRecord("label ids are not integers") from None
    if not ids or not ids <= set(range(NONE_ID + 1)):
        raise BadRecord(f"label ids outside 0-{NONE_ID}")
    if NONE_ID in ids and len(ids) > 1:
        raise BadRecord(f"label {NONE_ID} (none) combined with other labels")
    return in_class_order({HOC_BLURB_IDS[i] for i in ids if i != NONE_ID})


def _column(names: Sequence[str], choices: Sequence[str]) -> str | None:
    """The first of `choices` present in the header `names`."""
    return next((choice for choice in choices if choice in names), None)


def _blurb_record(split: str, own_id: str, text: str, labels: tuple[str, ...]) -> Record:
    record_id = f"{split}:{own_id}"
    return Record(id=record_id, group=record_id, split=split,
                  fields={"text": text, "labels": labels})


def _read_headerless(path: pathlib.Path, split: str) -> list[Record]:
    """SciFive's layout: `text TAB ids`, no header."""
    records = []
    with bad_records(path) as bad:
        for line, text, label_ids in read_tab_pairs(path, bad):
            try:
                labels = parse_label_ids(label_ids)
            except BadRecord as error:
                bad.report(line, str(error))
                continue
            records.append(_blurb_record(split, str(line), text, labels))
    return records


def _read_with_header(path: pathlib.Path, split: str, header: list[str]) -> list[Record]:
    """A TSV whose header names the text, label and (optionally) id columns."""
    text_column = _column(header, _TEXT_COLUMNS)
    label_column = _column(header, ("labels", "label"))
    id_column = _column(header, ("index", "id"))
    if label_column is None:
        raise UserInputError(f"{path}:1: header needs a text and a labels column")
    records = []
    with bad_records(path) as bad:
        for line, row in read_csv(path, bad, (text_column, label_column), delimiter="\t"):
            try:
                labels = parse_label_ids(row[label_column])
            except BadRecord as error:
                bad.report(line, str(error))
                continue
            own_id = row[id_column] if id_column and row[id_column] else str(line)
            records.append(_blurb_record(split, own_id, row[text_column], labels))
    return records


def load_blurb(folder: pathlib.Path) -> list[Record]:
    """All abstracts of the three BLURB TSV files; a file whose first line names a text column
    has a header, any other is SciFive's header-less layout."""
    records = []
    for split, path in zip(SOURCE_SPLITS, blurb_files(folder)):
        with require_file(path).open(encoding="utf-8") as stream:
            header = stream.readline().rstrip("\r\n").split("\t")
        if _column(header, _TEXT_COLUMNS) is None:
            records += _read_headerless(path, split)
        else:
            records += _read_with_header(path, split, header)
    return records


def prompt(text: str, flan: bool) -> str:
    """The study's T5 prefix or FLAN instruction (classes in the study's order)."""
    if flan:
        return (
            f"Sentence: {text} Assign the above sentence as zero or more of the following class "
            f"labels: {', '.join(HOC_LABELS)}."
        )
    return f"hoc: {text}"


def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
    """Target: label names in the study's class order joined by ', ' ('' for none)."""

    def make(record: Record) -> tuple[str, str]:
        return prompt(record.fields["text"], formatting.flan), ", ".join(record.fields["labels"])

    return simple_examples(records, make)


_LENGTHS = {"input_length": 256, "target_length": 64, "num_beams": 1}

FAMILIES = (
    Family(base="hoc", folder="hoc", load=load_sentences, source_files=sentence_files,
           to_examples=to_examples, **_LENGTHS),
    Family(base="hoc_blurb", folder="hoc", load=load_blurb, source_files=blurb_files,
           to_examples=to_examples, **_LENGTHS),
)
