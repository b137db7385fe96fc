"""`ct5x tasks`, `ct5x folds` and `ct5x metrics`: the task registry on the command line.

The registry itself (`ct5x_tasks`) holds no command-line code; these subcommands import it when
they run, so `ct5x --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ct5x.errors import EXIT_OK, UserInputError


def tasks_command(args: argparse.Namespace) -> int:
    """Every registered task and mixture, one per line."""
    from ct5x_tasks import task_names

    for name in task_names():
        print(name)
    return EXIT_OK


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text}") from None


def folds_command(args: argparse.Namespace) -> int:
    """Write folds.json and print where, with the fold sizes."""
    from ct5x_tasks import write_folds

    path = write_folds(args.task, args.data_dir, args.out, args.seed, tuple(args.fractions))
    content = json.loads(path.read_text(encoding="utf-8"))
    sizes = ", ".join(
        f"{fold['fold']}: {len(fold['train'])}/{len(fold['validation'])}"
        for fold in content["folds"]
    )
    print(f"{path} (test {len(content['test'])}; fold train/validation {sizes})")
    return EXIT_OK


def _prediction_lines(path: str, scored_as: str) -> tuple[list[Any], list[str]]:
    """Targets and predictions of a JSONL file; any unusable line is an error naming file:line."""
    from ct5x.jsonl import read_values
    from ct5x_tasks.metrics import QA_TASKS, invalid_target_reason, postprocessor_for

    postprocess = postprocessor_for(scored_as)
    targets: list[Any] = []
    predictions: list[str] = []
    for number, record in read_values(path):
        if not isinstance(record, dict) or "target" not in record or "prediction" not in record:
            raise UserInputError(f'{path}:{number}: needs a "target" and a "prediction" field')
        target, prediction = record["target"], record["prediction"]
        target_ok = isinstance(target, str) or (
            scored_as in QA_TASKS
            and isinstance(target, list)
            and all(isinstance(answer, str) for answer in target)
        )
        if not target_ok or not isinstance(prediction, str):
            raise UserInputError(f"{path}:{number}: target and prediction must be strings")
        reason = invalid_target_reason(scored_as, postprocess(target, is_target=True))
        if reason:
            raise UserInputError(f"{path}:{number}: {reason}")
        targets.append(target)
        predictions.append(prediction)
    if not targets:
        raise UserInputError(f"{path}: no prediction lines")
    return targets, predictions


def metrics_command(args: argparse.Namespace) -> int:
    """Print one JSON object: the metrics of the paper task `--task` is scored as, and its
    selection metric."""
    import ct5x_tasks
    from ct5x_tasks.metrics import compute_metrics, resolve_anchor

    info = ct5x_tasks.task_info(args.task)
    if info.scored_as is None:
        raise UserInputError(f"--task {args.task}: scored by its own metric functions, not by "
                             "one of the paper's; set its score_as")
    targets, predictions = _prediction_lines(args.predictions, info.scored_as)
    anchor_compatible = resolve_anchor(args.anchor_compatible)
    scores = compute_metrics(info.scored_as, targets, predictions, anchor_compatible)
    report = {
        "task": info.scored_as,
        "examples": len(targets),
        "anchor_compatible": anchor_compatible,
        "selection_metric": info.selection.metric,
        **scores,
    }
    print(json.dumps(report))
    return EXIT_OK


def register_command(commands) -> None:
    """Adds `tasks`, `folds` and `metrics` to the `ct5x` subcommands."""
    tasks = commands.add_parser("tasks", help="list every registered task and mixture")
    tasks.set_defaults(run=tasks_command)

    folds = commands.add_parser("folds", help="write a task's cross-validation folds.json")
    folds.add_argument("--task", required=True, help="base task name, e.g. mednli")
    folds.add_argument("--data-dir", required=True, help="the dataset's folder (or DATA_DIR)")
    folds.add_argument("--out", required=True, help="folder to write folds.json into")
    folds.add_argument("--seed", type=int, default=42)
    folds.add_argument(
        "--fractions", type=_fractions, default=(),
        help="training fractions, e.g. 0.01,0.05,0.25 (default: the paper's for the task)",
    )
    folds.set_defaults(run=folds_command, frameworks=False)

    metrics = commands.add_parser("metrics", help="score predictions with a task's metrics")
    metrics.add_argument("--task", required=True, help="a registered task name (any variant)")
    metrics.add_argument(
        "--predictions", required=True,
        help='JSONL file, one {"target": ..., "prediction": ...} object per line',
    )
    metrics.add_argument(
        "--anchor-compatible", action="store_true", default=None,
        help="score as the study's code did (plain macro-F1 with invalid outputs as classes, HoC "
        "'none' class, NER PAD padding); default: CT5X_ANCHOR_COMPATIBLE, else off",
    )
    metrics.set_defaults(run=metrics_command)
