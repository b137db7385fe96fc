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
import bisect
import collections
import csv
import itertools
import logging
import pathlib
from collections.abc import Callable, Sequence

from ct5x import storage
from ct5x.errors import UserInputError
from ct5x_tasks.family import Family, Formatting
from ct5x_tasks.labels import CLIP_LABELS
from ct5x_tasks.records import BadRecord, Record, bad_records, read_csv, require_file
from ct5x_tasks.windows import TokenCounter, centered_window

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
        with storage.open_text(path, newline="") as stream:
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


def parse_label_list(text: str) -> tuple[str, ...]:
    """Sorted label names from `I-<label>` strings, repeats kept (the study's targets keep
    them); anything else is a bad record."""
    names = []
    for tag in parse_list(text, "labels"):
        name = tag[2:] if tag.startswith("I-") else None
        if name not in CLIP_LABELS:
            raise BadRecord("label outside the CLIP label set")
        names.append(name)
    return tuple(sorted(names))


def parse_labels(text: str) -> tuple[str, ...]:
    """Sorted unique label names from `I-<label>` strings; anything else is a bad record."""
    return tuple(sorted(set(parse_label_list(text))))


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
                label_list = parse_label_list(row["labels"])
            except BadRecord as error:
                bad.report(line, str(error))
                continue
            doc_id = row["doc_id"].strip()
            if doc_id not in split_of:
                unlisted += 1
                continue
            sentences = documents[doc_id]
            fields = {"sentences": sentences, "index": len(sentences),
                      "labels": tuple(sorted(set(label_list))), "label_list": label_list}
            sentences.append(" ".join(tokens))
            records.append(
                Record(id=f"{doc_id}:{fields['index']}", group=doc_id, split=split_of[doc_id],
                       fields=fields)
            )
    if unlisted:
        logger.warning("%s: %d sentences belong to documents in no id file", path, unlisted)
    return records


# The study truncated T5 inputs at its max_seq_length + 2 tokens (EOS included), FLAN inputs at
# twice max_seq_length (512, the FLAN input length).
STUDY_T5_INPUT_LENGTH = 258

FLAN_INSTRUCTION = (
    ". Label the above sentence as an empty string or as one or more of the following options, "
    "delimited by comma: Options: " + ", ".join(CLIP_LABELS)
)


def clip_text(window: str, sentence: str) -> str:
    """The study's text: `clip: ` prefix, the window, ` ; `, the sentence."""
    return f"clip: {window} ; {sentence}"


def flan_input(text: str) -> str:
    """The study's FLAN input around a CLIP text."""
    return f"Context: {text}{FLAN_INSTRUCTION}"


def prompt(window: str, sentence: str, flan: bool) -> str:
    """The study's input: `clip: ` prefix, and for FLAN that text inside the instruction."""
    text = clip_text(window, sentence)
    return flan_input(text) if flan else text


class _Document:
    """One document's words and their token costs, priced once for all of its sentences."""

    def __init__(self, sentences: Sequence[str], clean: Callable[[str], str],
                 counter: TokenCounter):
        self.sentences = [clean(sentence).split() for sentence in sentences]
        self.words = [word for sentence in self.sentences for word in sentence]
        self.costs = counter.words(self.words)
        self.starts = [0]
        for sentence in self.sentences:
            self.starts.append(self.starts[-1] + len(sentence))

    def window(self, index: int, budget: int) -> str:
        """The sentence's window of whole words within `budget` tokens."""
        lo, hi = centered_window(self.costs, self.starts[index], self.starts[index + 1], budget)
        return " ".join(self.words[lo:hi])

    def study_parts(self, index: int, length: int) -> tuple[str, str]:
        """(window, sentence) as the study's `split_into_chunks` cuts them for `length` (256).

        The study tokenises the document with EOS, whose character offsets are (0, 0), and
        slices the text between token offsets. The sentence spans its tokens up to the next
        sentence's first token (the last sentence: up to and including EOS) and is cut to
        length / 2 - 2 tokens; the window takes (length - 2 * sentence - 2) / 2 tokens on each
        side, shifted when it meets the start (its far end then unbounded) or the end. A slice
        that ends on EOS is text[a:0], empty: so the window of every sentence near the end, and
        the last sentence itself unless cut, come out empty. Tokens are counted per word and
        mapped back to whole words.
        """
        prefix = [0, *itertools.accumulate(self.costs)]
        eos = prefix[-1]  # EOS's token index; the document has eos + 1 tokens

        def words_of(first_token: int, last_token: int) -> str:
            if last_token == eos:
                return ""
            lo = bisect.bisect_right(prefix, first_token) - 1
            hi = bisect.bisect_right(prefix, last_token)
            return " ".join(self.words[lo:hi])

        start = prefix[self.starts[index]]
        last_sentence = index == len(self.sentences) - 1
        end = eos + 1 if last_sentence else prefix[self.starts[index + 1]]
        if end - start + 2 > length / 2:
            end = start + int(length / 2 - 2)
        side = int((length - (2 * (end - start) + 2)) / 2)
        lo, hi = max(start - side, 0), min(end + side, eos + 1)
        if start - lo != side:
            hi = end + (2 * side - (start - lo))
        elif hi - end != side:
            lo = start - (2 * side - (hi - end))
        window = range(eos + 1)[lo:hi]  # a negative start counts from the end, as it did
        return words_of(window[0], window[-1]), words_of(start, end - 1)


def window_length(formatting: Formatting) -> int:
    """Tokens (EOS included) for `clip: {window} ; {sentence}`: the T5 input length, or half the
    FLAN input length (the study sizes FLAN's window for 256 tokens and allows 512)."""
    return formatting.input_length // 2 if formatting.flan else formatting.input_length


def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
    """Window of the document ; sentence -> sorted labels joined by ', ' ('' for none).

    With the anchor switch, the window and sentence are cut as the study cut them
    (`_Document.study_parts`) from the raw document, the de-identification (for `_deid`) is
    applied to the whole `clip: ...` text after that, and targets keep repeated labels.
    """
    anchor = formatting.anchor_compatible
    documents: dict[int, _Document] = {}
    examples, over = [], 0
    length = window_length(formatting)
    for record in records:
        sentences = record.fields["sentences"]
        document = documents.get(id(sentences))
        if document is None:
            clean = (lambda text: text) if anchor else formatting.clean
            try:
                document = documents[id(sentences)] = _Document(sentences, clean,
                                                                formatting.counter)
            except UserInputError as error:
                raise UserInputError(f"record {record.id}: {error}") from None
        index = record.fields["index"]
        if anchor:
            window, sentence = document.study_parts(index, length)
            try:
                text = formatting.clean(clip_text(window, sentence))
            except UserInputError as error:
                raise UserInputError(f"record {record.id}: {error}") from None
            labels = record.fields.get("label_list", record.fields["labels"])
        else:
            sentence = " ".join(document.sentences[index])
            overhead = formatting.counter.text(clip_text("", sentence))
            window = document.window(index, length - 1 - overhead)
            text = clip_text(window, sentence)
            over += formatting.counter.text(text) > length - 1
            labels = record.fields["labels"]
        examples.append(
            {"id": record.id, "inputs": flan_input(text) if formatting.flan else text,
             "targets": ", ".join(labels)}
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
