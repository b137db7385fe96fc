"""Stigma: one CSV (keyword_category, split, fold_eval, note_text, label) for three tasks.

The folder holds exactly one `.csv` file. Each task keeps the rows of its keyword_category;
`split` is train/dev/test and `fold_eval` (0-4) is the dataset's own cross-validation fold, used as
the fold assignment of train+dev rows. Record ids are `row<n>`, n counting data rows from 1.
A site (another hospital) is another folder in the same format.
"""

import pathlib
from collections.abc import Sequence

from ct5x.errors import UserInputError
from ct5x_tasks.family import Family, Formatting, or_join, simple_examples
from ct5x_tasks.labels import STIGMA_ASPECTS, STIGMA_LABELS
from ct5x_tasks.records import SOURCE_SPLITS, BadRecord, Record, bad_records, read_csv

COLUMNS = ("keyword_category", "split", "fold_eval", "note_text", "label")
NUM_FOLDS = 5
SITES = ("ood",)


def source_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The folder's one CSV file."""
    found = sorted(folder.glob("*.csv"))
    if len(found) != 1:
        raise UserInputError(f"{folder}: expected exactly one .csv file, found {len(found)}")
    return found


def parse_fold(text: str) -> int:
    """fold_eval as an int in 0-4 ('3' or '3.0')."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value.is_integer() or not 0 <= value < NUM_FOLDS:
        raise BadRecord(f"fold_eval outside 0-{NUM_FOLDS - 1}")
    return int(value)


def parse_row(row: dict[str, str], number: int, category: str) -> Record:
    """One annotated note excerpt of `category`."""
    split = row["split"].strip()
    if split not in SOURCE_SPLITS:
        raise BadRecord(f"split outside {SOURCE_SPLITS}")
    if row["label"] not in STIGMA_LABELS[category]:
        raise BadRecord(f"label outside {STIGMA_LABELS[category]}")
    fold = parse_fold(row["fold_eval"]) if split != "test" else None
    return Record(
        id=f"row{number}",
        group=f"row{number}",
        split=split,
        fields={
            "note_text": row["note_text"],
            "label": row["label"],
            "fold_eval": fold,
        },
    )


def loader(category: str):
    """The load function of one category's task."""

    def load(folder: pathlib.Path) -> list[Record]:
        (path,) = source_files(folder)
        records = []
        with bad_records(path) as bad:
            for number, (line, row) in enumerate(read_csv(path, bad, COLUMNS), start=1):
                if row["keyword_category"].strip() not in STIGMA_LABELS:
                    bad.report(line, f"keyword_category outside {tuple(STIGMA_LABELS)}")
                elif row["keyword_category"].strip() == category:
                    try:
                        records.append(parse_row(row, number, category))
                    except BadRecord as error:
                        bad.report(line, str(error))
        return records

    return load


def prompt(category: str, text: str, flan: bool) -> str:
    """SPEC §4's T5 prefix or FLAN instruction (the same for every split)."""
    if flan:
        return (
            f"Classify this sentence as {or_join(STIGMA_LABELS[category])}, regarding "
            f"{STIGMA_ASPECTS[category]}: {text}"
        )
    return f"{category}: {text}"


def example_maker(category: str):
    """The to_examples function of one category's task: target is the label word."""

    def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
        def make(record: Record) -> tuple[str, str]:
            text = formatting.clean(record.fields["note_text"])
            return prompt(category, text, formatting.flan), record.fields["label"]

        return simple_examples(records, make)

    return to_examples


FAMILIES = tuple(
    Family(
        base=f"stigma_{category}",
        folder="stigma",
        input_length=512,
        target_length=20,
        num_beams=3,
        load=loader(category),
        source_files=source_files,
        to_examples=example_maker(category),
        mimic=True,
        fractions=(0.01, 0.05, 0.25),
        sites=SITES,
        fixed_fold_field="fold_eval",
    )
    for category in STIGMA_LABELS
)
