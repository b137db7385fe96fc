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

The anchor switch (`anchor_compatible` of the task settings in force: a `ct5x_tasks.settings`
block, gin's ANCHOR_COMPATIBLE, CT5X_ANCHOR_COMPATIBLE; or `ct5x metrics --anchor-compatible`)
scores as the study's code did: single-label macro-F1 is plain `f1_score(average='macro')` over
the labels seen on either side, so each distinct invalid output is an extra class with F1 0 and a
label absent from both sides is skipped; HoC counts "none" as a positive class; NER uses the
anchors' tagger after transformers 4.22's decoding clean-up of the text (PAD padding, positional
comparison). Metric functions registered with SeqIO read the switch each time they score, so
checkpoint selection follows it.
"""

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from ct5x.errors import UserInputError

from . import ner_markup, squad
from .catalog import SCORING
from .labels import CLIP_LABELS, HOC_LABELS, MEDNLI_LABELS, STIGMA_LABELS
from .task_settings import anchor_compatible as anchor_switch

MetricFn = Callable[[Sequence, Sequence], dict[str, float]]

SINGLE_LABEL_TASKS = {
    "mednli": MEDNLI_LABELS,
    "stigma_adamant": STIGMA_LABELS["adamant"],
    "stigma_compliance": STIGMA_LABELS["compliance"],
    "stigma_other": STIGMA_LABELS["other"],
}
MULTI_LABEL_TASKS = {"clip": CLIP_LABELS, "hoc": HOC_LABELS, "hoc_blurb": HOC_LABELS}
QA_TASKS = ("radqa",)
NER_TASKS = ("ncbi_disease", "bc5cdr_disease")
# The paper tasks these metrics score: a task is scored as one of them (`TaskInfo.scored_as`).
SCORED_TASKS = (*SINGLE_LABEL_TASKS, *MULTI_LABEL_TASKS, *QA_TASKS, *NER_TASKS)
# Each paper task's selection metric, as `catalog.SCORING` defines it (ct5x/demo.py reads this
# view; `TaskInfo.selection` is the source).
SELECTION_METRIC = {base: scoring.selection.metric for base, scoring in SCORING.items()}

NO_LABEL = "none"
LABEL_SEPARATOR = ","


def _scored(base_task: str) -> str:
    """`base_task` itself when these metrics score it (an exact paper task name)."""
    if base_task not in SCORED_TASKS:
        raise UserInputError(
            f"no metrics for {base_task!r}: a task is scored as one of {', '.join(SCORED_TASKS)}"
        )
    return base_task


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
    """An explicit choice, or the anchor switch of the task settings in force when None."""
    return anchor_switch() if anchor_compatible is None else bool(anchor_compatible)


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
    base = _scored(base_task)

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
    base = _scored(base_task)
    if base in SINGLE_LABEL_TASKS and target not in SINGLE_LABEL_TASKS[base]:
        return f"gold label is not one of the {base} labels"
    if base in MULTI_LABEL_TASKS and not set(target) <= set(MULTI_LABEL_TASKS[base]):
        return f"gold labels are not all {base} labels"
    return None


def _check_targets(base: str, targets: Sequence) -> None:
    """Gold targets the metric cannot score are the data's fault: a UserInputError."""
    if not targets:
        raise UserInputError(f"{base}: no examples to score")
    for index, target in enumerate(targets):
        reason = invalid_target_reason(base, target)
        if reason:
            raise UserInputError(f"{base}: target {index}: {reason}")


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
            raise UserInputError(f"{base}: no examples to score")
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
    base = _scored(base_task)
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
