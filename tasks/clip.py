"""CLIP: `sentence_level.csv` (doc_id, sentence, labels) and `{train,val,test}_ids.csv`.

`sentence` is a Python-literal list of tokens, `labels` a Python-literal list of `I-<label>`
strings (an empty list for none). The id files list one document id per line (an optional first
line `doc_id`/`id`/`note_id` is a header). Sentences of documents in no id file are counted and
logged. The input is the sentence after a window of its document: the window holds the sentence
and grows evenly around it (whole words) until `clip: {window} ; {sentence}` reaches 256 tokens
with EOS. FLAN runs wrap that same text, as the study does: `Context: clip: {window} ;
{sentence}. Label the above sentence ... Options: {labels}`, within 512 tokens.
"""

import ast
import collections
import csv
import logging
import pathlib
from collections.abc import Sequence

from ct5x.errors import UserInputError
from ct5x_tasks.family import Family, Formatting
from ct5x_tasks.labels import CLIP_LABELS
from ct5x_tasks.records import BadRecord, Record, bad_records, read_csv, require_file
from ct5x_tasks.windows import centered_window

logger = logging.getLogger(__name__)

ID_FILES = {"train": "train_ids.csv", "dev": "val_ids.csv", "test": "test_ids.csv"}
_ID_HEADERS = {"doc_id", "id", "note_id", "row_id", "hadm_id"}


def source_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The sentence file, then the three id files."""
    return [folder / "sentence_level.csv", *(folder / name for name in ID_FILES.values())]


def read_doc_splits(folder: pathlib.Path) -> dict[str, str]:
    """doc_id -> source split, from the three id files."""
    split_of: dict[str, str] = {}
    for split, name in ID_FILES.items():
        path = require_file(folder / name)
        with path.open(encoding="utf-8", newline="") as stream:
            for number, row in enumerate(csv.reader(stream), start=1):
                if not row or not row[0].strip():
                    continue
                doc_id = row[0].strip()
                if number == 1 and doc_id.lower() in _ID_HEADERS:
                    continue
                if split_of.setdefault(doc_id, split) != split:
                    raise UserInputError(f"{path}:{number}: document also listed in another split")
    return split_of


def parse_list(text: str, column: str) -> list[str]:
    """A Python-literal list of strings, as the CSV stores tokens and labels."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise BadRecord(f"column {column!r} is not a list literal") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise BadRecord(f"column {column!r} is not a list of strings")
    return list(value)


def parse_labels(text: str) -> tuple[str, ...]:
    """Sorted unique label names from `I-<label>` strings; anything else is a bad record."""
    names = set()
    for tag in parse_list(text, "labels"):
        name = tag[2:] if tag.startswith("I-") else None
        if name not in CLIP_LABELS:
            raise BadRecord("label outside the CLIP label set")
        names.add(name)
    return tuple(sorted(names))


def load(folder: pathlib.Path) -> list[Record]:
    """All sentences of documents listed in an id file; each knows its whole document."""
    split_of = read_doc_splits(folder)
    path = folder / "sentence_level.csv"
    documents: dict[str, list[str]] = collections.defaultdict(list)
    records, unlisted = [], 0
    with bad_records(path) as bad:
        for line, row in read_csv(path, bad, ("doc_id", "sentence", "labels")):
            try:
                tokens = parse_list(row["sentence"], "sentence")
                labels = parse_labels(row["labels"])
            except BadRecord as error:
                bad.report(line, str(error))
                continue
            doc_id = row["doc_id"].strip()
            if doc_id not in split_of:
                unlisted += 1
                continue
            sentences = documents[doc_id]
            fields = {"sentences": sentences, "index": len(sentences), "labels": labels}
            sentences.append(" ".join(tokens))
            records.append(
                Record(id=f"{doc_id}:{fields['index']}", group=doc_id, split=split_of[doc_id],
                       fields=fields)
            )
    if unlisted:
        logger.warning("%s: %d sentences belong to documents in no id file", path, unlisted)
    return records


FLAN_INSTRUCTION = (
    ". Label the above sentence as an empty string or as one or more of the following options, "
    "delimited by comma: Options: " + ", ".join(CLIP_LABELS)
)


def prompt(window: str, sentence: str, flan: bool) -> str:
    """The study's input: `clip: ` prefix, and for FLAN that text inside the instruction."""
    text = f"clip: {window} ; {sentence}"
    return f"Context: {text}{FLAN_INSTRUCTION}" if flan else text


class _Document:
    """One document's words and their token costs, priced once for all of its sentences."""

    def __init__(self, sentences: Sequence[str], formatting: Formatting):
        self.sentences = [formatting.clean(sentence).split() for sentence in sentences]
        self.words = [word for sentence in self.sentences for word in sentence]
        self.costs = formatting.counter.words(self.words)
        self.starts = [0]
        for sentence in self.sentences:
            self.starts.append(self.starts[-1] + len(sentence))

    def window(self, index: int, budget: int) -> str:
        """The sentence's window of whole words within `budget` tokens."""
        lo, hi = centered_window(self.costs, self.starts[index], self.starts[index + 1], budget)
        return " ".join(self.words[lo:hi])


def window_length(formatting: Formatting) -> int:
    """Tokens (EOS included) for `clip: {window} ; {sentence}`: the T5 input length, or half the
    FLAN input length (the study sizes FLAN's window for 256 tokens and allows 512)."""
    return formatting.input_length // 2 if formatting.flan else formatting.input_length


def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
    """Window of the document ; sentence -> sorted labels joined by ', ' ('' for none)."""
    documents: dict[int, _Document] = {}
    examples, over = [], 0
    budget = window_length(formatting) - 1
    for record in records:
        sentences = record.fields["sentences"]
        document = documents.get(id(sentences))
        if document is None:
            try:
                document = documents[id(sentences)] = _Document(sentences, formatting)
            except UserInputError as error:
                raise UserInputError(f"record {record.id}: {error}") from None
        index = record.fields["index"]
        sentence = " ".join(document.sentences[index])
        overhead = formatting.counter.text(prompt("", sentence, flan=False))
        window = document.window(index, budget - overhead)
        over += formatting.counter.text(prompt(window, sentence, flan=False)) > budget
        examples.append(
            {"id": record.id, "inputs": prompt(window, sentence, formatting.flan),
             "targets": ", ".join(record.fields["labels"])}
        )
    if over:
        logger.info("clip: %d sentences exceed the input alone; they are truncated", over)
    return examples


FAMILY = Family(
    base="clip",
    folder="clip",
    input_length=256,
    flan_input_length=512,
    target_length=64,
    num_beams=5,
    load=load,
    source_files=source_files,
    to_examples=to_examples,
    mimic=True,
)
