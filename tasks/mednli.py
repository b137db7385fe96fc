"""MedNLI: `mli_{train,dev,test}_v1.jsonl` with sentence1, sentence2, gold_label, pairID."""

import pathlib
from collections.abc import Sequence

from ct5x_tasks.family import Family, Formatting, or_join, simple_examples
from ct5x_tasks.labels import MEDNLI_LABELS
from ct5x_tasks.records import (
    SOURCE_SPLITS,
    BadRecord,
    Record,
    load_jsonl_splits,
    require_fields,
)


def source_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The three distributed files, train first."""
    return [folder / f"mli_{split}_v1.jsonl" for split in SOURCE_SPLITS]


def parse_pair(obj: dict, split: str, line: int) -> Record:
    """One MedNLI pair; grouped by premise so a premise never sits on both sides of a fold."""
    require_fields(obj, ("sentence1", "sentence2", "gold_label"))
    if obj["gold_label"] not in MEDNLI_LABELS:
        raise BadRecord(f"gold_label outside {MEDNLI_LABELS}")
    pair_id = obj.get("pairID")
    own_id = pair_id if isinstance(pair_id, str) and pair_id else str(line)
    return Record(
        id=f"{split}:{own_id}",
        group=obj["sentence1"],
        split=split,
        fields={key: obj[key] for key in ("sentence1", "sentence2", "gold_label")},
    )


def load(folder: pathlib.Path) -> list[Record]:
    """All pairs of the three splits."""
    return load_jsonl_splits(source_files(folder), parse_pair)


def prompt(premise: str, hypothesis: str, flan: bool) -> str:
    """SPEC §4's T5 prefix (hypothesis ends with a period) or FLAN instruction."""
    if flan:
        return f"Answer {or_join(MEDNLI_LABELS)}. Premise: {premise} Hypothesis: {hypothesis}"
    hypothesis = hypothesis.rstrip()
    if not hypothesis.endswith("."):
        hypothesis += "."
    return f"mednli premise: {premise} hypothesis: {hypothesis}"


def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
    """Input per the prompt style; target is the label word."""

    def make(record: Record) -> tuple[str, str]:
        premise = formatting.clean(record.fields["sentence1"])
        hypothesis = formatting.clean(record.fields["sentence2"])
        return prompt(premise, hypothesis, formatting.flan), record.fields["gold_label"]

    return simple_examples(records, make)


FAMILY = Family(
    base="mednli",
    folder="mednli",
    input_length=256,
    target_length=20,
    num_beams=3,
    load=load,
    source_files=source_files,
    to_examples=to_examples,
    mimic=True,
    fractions=(0.01,),
)
