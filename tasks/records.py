"""Records read from the distributed files, and the rule for malformed ones.

A malformed record (broken JSON, a missing field, a label outside the label set, a wrong number of
columns) raises `UserInputError` naming file:line, unless the bad-record policy is 'skip': then it
is left out, counted, and the count (never the text) is logged when the file is done.
"""

import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ct5x import storage
from ct5x.errors import UserInputError
from ct5x_tasks import task_settings

logger = logging.getLogger(__name__)

# The distributed files' own split names, in the order the folds merge them.
SOURCE_SPLITS = ("train", "dev", "test")

# Clinical notes can hold long fields; csv's default 128 KiB field limit is too small for some.
csv.field_size_limit(1 << 30)


@dataclasses.dataclass(frozen=True)
class Record:
    """One example as distributed: a stable id, its group for the folds, its source split.

    `legacy_id` is the id an older ct5x gave the record, where it differs (Stigma), so that
    folds files written then still select the same records.
    """

    id: str
    group: str
    split: str
    fields: Mapping[str, Any]
    legacy_id: str | None = None


class BadRecord(Exception):
    """Raised by a parser for one malformed record; `BadRecords` decides what happens next."""


class BadRecords:
    """Counts malformed records of one file, or raises at the first one under policy 'raise'."""

    def __init__(self, path: pathlib.Path, skip: bool):
        self.path = path
        self.skip = skip
        self.count = 0

    def report(self, where: int | str, reason: str) -> None:
        """Raise `UserInputError` naming path:where, or count the record when skipping."""
        if not self.skip:
            raise UserInputError(f"{self.path}:{where}: {reason}")
        self.count += 1


@contextlib.contextmanager
def bad_records(path: pathlib.Path) -> Iterator[BadRecords]:
    """A `BadRecords` for `path` under the configured policy; logs the skipped count at the end."""
    tracker = BadRecords(path, task_settings.skip_bad_records())
    yield tracker
    if tracker.count:
        logger.warning("%s: skipped %d malformed records", path, tracker.count)


def require_file(path: pathlib.Path) -> pathlib.Path:
    """`path`, or a `UserInputError` naming it when it does not exist."""
    if not path.is_file():
        raise UserInputError(f"{path}: file not found")
    return path


def read_lines(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) for each non-blank line."""
    with storage.open_text(require_file(path), newline="") as stream:
        for number, line in enumerate(stream, start=1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


def read_tab_pairs(path: pathlib.Path, bad: BadRecords) -> Iterator[tuple[int, str, str]]:
    """(line number, first, second) per header-less `first TAB second` line; any other number of
    columns is a bad record. Split on the tab, not parsed as CSV: quotes are literal text."""
    for number, line in read_lines(path):
        cells = line.split("\t")
        if len(cells) != 2:
            bad.report(number, f"expected 2 tab-separated columns, found {len(cells)}")
            continue
        yield number, cells[0], cells[1]


def read_jsonl(path: pathlib.Path, bad: BadRecords) -> Iterator[tuple[int, dict]]:
    """(line number, JSON object) per line; unparsable lines and non-objects are bad records."""
    for number, line in read_lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            bad.report(number, f"not valid JSON ({error.msg})")
            continue
        if not isinstance(value, dict):
            bad.report(number, "not a JSON object")
            continue
        yield number, value


def load_jsonl_splits(
    paths: Sequence[pathlib.Path], parse: Callable[[dict, str, int], Record]
) -> list[Record]:
    """Records of one JSONL file per source split; `parse(obj, split, line)` raises BadRecord."""
    records = []
    for split, path in zip(SOURCE_SPLITS, paths):
        with bad_records(path) as bad:
            for line, obj in read_jsonl(path, bad):
                try:
                    records.append(parse(obj, split, line))
                except BadRecord as error:
                    bad.report(line, str(error))
    return records


class _LineCounter:
    """Iterates a text stream's lines, remembering the number of the last line handed out."""

    def __init__(self, stream):
        self._stream = stream
        self.number = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._stream)
        self.number += 1
        return line


def read_csv(
    path: pathlib.Path, bad: BadRecords, required: Sequence[str], delimiter: str = ","
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) per data row of a CSV/TSV with a header that has the `required` columns.

    Rows with more or fewer cells than the header are bad records. The line number is the
    physical line on which the row starts (quoted fields may span lines), so it names the row
    whatever happens to the rows before it.
    """
    with storage.open_text(require_file(path), newline="") as stream:
        lines = _LineCounter(stream)
        reader = csv.reader(lines, delimiter=delimiter)
        header = next(reader, [])
        missing = [column for column in required if column not in header]
        if missing:
            raise UserInputError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
        while True:
            start = lines.number + 1
            cells = next(reader, None)
            if cells is None:
                return
            if not cells:
                continue
            if len(cells) != len(header):
                bad.report(start, f"expected {len(header)} columns")
                continue
            yield start, dict(zip(header, cells))


def require_fields(obj: Mapping[str, Any], names: Sequence[str], kind: type = str) -> None:
    """Raise `BadRecord` unless every name is present with a value of `kind`."""
    for name in names:
        if not isinstance(obj.get(name), kind):
            raise BadRecord(f"missing or non-{kind.__name__} field {name!r}")


def sha256_of_files(paths: Sequence[pathlib.Path]) -> str:
    """One digest over the files' names and bytes, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode("utf-8") + b"\0")
        with require_file(path).open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
