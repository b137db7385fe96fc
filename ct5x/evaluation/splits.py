"""A run's evaluation split, built by the task registry exactly as training built its splits.

`build_split` reads the task settings in force: `scoring` applies the run's recorded data
locations, anchor mode and vocabulary as a `ct5x_tasks.settings` block around it. The examples come
in the source's order (no shuffling); inputs are tokenized, truncated to the given input length
(the run's; by default the task's; the registry logs how many were cut; none is dropped) and end
with EOS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import ct5x_tasks
from ct5x.errors import UserInputError
from ct5x_tasks.naming import percent_label

Target = str | list[str]


@dataclasses.dataclass(frozen=True)
class EvaluationSplit:
    """One split of a task: ids, input text and tokens, and the gold targets to score against."""

    task: ct5x_tasks.TaskInfo
    split: str
    ids: list[str]
    inputs: list[str]
    # [example] EOS-terminated token ids, at most input_length long.
    input_tokens: list[list[int]]
    # The target text, or for RadQA every gold answer (the form `ct5x metrics` reads).
    targets: list[Target]
    # What the inputs were truncated to.
    input_length: int


def setting_name(variant: ct5x_tasks.Variant) -> str:
    """The setting of a variant, the data condition one report table is about: 'full', or
    'pct<p>' for a training fraction, with 'site_<s>' for a site's data ('site_ood' alone,
    'pct25_site_ood' with a fraction)."""
    parts = []
    if variant.fraction is not None:
        parts.append("pct" + percent_label(variant.fraction))
    if variant.site is not None:
        parts.append(f"site_{variant.site}")
    return "_".join(parts) or "full"


def split_sha256(ids: Sequence[str], targets: Sequence[Target]) -> str:
    """SHA-256 of the (id, target) pairs sorted by id, one JSON array per line (UTF-8): equal
    exactly when two runs were scored on the same examples with the same gold targets."""
    pairs = sorted(zip(ids, targets), key=lambda pair: pair[0])
    lines = "".join(json.dumps(list(pair), ensure_ascii=False) + "\n" for pair in pairs)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _target(example: Mapping[str, Any]) -> Target:
    if "answers" in example:
        return [_text(answer) for answer in np.asarray(example["answers"]).tolist()]
    return _text(example["targets_pretokenized"])


def build_split(task_name: str, split: str = "test",
                lengths: Mapping[str, int] | None = None) -> EvaluationSplit:
    """The split of a registered task with the task settings in force, tokenized to `lengths`
    ({"inputs": n, "targets": m}; by default the task's)."""
    info = ct5x_tasks.task_info(task_name)
    lengths = dict(lengths or {"inputs": info.input_length, "targets": info.target_length})
    dataset = ct5x_tasks.get_provider(task_name).get_dataset(
        lengths, split=split, use_cached=False, shuffle=False, num_epochs=1
    )
    ids, inputs, tokens, targets = [], [], [], []
    for example in dataset.as_numpy_iterator():
        ids.append(_text(example["id"]))
        inputs.append(_text(example["inputs_pretokenized"]))
        tokens.append(example["inputs"].tolist())
        targets.append(_target(example))
    if not ids:
        raise UserInputError(f"task {task_name!r}: the {split} split has no examples")
    if len(set(ids)) != len(ids):
        raise UserInputError(f"task {task_name!r}: the {split} split repeats example ids")
    return EvaluationSplit(info, split, ids, inputs, tokens, targets, lengths["inputs"])
