"""`evaluate_runs`: decode each finished run's test split with its best checkpoint and score it.

Beside each run.json it writes `predictions.jsonl` (id, prediction, target; the input only on
request) and `metrics.json`. A run already scored at the same checkpoint step is skipped unless
`force`; an unfinished run is skipped with a warning; a run that cannot be scored is named in one
line and the others still run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ct5x import timing
from ct5x.checkpoints import load_checkpoint
from ct5x.checkpoints.atomic import write_bytes
from ct5x.errors import UserInputError
from ct5x.evaluation.progress import EvaluationProgress
from ct5x.evaluation.runs import METRICS_FILE, PREDICTIONS_FILE, Run, find_run_files, read_run
from ct5x.evaluation.splits import (
    EvaluationSplit,
    build_split,
    data_settings_applied,
    paper_base_task,
    selection_metric,
    setting_name,
    split_sha256,
    task_vocabulary,
)
from ct5x.inference import batches, pad_rows, round_up
from ct5x.jsonl import write_atomic
from ct5x.models import DecodingOptions, EncoderDecoderModel
from ct5x.vocabulary import load_vocabulary

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    """How `evaluate_runs` decodes: split, batch size, the length-penalty convention, overrides."""

    split: str = "test"
    batch_size: int = 8
    force: bool = False
    with_inputs: bool = False
    # Replaces every run's data_settings.data_dir (data moved since training).
    data_dir: str | None = None
    # Score on this site's data instead (out-of-domain): the same task read from the site's
    # directory (data_settings.site_dirs or CT5X_SITE_DIR_<SITE>).
    test_site: str | None = None
    # Score as the study's code did (`ct5x metrics --anchor-compatible`); None: the configured
    # switch (CT5X_ANCHOR_COMPATIBLE), else off.
    anchor_compatible: bool | None = None
    # "hf" (transformers' generate, the paper's stack) or "t5x"; alpha as in DecodingOptions.
    length_penalty_style: str = "hf"
    alpha: float | None = None


@dataclasses.dataclass
class EvaluationSummary:
    """What happened to each run directory found."""

    scored: list[pathlib.Path] = dataclasses.field(default_factory=list)
    skipped: list[tuple[pathlib.Path, str]] = dataclasses.field(default_factory=list)
    failed: list[tuple[pathlib.Path, str]] = dataclasses.field(default_factory=list)


def output_names(split: str, test_site: str | None = None) -> tuple[str, str]:
    """(predictions, metrics) file names: predictions.jsonl and metrics.json for the test split;
    otherwise `_<split>` and then `_site_<site>` before the extension (metrics_site_ood.json)."""
    suffix = ("" if split == "test" else f"_{split}") + (f"_site_{test_site}" if test_site else "")
    if not suffix:
        return PREDICTIONS_FILE, METRICS_FILE
    return f"predictions{suffix}.jsonl", f"metrics{suffix}.json"


def scored_task(run: Run, test_site: str | None) -> str:
    """The registered task whose split is scored: the run's own, or its variant at a site."""
    from ct5x_tasks import Variant, task_info

    variant = task_info(run.task).variant
    if test_site is None:
        return run.task
    if variant.site is not None:
        raise UserInputError(f"{run.directory}: task {run.task!r} already reads site "
                             f"{variant.site!r}; --test-site applies to in-domain runs")
    site_task = Variant(variant.base, variant.flan, variant.deid, site=test_site).name
    task_info(site_task)  # an unknown site or a task without sites names the nearest tasks
    return site_task


_PREDICTORS: dict[tuple, Callable] = {}


def predictor(model: EncoderDecoderModel, options: DecodingOptions) -> Callable:
    """predict(params, encoder tokens [batch, length]) -> tokens, jitted once per network config
    and decoding options (so all folds of a model share the compiled program)."""
    key = (model.config, options)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = jax.jit(
            lambda params, tokens: model.predict_batch(
                params, {"encoder_input_tokens": tokens}, options
            )
        )
    return _PREDICTORS[key]


def decode(model, params, vocabulary, split_data: EvaluationSplit, options: DecodingOptions,
           batch_size: int, advance: Callable[[int], None]) -> list[str]:
    """The decoded text of every example, in batches of one fixed [batch_size, length] shape."""
    length = round_up(max(len(row) for row in split_data.input_tokens))
    predict = predictor(model, options)
    predictions = []
    for part in batches(len(split_data.ids), batch_size):
        tokens = pad_rows(split_data.input_tokens[part], length, batch_size)
        decoded = np.asarray(predict(params, tokens))
        rows = decoded[: part.stop - part.start]
        predictions.extend(vocabulary.decode(row.tolist()) for row in rows)
        advance(part.stop - part.start)
    return predictions


def score(task: str, targets: list, predictions: list[str],
          anchor_compatible: bool = False) -> dict[str, float]:
    """The task's metrics: `ct5x metrics` for the paper's tasks, the registered task's own metric
    functions for a user's task."""
    from ct5x_tasks import get_provider
    from ct5x_tasks.metrics import compute_metrics

    base = paper_base_task(task)
    try:
        if base is not None:
            return compute_metrics(base, targets, predictions, anchor_compatible)
        provider = get_provider(task)
        gold = [provider.postprocess_fn(t, is_target=True) for t in targets]
        predicted = [provider.postprocess_fn(p) for p in predictions]
        results: dict[str, float] = {}
        for metric_fn in provider.metric_fns:
            results.update(metric_fn(gold, predicted))
        return {name: float(value) for name, value in results.items()}
    except ValueError as error:
        raise UserInputError(f"task {task!r}: cannot score ({error})") from None


def _already_scored(path: pathlib.Path, step: int) -> bool:
    """True when `path` holds metrics of this checkpoint step (else it is rewritten)."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(previous, dict) and previous.get("checkpoint_step") == step


def metrics_record(run: Run, split_data: EvaluationSplit, targets_digest: str,
                   metrics: dict[str, float], options: DecodingOptions,
                   anchor_compatible: bool) -> dict[str, Any]:
    """metrics.json: the run's experiment cell, what was scored, and the scores. The cell is the
    trained variant's, with the site of the data scored (a run tested at another site)."""
    from ct5x_tasks import task_info

    trained = task_info(run.task).variant
    variant = dataclasses.replace(trained, site=split_data.task.variant.site)
    return {
        "model": run.model,
        "task": run.task,
        "test_task": split_data.task.name,
        "base_task": variant.base,
        "setting": setting_name(variant),
        "fold": variant.fold,
        "fraction": variant.fraction,
        "site": variant.site,
        "prompt": "flan" if variant.flan else "t5",
        "deid": variant.deid,
        "split": split_data.split,
        "checkpoint_step": run.checkpoint_step,
        "test_sha256": targets_digest,
        "n_examples": len(split_data.ids),
        "selection_metric": selection_metric(run.task),
        "decoding": dataclasses.asdict(options),
        "anchor_compatible": anchor_compatible,
        "metrics": metrics,
    }


def evaluate_run(run: Run, settings: EvaluationSettings, progress: EvaluationProgress) -> None:
    """Decode and score one run, writing its predictions and metrics files."""
    from ct5x_tasks import task_info
    from ct5x_tasks.metrics import resolve_anchor

    task = scored_task(run, settings.test_site)
    info = task_info(task)
    if not run.checkpoint_dir.is_dir():
        raise UserInputError(f"{run.checkpoint_dir}: checkpoint not found (run.json names step "
                             f"{run.checkpoint_step})")
    with timing.phase("checkpoint_load"):
        checkpoint = load_checkpoint(run.checkpoint_dir)
    if checkpoint.vocabulary_path is None and run.vocabulary:
        checkpoint = dataclasses.replace(checkpoint, vocabulary_path=run.vocabulary)
    vocabulary = load_vocabulary(checkpoint)
    data_settings = dict(run.data_settings)
    if settings.data_dir:
        data_settings["data_dir"] = settings.data_dir
    with data_settings_applied(data_settings), \
            task_vocabulary(checkpoint.vocabulary_path, vocabulary.extra_ids):
        split_data = build_split(task, settings.split)
    options = DecodingOptions(
        num_beams=info.num_beams,
        max_decode_length=info.decode_length,
        length_penalty_style=settings.length_penalty_style,
        alpha=settings.alpha,
    )
    model = EncoderDecoderModel(checkpoint.config.replace(dropout_rate=0.0))
    advance = progress.start_run(run.directory.name, len(split_data.ids))
    with timing.phase("test_prediction"):
        predictions = decode(model, jax.device_put(checkpoint.params), vocabulary, split_data,
                             options, settings.batch_size, advance)
    anchor_compatible = resolve_anchor(settings.anchor_compatible)
    metrics = score(task, split_data.targets, predictions, anchor_compatible)
    lines = []
    for i, prediction in enumerate(predictions):
        line = {"id": split_data.ids[i], "prediction": prediction, "target": split_data.targets[i]}
        if settings.with_inputs:
            line["inputs"] = split_data.inputs[i]
        lines.append(line)
    predictions_name, metrics_name = output_names(settings.split, settings.test_site)
    write_atomic(run.directory / predictions_name, lines)
    digest = split_sha256(split_data.ids, split_data.targets)
    record = metrics_record(run, split_data, digest, metrics, options, anchor_compatible)
    write_bytes(run.directory / metrics_name, (json.dumps(record, indent=2) + "\n").encode())


def evaluate_runs(runs_dir: str | pathlib.Path,
                  settings: EvaluationSettings = EvaluationSettings(),
                  show_progress: bool = True) -> EvaluationSummary:
    """Score every run directory under `runs_dir`; failures are collected in the summary, not
    raised, so that one bad run does not stop the grid."""
    if settings.batch_size < 1:
        raise UserInputError(f"--batch-size={settings.batch_size}: must be at least 1")
    summary = EvaluationSummary()
    run_files = find_run_files(runs_dir)
    with EvaluationProgress(len(run_files), enabled=show_progress) as progress:
        for run_file in run_files:
            directory = run_file.parent
            try:
                run = read_run(run_file)
                metrics_path = directory / output_names(settings.split, settings.test_site)[1]
                if not run.finished:
                    log.warning("%s: training has not finished; skipped", directory)
                    summary.skipped.append((directory, "unfinished"))
                elif not settings.force and _already_scored(metrics_path, run.checkpoint_step):
                    summary.skipped.append((directory, "already scored"))
                else:
                    evaluate_run(run, settings, progress)
                    summary.scored.append(directory)
            except UserInputError as error:
                summary.failed.append((directory, str(error)))
            progress.finish_run()
    return summary
