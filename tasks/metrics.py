"""Metrics of the paper's tasks as SeqIO postprocessors and metric functions.

Every score is a fraction in [0, 1]. Per task family:
- single label (MedNLI, Stigma): accuracy and macro-F1 over the task's labels (sklearn,
  `labels=` the label set). A prediction outside the label set is wrong for accuracy, a miss of its
  gold class for F1, and a false positive of no class; `invalid_predictions` counts them.
- multi-label (CLIP, HoC): outputs are labels joined by ", "; "" or "none" is the empty set. A
  predicted label outside the label set is ignored for scoring and counted in `unknown_labels`.
  CLIP: macro- and micro-F1 over its 7 labels, names matched case-insensitively (as the study
  did). HoC: micro P/R/F1 pooled over (example, label) pairs; "none" is no class.
- RadQA: SQuAD 2.0 F1 and exact match (`ct5x_tasks.squad`).
- NER: entity-level P/R/F1 over the `disease* ... *disease` markup (`ct5x_tasks.ner_markup`).
A class with no gold and no predicted example scores 0 in macro averages (sklearn zero_division=0).

The anchor switch (`ct5x_tasks.anchor_settings.anchor_compatible`, CT5X_ANCHOR_COMPATIBLE, or
`ct5x metrics --anchor-compatible`) scores as the study's code did: single-label macro-F1 is plain
`f1_score(average='macro')` over the labels seen on either side, so each distinct invalid output is
an extra class with F1 0 and a label absent from both sides is skipped; HoC counts "none" as a
positive class; NER cleans up the text as transformers 4.22 decoded it, then uses the anchors'
tagger (PAD padding, positional comparison). Metric functions registered with SeqIO read the
switch each time they score, so checkpoint selection follows it.
"""

import argparse
import difflib
import json
import pathlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from ct5x.errors import UserInputError
from ct5x.jsonl import read_values

from . import ner_markup, squad
from .labels import CLIP_LABELS, HOC_LABELS, MEDNLI_LABELS, STIGMA_LABELS
from .settings import anchor_settings

MetricFn = Callable[[Sequence, Sequence], dict[str, float]]

BASE_TASKS = (
    "mednli",
    "radqa",
    "clip",
    "stigma_adamant",
    "stigma_compliance",
    "stigma_other",
    "hoc",
    "hoc_blurb",
    "ncbi_disease",
    "bc5cdr_disease",
)

SINGLE_LABEL_TASKS = {
    "mednli": MEDNLI_LABELS,
    "stigma_adamant": STIGMA_LABELS["adamant"],
    "stigma_compliance": STIGMA_LABELS["compliance"],
    "stigma_other": STIGMA_LABELS["other"],
}
MULTI_LABEL_TASKS = {"clip": CLIP_LABELS, "hoc": HOC_LABELS, "hoc_blurb": HOC_LABELS}
QA_TASKS = ("radqa",)

SELECTION_METRIC = {
    "mednli": "accuracy",
    "radqa": "f1",
    "clip": "macro_f1",
    "stigma_adamant": "macro_f1",
    "stigma_compliance": "macro_f1",
    "stigma_other": "macro_f1",
    "hoc": "f1",
    "hoc_blurb": "f1",
    "ncbi_disease": "f1",
    "bc5cdr_disease": "f1",
}

NO_LABEL = "none"
LABEL_SEPARATOR = ","


def base_task_of(name: str) -> str:
    """The base task of a registered name: the longest base name followed by the end or "_"."""
    matches = [base for base in BASE_TASKS if name == base or name.startswith(base + "_")]
    if matches:
        return max(matches, key=len)
    closest = difflib.get_close_matches(name, BASE_TASKS, n=3, cutoff=0.3) or list(BASE_TASKS)
    raise UserInputError(f"unknown task {name!r}; closest task names: {', '.join(closest)}")


def _text(value: Any) -> str:
    """A decoded, stripped string from str, bytes or a numpy scalar of either."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip()


_CLIP_BY_LOWER = {label.lower(): label for label in CLIP_LABELS}


def parse_labels(text: str, canonical: dict[str, str] | None = None) -> tuple[str, ...]:
    """A multi-label output as its sorted distinct labels; "" and "none" are the empty set.

    `canonical` maps lower-cased names to label names, for case-insensitive matching.
    """
    parts = {part.strip() for part in text.split(LABEL_SEPARATOR)}
    if canonical:
        parts = {canonical.get(part.lower(), part) for part in parts}
    return tuple(sorted(part for part in parts if part and part != NO_LABEL))


def resolve_anchor(anchor_compatible: bool | None) -> bool:
    """An explicit choice, or the configured anchor switch when None."""
    return anchor_settings() if anchor_compatible is None else bool(anchor_compatible)


def _answers(value: Any) -> list[str]:
    """RadQA gold answers: a list (or array) of answers, or a single answer string."""
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        return [_text(value)]
    return [_text(answer) for answer in value]


def postprocessor_for(base_task: str) -> Callable[..., Any]:
    """The SeqIO postprocess_fn of a task: decoded, stripped text, parsed where the metric needs.

    Multi-label tasks give a sorted tuple of labels; RadQA targets give the list of gold answers
    (from the example's "answers" feature when present, else the target text); others a string.
    """
    base = base_task_of(base_task)

    def postprocess(output_or_target: Any, example: Any = None, is_target: bool = False) -> Any:
        if base in MULTI_LABEL_TASKS:
            return parse_labels(_text(output_or_target), _CLIP_BY_LOWER if base == "clip" else None)
        if base in QA_TASKS and is_target:
            if example is not None and "answers" in example:
                return _answers(example["answers"])
            return _answers(output_or_target)
        return _text(output_or_target)

    postprocess.__name__ = f"postprocess_{base}"
    return postprocess


def invalid_target_reason(base_task: str, target: Any) -> str | None:
    """Why a postprocessed gold target cannot be scored (label outside the label set), or None."""
    base = base_task_of(base_task)
    if base in SINGLE_LABEL_TASKS and target not in SINGLE_LABEL_TASKS[base]:
        return f"gold label is not one of the {base} labels"
    if base in MULTI_LABEL_TASKS and not set(target) <= set(MULTI_LABEL_TASKS[base]):
        return f"gold labels are not all {base} labels"
    return None


def _check_targets(base: str, targets: Sequence) -> None:
    if not targets:
        raise ValueError("no examples to score")
    for index, target in enumerate(targets):
        reason = invalid_target_reason(base, target)
        if reason:
            raise ValueError(f"target {index}: {reason}")


def _single_label_metric(base: str, anchor_compatible: bool | None) -> MetricFn:
    labels = list(SINGLE_LABEL_TASKS[base])

    def metric(targets: Sequence, predictions: Sequence) -> dict[str, float]:
        _check_targets(base, targets)
        if resolve_anchor(anchor_compatible):
            with warnings.catch_warnings():  # sklearn warns about the 0/0 it scores as 0
                warnings.simplefilter("ignore")
                macro_f1 = f1_score(targets, predictions, average="macro")
        else:
            macro_f1 = f1_score(targets, predictions, labels=labels, average="macro",
                                zero_division=0)
        return {
            "accuracy": float(accuracy_score(targets, predictions)),
            "macro_f1": float(macro_f1),
            "invalid_predictions": float(sum(p not in labels for p in predictions)),
        }

    metric.__name__ = f"{base}_metrics"
    return metric


def _binarize(label_sets: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """[examples, classes] 0/1 matrix; labels outside `classes` are left out."""
    known = [[label for label in labels if label in classes] for labels in label_sets]
    return MultiLabelBinarizer(classes=list(classes)).fit_transform(known)


def _unknown_label_count(label_sets: Sequence[Sequence[str]], classes: Sequence[str]) -> float:
    return float(sum(label not in classes for labels in label_sets for label in labels))


def _clip_metric(targets: Sequence, predictions: Sequence) -> dict[str, float]:
    _check_targets("clip", targets)
    gold = _binarize(targets, CLIP_LABELS)
    predicted = _binarize(predictions, CLIP_LABELS)
    return {
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, predicted, average="micro", zero_division=0)),
        "unknown_labels": _unknown_label_count(predictions, CLIP_LABELS),
    }


def with_none_as_class(label_sets: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """The anchors' HoC reading: an example without labels has the positive label "none"."""
    return [tuple(labels) if labels else (NO_LABEL,) for labels in label_sets]


def _hoc_metric(base: str, anchor_compatible: bool | None) -> MetricFn:
    def metric(targets: Sequence, predictions: Sequence) -> dict[str, float]:
        _check_targets(base, targets)
        classes = HOC_LABELS
        unknown = _unknown_label_count(predictions, classes)
        if resolve_anchor(anchor_compatible):
            classes = HOC_LABELS + (NO_LABEL,)
            targets, predictions = with_none_as_class(targets), with_none_as_class(predictions)
        precision, recall, f1, _ = precision_recall_fscore_support(
            _binarize(targets, classes),
            _binarize(predictions, classes),
            average="micro",
            zero_division=0,
        )
        return {
            "f1": float(f1),
            "precision": float(precision),
            "recall": float(recall),
            "unknown_labels": unknown,
        }

    metric.__name__ = f"{base}_metrics"
    return metric


def _radqa_metric(targets: Sequence, predictions: Sequence) -> dict[str, float]:
    return squad.squad_v2_scores(targets, predictions)


def _ner_metric(base: str, anchor_compatible: bool | None) -> MetricFn:
    def metric(targets: Sequence, predictions: Sequence) -> dict[str, float]:
        if not targets:
            raise ValueError("no examples to score")
        if resolve_anchor(anchor_compatible):
            return ner_markup.anchor_entity_scores(targets, predictions)
        return ner_markup.entity_scores(targets, predictions)

    metric.__name__ = f"{base}_metrics"
    return metric


def metric_fns_for(base_task: str, anchor_compatible: bool | None = None) -> list[MetricFn]:
    """SeqIO metric functions `fn(targets, predictions)` over postprocessed values.

    `anchor_compatible` switches MedNLI, Stigma, HoC and the NER tasks to the study's scoring
    (module docstring); None reads the anchor switch each time a function scores.
    """
    base = base_task_of(base_task)
    if base in SINGLE_LABEL_TASKS:
        return [_single_label_metric(base, anchor_compatible)]
    if base == "clip":
        return [_clip_metric]
    if base in MULTI_LABEL_TASKS:
        return [_hoc_metric(base, anchor_compatible)]
    if base in QA_TASKS:
        return [_radqa_metric]
    return [_ner_metric(base, anchor_compatible)]


def compute_metrics(
    base_task: str,
    targets: Sequence[Any],
    predictions: Sequence[Any],
    anchor_compatible: bool | None = None,
) -> dict[str, float]:
    """All metrics of a task from raw targets and predictions (postprocessed here); None reads
    the anchor switch."""
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    postprocess = postprocessor_for(base_task)
    gold = [postprocess(target, is_target=True) for target in targets]
    predicted = [postprocess(prediction) for prediction in predictions]
    results: dict[str, float] = {}
    for metric in metric_fns_for(base_task, anchor_compatible):
        results.update(metric(gold, predicted))
    return results


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `ct5x metrics`: score a JSONL file of {"target", "prediction"} lines."""
    parser.add_argument("--task", required=True, help="task name (a base name or any variant)")
    parser.add_argument(
        "--predictions",
        required=True,
        type=pathlib.Path,
        help='JSONL file, one {"target": ..., "prediction": ...} object per line',
    )
    parser.add_argument(
        "--anchor-compatible",
        action="store_true",
        default=None,
        help="score as the study's code did (plain macro-F1 with invalid outputs as classes, HoC "
        "'none' class, NER PAD padding); default: CT5X_ANCHOR_COMPATIBLE, else off",
    )


def _read_prediction_lines(path: pathlib.Path, base: str) -> tuple[list[Any], list[str]]:
    """Targets and predictions of a JSONL file; any unusable line is an error naming file:line."""
    postprocess = postprocessor_for(base)
    targets: list[Any] = []
    predictions: list[str] = []
    for number, record in read_values(path):
        if not isinstance(record, dict) or "target" not in record or "prediction" not in record:
            raise UserInputError(f'{path}:{number}: needs a "target" and a "prediction" field')
        target, prediction = record["target"], record["prediction"]
        target_ok = isinstance(target, str) or (
            base in QA_TASKS
            and isinstance(target, list)
            and all(isinstance(answer, str) for answer in target)
        )
        if not target_ok or not isinstance(prediction, str):
            raise UserInputError(f"{path}:{number}: target and prediction must be strings")
        reason = invalid_target_reason(base, postprocess(target, is_target=True))
        if reason:
            raise UserInputError(f"{path}:{number}: {reason}")
        targets.append(target)
        predictions.append(prediction)
    if not targets:
        raise UserInputError(f"{path}: no prediction lines")
    return targets, predictions


def metrics_command(args: argparse.Namespace) -> int:
    """`ct5x metrics`: print one JSON object with the task's metrics and its selection metric."""
    base = base_task_of(args.task)
    targets, predictions = _read_prediction_lines(args.predictions, base)
    anchor_compatible = resolve_anchor(args.anchor_compatible)
    scores = compute_metrics(base, targets, predictions, anchor_compatible)
    report = {
        "task": base,
        "examples": len(targets),
        "anchor_compatible": anchor_compatible,
        "selection_metric": SELECTION_METRIC[base],
        **scores,
    }
    print(json.dumps(report))
    return 0
