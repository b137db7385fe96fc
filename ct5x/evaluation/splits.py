"""A run's evaluation split, built by the task registry exactly as training built its splits.

The run's data locations (run.json `data_settings`) are applied as the registry's gin bindings for
the duration of one build, and the checkpoint's vocabulary tokenizes the inputs. The examples come
in the source's order (no shuffling); inputs are tokenized, truncated to the task's input length
(the registry logs how many were cut; none is dropped) and end with EOS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

import ct5x_tasks
from ct5x import gin_utils
from ct5x.errors import UserInputError
from ct5x_tasks.metrics import SELECTION_METRIC, base_task_of
from ct5x_tasks.naming import percent_label

Target = str | list[str]


@dataclasses.dataclass(frozen=True)
class EvaluationSplit:
    """One split of a task: ids, input text and tokens, and the gold targets to score against."""

    task: ct5x_tasks.TaskInfo
    split: str
    ids: list[str]
    inputs: list[str]
    # [example] EOS-terminated token ids, at most task.input_length long.
    input_tokens: list[list[int]]
    # The target text, or for RadQA every gold answer (the form `ct5x metrics` reads).
    targets: list[Target]


def paper_base_task(task: str) -> str | None:
    """The paper task whose metrics score `task`, or None for a user's own task (scored by the
    metric functions its registration names)."""
    try:
        return base_task_of(task)
    except UserInputError:
        return None


def selection_metric(task: str) -> str | None:
    """The metric that picks the best checkpoint and that plots show (None: a user's task)."""
    base = paper_base_task(task)
    return None if base is None else SELECTION_METRIC[base]


def setting_name(variant: ct5x_tasks.Variant) -> str:
    """The experiment cell of a variant: 'full', or 'pct<p>' for a training fraction, with
    'site_<s>' for a site's data ('site_ood' alone, 'pct25_site_ood' with a fraction)."""
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


def _gin_literal(value: Any) -> str:
    return repr(dict(value)) if isinstance(value, Mapping) else repr(value)


@contextlib.contextmanager
def data_settings_applied(settings: Mapping[str, Any]) -> Iterator[None]:
    """The registry reads these data locations (gin bindings of `ct5x_tasks.data_settings`)
    inside the block; unset ones fall back to the CT5X_* environment variables. Gin's config is
    cleared on entry and exit: evaluation runs outside any training configuration."""
    bindings = [
        f"ct5x_tasks.data_settings.{key} = {_gin_literal(value)}"
        for key, value in settings.items()
        if value
    ]
    gin_utils.parse_gin([], bindings)
    try:
        yield
    finally:
        gin_utils.parse_gin([], [])


@contextlib.contextmanager
def task_vocabulary(path: str, extra_ids: int) -> Iterator[None]:
    """Every task tokenizes with this spiece.model inside the block."""
    ct5x_tasks.set_vocabulary_path(path, extra_ids)
    try:
        yield
    finally:
        ct5x_tasks.set_vocabulary_path(None)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _target(example: Mapping[str, Any]) -> Target:
    if "answers" in example:
        return [_text(answer) for answer in np.asarray(example["answers"]).tolist()]
    return _text(example["targets_pretokenized"])


def build_split(task_name: str, split: str = "test") -> EvaluationSplit:
    """The split of a registered task with the current data settings and vocabulary."""
    info = ct5x_tasks.task_info(task_name)
    lengths = {"inputs": info.input_length, "targets": info.target_length}
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
    return EvaluationSplit(info, split, ids, inputs, tokens, targets)
