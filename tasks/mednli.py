"""MedNLI: `mli_{train,dev,test}_v1.jsonl` with sentence1, sentence2, gold_label, pairID."""

import logging
import pathlib
from collections.abc import Sequence

from ct5x_tasks.family import Family, Formatting, simple_examples
from ct5x_tasks.labels import MEDNLI_LABELS
from ct5x_tasks.records import (
    SOURCE_SPLITS,
    BadRecord,
    Record,
    load_jsonl_splits,
    require_fields,
)

logger = logging.getLogger(__name__)


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
    """The study's prompt: hypothesis stripped, and "." appended to the whole prompt (T5 and
    FLAN) unless it already ends with one. A leading byte-order mark is dropped, as the study's
    utf-8-sig decoding does."""
    premise, hypothesis = premise.removeprefix("\ufeff"), hypothesis.removeprefix("\ufeff")
    if flan:
        text = f"Answer entailment, contradiction or neutral. Premise: {premise} Hypothesis: "
    else:
        text = f"mednli premise: {premise} hypothesis: "
    text += hypothesis.strip()
    return text if text.endswith(".") else text + "."


def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
    """Input per the prompt style, de-identified as a whole; target is the label word.

    With the anchor switch on, examples whose input exceeds the input length less 2 tokens are
    dropped from every split, as the study did (test included); otherwise nothing is dropped.
    """

    def make(record: Record) -> tuple[str, str]:
        inputs = prompt(record.fields["sentence1"], record.fields["sentence2"], formatting.flan)
        return formatting.clean(inputs), record.fields["gold_label"]

    examples = simple_examples(records, make)
    if not formatting.anchor_compatible:
        return examples
    limit = formatting.input_length - 2
    kept = [example for example in examples if formatting.counter.text(example["inputs"]) <= limit]
    if len(kept) < len(examples):
        logger.warning("mednli (anchor-compatible): dropped %d of %d %s examples longer than %d "
                       "tokens", len(examples) - len(kept), len(examples), formatting.split, limit)
    return kept


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
