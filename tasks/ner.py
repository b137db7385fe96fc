"""Disease NER (NCBI-disease, BC5CDR-disease) in SciFive/BLURB TSV: `{train,dev,test}_blurb.tsv`.

Each line is `input TAB target`, no header; quotes are literal text, so lines are split on the tab
rather than parsed as CSV. The target is the input with mentions wrapped `disease* ... *disease`;
a line whose target, markers removed, is not its input is a bad record. Ids are `<split>:<line>`.
"""

import pathlib
from collections.abc import Sequence

from ct5x_tasks.family import Family, Formatting, simple_examples
from ct5x_tasks.records import SOURCE_SPLITS, Record, bad_records, read_tab_pairs

OPEN_MARK = "disease*"
CLOSE_MARK = "*disease"


def source_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The three distributed files, train first."""
    return [folder / f"{split}_blurb.tsv" for split in SOURCE_SPLITS]


def strip_markers(target: str) -> str:
    """The target's words without the mention markers (a lone `*` is text, not a marker)."""
    return " ".join(word for word in target.split() if word not in (OPEN_MARK, CLOSE_MARK))


def load(folder: pathlib.Path) -> list[Record]:
    """All sentences of the three splits; each is its own fold group."""
    records = []
    for split, path in zip(SOURCE_SPLITS, source_files(folder)):
        with bad_records(path) as bad:
            for line, sentence, target in read_tab_pairs(path, bad):
                if strip_markers(target) != " ".join(sentence.split()):
                    bad.report(line, "target without its markers differs from the input")
                    continue
                record_id = f"{split}:{line}"
                records.append(
                    Record(id=record_id, group=record_id, split=split,
                           fields={"sentence": sentence, "target": target})
                )
    return records


def example_maker(prefix: str):
    """The to_examples function of one corpus: T5 prefix or the shared FLAN instruction."""

    def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
        def make(record: Record) -> tuple[str, str]:
            sentence = record.fields["sentence"]
            if formatting.flan:  # the study's instruction, its final space included
                inputs = f"Sentence: {sentence} Identify and label disease terms in the sentence: "
            else:
                inputs = f"{prefix}: {sentence}"
            return inputs, record.fields["target"]

        return simple_examples(records, make)

    return to_examples


FAMILIES = tuple(
    Family(
        base=base,
        folder=folder,
        input_length=512,
        target_length=512,
        num_beams=1,
        load=load,
        source_files=source_files,
        to_examples=example_maker(prefix),
    )
    for base, folder, prefix in (
        ("ncbi_disease", "NCBI_disease", "ncbi_ner"),
        ("bc5cdr_disease", "BC5CDR_disease", "bc5cdr_disease_ner"),
    )
)
