"""A user's own dataset: `{train,dev,test}.jsonl` or `.csv` with an input and a target field.

Which fields are input, target, id and group is a binding (`ct5x_tasks.custom_task_settings` in
gin, or `ct5x_tasks.settings(custom_task=...)`), or the `CustomTaskSettings` given to
`registration.register_custom_task`. Without an id field, ids are
`<split>:<line>`; without a group field, each example is its own fold group.
"""

import pathlib
from collections.abc import Callable, Sequence

from ct5x_tasks.family import Family, Formatting, simple_examples
from ct5x_tasks.records import (
    SOURCE_SPLITS,
    BadRecord,
    Record,
    bad_records,
    read_csv,
    read_jsonl,
)
from ct5x_tasks.task_settings import CustomTaskSettings

_SCALARS = (str, int, float)


def _text(row: dict, field: str) -> str:
    """A field's value as text; missing or structured values are bad records."""
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, _SCALARS):
        raise BadRecord(f"missing or non-scalar field {field!r}")
    return str(value)


def parse_row(row: dict, split: str, line: int, config: CustomTaskSettings) -> Record:
    """One example: its input, target, id and group."""
    fields = {"input": _text(row, config.input_field), "target": _text(row, config.target_field)}
    own_id = _text(row, config.id_field) if config.id_field else str(line)
    record_id = f"{split}:{own_id}"
    group = f"{split}:{_text(row, config.group_field)}" if config.group_field else record_id
    return Record(id=record_id, group=group, split=split, fields=fields)


def custom_family(base: str, config: Callable[[], CustomTaskSettings],
                  flan_prompt: bool = True) -> Family:
    """A family for base task `base` whose settings `config()` gives when data is read or scored;
    `flan_prompt` False registers no `_flan` variants."""

    def source_files(folder: pathlib.Path) -> list[pathlib.Path]:
        return [folder / f"{split}.{config().file_format}" for split in SOURCE_SPLITS]

    def load(folder: pathlib.Path) -> list[Record]:
        settings = config()
        records = []
        for split, path in zip(SOURCE_SPLITS, source_files(folder)):
            with bad_records(path) as bad:
                if settings.file_format == "jsonl":
                    rows = read_jsonl(path, bad)
                else:
                    rows = read_csv(path, bad, (settings.input_field, settings.target_field))
                for line, row in rows:
                    try:
                        records.append(parse_row(row, split, line, settings))
                    except BadRecord as error:
                        bad.report(line, str(error))
        return records

    def to_examples(records: Sequence[Record], formatting: Formatting) -> list[dict[str, str]]:
        prefix = config().prefix

        def make(record: Record) -> tuple[str, str]:
            return prefix + formatting.clean(record.fields["input"]), record.fields["target"]

        return simple_examples(records, make)

    defaults = CustomTaskSettings()
    return Family(
        base=base,
        folder=base,
        input_length=defaults.input_length,
        target_length=defaults.target_length,
        num_beams=1,
        load=load,
        source_files=source_files,
        to_examples=to_examples,
        score_as=lambda: config().score_as,
        flan_prompt=flan_prompt,
    )
