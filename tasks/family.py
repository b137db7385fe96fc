"""What each dataset family tells the registry: where its files are, how to read and prompt them."""

import dataclasses
import pathlib
from collections.abc import Callable, Sequence

from ct5x.errors import UserInputError
from ct5x_tasks.deid import deidentify
from ct5x_tasks.records import Record
from ct5x_tasks.windows import TokenCounter


@dataclasses.dataclass(frozen=True)
class Formatting:
    """How one task variant turns records into text: prompt style, de-id, training or evaluation.

    `split` is the seqio split being built ('train', 'validation', 'test'); `anchor_compatible`
    is the study-compatibility switch (`task_settings.anchor_compatible`) read when the dataset is
    built.
    """

    flan: bool
    deid: bool
    training: bool
    input_length: int
    counter: TokenCounter
    split: str | None = None
    anchor_compatible: bool = False

    def clean(self, text: str) -> str:
        """The text with MIMIC de-identification spans replaced by tags when the variant asks."""
        return deidentify(text) if self.deid else text

    @property
    def input_budget(self) -> int:
        """Input tokens available before the EOS that the tokenizer appends."""
        return self.input_length - 1


@dataclasses.dataclass(frozen=True)
class Family:
    """One paper task (a base task name) and everything the registry needs to serve it.

    `load(folder)` reads all source splits into `Record`s; `source_files(folder)` lists the raw
    files (their digest pins folds.json); `to_examples(records, formatting)` returns one
    {"id", "inputs", "targets"} dict per record, in order. `fixed_fold_field` names the
    record field that already assigns records to folds (Stigma's `fold_eval`): such a family's
    folds follow the study's rule (`folds.study_folds`). A user's family has `score_as`, the
    function naming (when scoring) the paper task whose metrics score it; a paper family is scored
    as itself. `flan_prompt` is False for a family with one prompt only (no `_flan` variants).
    """

    base: str
    folder: str
    input_length: int
    target_length: int
    num_beams: int
    load: Callable[[pathlib.Path], list[Record]]
    source_files: Callable[[pathlib.Path], list[pathlib.Path]]
    to_examples: Callable[[Sequence[Record], Formatting], list[dict[str, str]]]
    flan_input_length: int | None = None
    mimic: bool = False
    fractions: tuple[float, ...] = ()
    sites: tuple[str, ...] = ()
    fixed_fold_field: str | None = None
    score_as: Callable[[], str | None] | None = None
    flan_prompt: bool = True

    def input_length_for(self, flan: bool) -> int:
        """The paper's input length for the T5 or FLAN prompt."""
        return (self.flan_input_length or self.input_length) if flan else self.input_length


def simple_examples(
    records: Sequence[Record], make: Callable[[Record], tuple[str, str]]
) -> list[dict[str, str]]:
    """Examples for families whose input and target depend on one record alone."""
    examples = []
    for record in records:
        try:
            inputs, targets = make(record)
        except UserInputError as error:
            raise UserInputError(f"record {record.id}: {error}") from None
        examples.append({"id": record.id, "inputs": inputs, "targets": targets})
    return examples

