"""Stigma: one CSV (keyword_category, split, fold_eval, note_text, label) for three tasks.

The folder holds exactly one `.csv` file. Each task keeps the rows of its keyword_category;
`split` is train/dev/test and `fold_eval` (0-4) is the dataset's own cross-validation fold: fold k
trains on the `train` rows whose fold_eval is not k and validates on the `dev` rows whose fold_eval
is k, as the study does (see `folds`). Record ids are `line<n>`, n the physical line on which the
row starts, so skipping a bad row moves no other id. A site (another hospital) is another folder in
the same format, with its own folds file.
"""

import pathlib
from collections.abc import Sequence

from ct5x.errors import UserInputError
from ct5x_tasks.family import Family, Formatting, simple_examples
from ct5x_tasks.labels import STIGMA_LABELS
from ct5x_tasks.naming import NUM_FOLDS, Variant
from ct5x_tasks.records import SOURCE_SPLITS, BadRecord, Record, bad_records, read_csv

COLUMNS = ("keyword_category", "split", "fold_eval", "note_text", "label")
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


def parse_row(row: dict[str, str], line: int, category: str, legacy_number: int = 0) -> Record:
    """One annotated note excerpt of `category`, starting on `line` of the file.

    `legacy_number` is the row's position among the well-formed rows, the id scheme (`row<n>`)
    of folds files written before ids became line numbers; those files stay readable.
    """
    split = row["split"].strip()
    if split not in SOURCE_SPLITS:
        raise BadRecord(f"split outside {SOURCE_SPLITS}")
    if row["label"] not in STIGMA_LABELS[category]:
        raise BadRecord(f"label outside {STIGMA_LABELS[category]}")
    fold = parse_fold(row["fold_eval"]) if split != "test" else None
    return Record(
        id=f"line{line}",
        group=f"line{line}",
        split=split,
        legacy_id=f"row{legacy_number}" if legacy_number else None,
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
                        records.append(parse_row(row, line, category, number))
                    except BadRecord as error:
                        bad.report(line, str(error))
        return records

    return load


# The study's FLAN instructions, character for character (note the serial comma).
INSTRUCTIONS = {
    "adamant": "Classify this sentence as difficult, disbelief, or exclude, regarding the "
    "credibility and obstinacy of the patient: ",
    "compliance": "Classify this sentence as negative, neutral, or positive, regarding the "
    "patient's compliance with medical advice: ",
    "other": "Classify this sentence as exclude, negative, neutral, or positive, regarding the "
    "patient's behavior and demeanor: ",
}


def prompt(category: str, text: str, flan: bool, study_test_input: bool = False) -> str:
    """The T5 prefix `<category>: ` or the FLAN instruction before the note text.

    `study_test_input` reproduces the study's test inputs: the instruction is put before every
    test note first, so T5 runs see prefix + instruction and FLAN runs the instruction twice.
    """
    if study_test_input:
        text = INSTRUCTIONS[category] + text
    return INSTRUCTIONS[category] + text if flan else f"{category}: {text}"


def example_maker(category: str):
    """The to_examples function of one category's task: target is the label word."""

    def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
        study_test_input = formatting.anchor_compatible and formatting.split == "test"

        def make(record: Record) -> tuple[str, str]:
            text = formatting.clean(record.fields["note_text"])
            inputs = prompt(category, text, formatting.flan, study_test_input)
            return inputs, record.fields["label"]

        return simple_examples(records, make)

    return to_examples


# The study tokenised FLAN Stigma labels with padding="max_length" (the tokenizer's
# model_max_length, 512) and left the pad id where -100 marks padding for the loss, so its FLAN
# runs averaged the loss over all 512 label positions, about 510 of them padding.
STUDY_FLAN_LABEL_LENGTH = 512


def study_loss_target_length(variant: Variant) -> int | None:
    """The label length the study's loss ran over, padding included: 512 for FLAN Stigma; None
    where its loss counted the real label tokens only (what ct5x always does by default)."""
    if variant.flan and variant.base in {f"stigma_{category}" for category in STIGMA_LABELS}:
        return STUDY_FLAN_LABEL_LENGTH
    return None


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
