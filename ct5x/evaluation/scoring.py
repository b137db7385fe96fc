"""`evaluate_runs`: decode each finished run's test split with its best checkpoint and score it,
as the run was trained: its recorded data locations, anchor mode, scoring and feature lengths
(inputs truncated to the run's input length, decoding up to its target length, as the study's
`generation_max_length` did; capped as in training by the task's decoding length), unless the
user overrides the lengths. Examples are decoded in batches of about one input length, each
padded to its length bucket, and written back in the split's order.

Beside each run.json it writes `predictions.jsonl` (id, prediction, target; the input only on
request) and `metrics.json`. A run already scored at the same checkpoint step is skipped unless
`force`; an unfinished run is skipped with a warning; a run whose input cannot be used is named in
one line, a bug while scoring one is recorded as an internal error (with its traceback), and the
others still run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import traceback
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import ct5x_tasks
from ct5x import storage, timing
from ct5x.atomic import write_json
from ct5x.checkpoints import load_checkpoint
from ct5x.compile_ahead import AheadOfTime
from ct5x.errors import UserInputError
from ct5x.evaluation.progress import EvaluationProgress
from ct5x.evaluation.splits import EvaluationSplit, build_split, setting_name, split_sha256
from ct5x.inference import bucket_rows
from ct5x.jsonl import write_atomic
from ct5x.length_buckets import (
    DEFAULT_LENGTH_BUCKETS,
    batch_rows,
    feature_buckets,
    length_sorted_batches,
)
from ct5x.models import DecodingOptions, EncoderDecoderModel
from ct5x.run_record import (
    PREDICTIONS_FILE,
    RUN_FILE,
    TEST_METRICS_FILE,
    RunRecord,
    read_run_record,
)
from ct5x.vocabulary import load_vocabulary
from ct5x_tasks.catalog import SCORING
from ct5x_tasks.task_settings import ANCHOR_VARIABLE, environment_flag

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    """How `evaluate_runs` decodes: split, batch size, the length-penalty convention, overrides."""

    split: str = "test"
    # None: each run's EVAL_BATCH_SIZE (its run.json), else DEFAULT_BATCH_SIZE.
    batch_size: int | None = None
    force: bool = False
    with_inputs: bool = False
    # Replaces every run's data_settings.data_dir (data moved since training).
    data_dir: str | None = None
    # Score on this site's data instead (out-of-domain): the same task read from the site's
    # directory (data_settings.site_dirs or CT5X_SITE_DIR_<SITE>).
    test_site: str | None = None
    # The anchor mode asked for (`--anchor-compatible`). A run records its own mode and is scored
    # in it; asking for another is an error. Only runs recorded before the mode was (run.json
    # schema 1) take it from here, else from CT5X_ANCHOR_COMPATIBLE, else off.
    anchor_compatible: bool | None = None
    # "hf" (transformers' generate, the paper's stack), "hf_4.22" (the study's transformers) or
    # "t5x"; None: "hf_4.22" for a run trained in the study's mode, else "hf". alpha as in
    # DecodingOptions.
    length_penalty_style: str | None = None
    alpha: float | None = None
    # None: the run's TASK_FEATURE_LENGTHS (run.json). The decoding length is capped as in
    # training: at the task's target length, or the study's cap in anchor mode.
    max_input_length: int | None = None
    max_decode_length: int | None = None
    # Input lengths a decoding batch is padded to (ct5x.length_buckets); None: the input length.
    length_buckets: tuple[int, ...] | None = DEFAULT_LENGTH_BUCKETS


DEFAULT_BATCH_SIZE = 8
# A last, shorter batch is cut to a multiple of this many rows: few programs, little padding.
LAST_BATCH_ROWS = 8


def run_batch_size(record: RunRecord) -> int:
    """The EVAL_BATCH_SIZE the run was validated with (run.json), else DEFAULT_BATCH_SIZE."""
    return record.eval_batch_size or DEFAULT_BATCH_SIZE


@dataclasses.dataclass
class EvaluationOutcome:
    """What happened to each run directory found: scored, skipped (why), failed on its input
    (the one-line reason), or failed on a bug (the reason and the traceback)."""

    scored: list[pathlib.Path] = dataclasses.field(default_factory=list)
    skipped: list[tuple[pathlib.Path, str]] = dataclasses.field(default_factory=list)
    failed: list[tuple[pathlib.Path, str]] = dataclasses.field(default_factory=list)
    internal_errors: list[tuple[pathlib.Path, str, str]] = dataclasses.field(
        default_factory=list)


def find_run_files(root: str | pathlib.Path) -> list[pathlib.Path]:
    """Every run.json under `root` (any depth; local or a bucket), sorted so runs are visited in
    a stable order."""
    root = storage.path(root)
    if not root.is_dir():
        raise UserInputError(f"--runs {root}: not a directory")
    return storage.rglob(root, RUN_FILE)


def output_names(split: str, test_site: str | None = None) -> tuple[str, str]:
    """(predictions, metrics) file names: predictions.jsonl and metrics.json for the test split;
    otherwise `_<split>` and then `_site_<site>` before the extension (metrics_site_ood.json)."""
    suffix = ("" if split == "test" else f"_{split}") + (f"_site_{test_site}" if test_site else "")
    if not suffix:
        return PREDICTIONS_FILE, TEST_METRICS_FILE
    return f"predictions{suffix}.jsonl", f"metrics{suffix}.json"


def scored_task(directory: pathlib.Path, record: RunRecord, test_site: str | None) -> str:
    """The registered task whose split is scored: the run's own, or its variant at a site."""
    variant = record.variant
    if test_site is None:
        return record.task
    if variant.site is not None:
        raise UserInputError(f"{directory}: task {record.task!r} already reads site "
                             f"{variant.site!r}; --test-site applies to in-domain runs")
    site_task = ct5x_tasks.Variant(variant.base, variant.flan, variant.deid, site=test_site).name
    ct5x_tasks.task_info(site_task)  # an unknown site or a task without sites names the nearest
    return site_task


def anchor_mode(directory: pathlib.Path, record: RunRecord, asked: bool | None) -> bool:
    """The anchor mode to score in: the one run.json records. `--anchor-compatible` or
    CT5X_ANCHOR_COMPATIBLE disagreeing with it is an error naming both; a schema-1 record (no
    mode recorded) takes the flag, else the environment, else off."""
    environment = environment_flag(ANCHOR_VARIABLE)
    recorded = record.anchor_compatible
    if recorded is None:
        return bool(asked if asked is not None else environment)
    for source, value in (("--anchor-compatible", asked), (ANCHOR_VARIABLE, environment)):
        if value is not None and value != recorded:
            raise UserInputError(
                f"{directory / RUN_FILE}: the run was trained with anchor_compatible="
                f"{json.dumps(recorded)}, but {source} asks for {json.dumps(value)}; it is scored "
                "as it was trained (drop the flag or variable)"
            )
    return recorded


_PREDICTORS: dict[tuple, Callable] = {}


def predictor(model: EncoderDecoderModel, options: DecodingOptions) -> Callable:
    """predict(params, encoder tokens [batch, length]) -> tokens, jitted once per network config
    and decoding options (so all folds of a model share the compiled program)."""
    key = (model.config, options)
    if key not in _PREDICTORS:
        _PREDICTORS[key] = AheadOfTime(jax.jit(
            lambda params, tokens: model.predict_batch(
                params, {"encoder_input_tokens": tokens}, options
            )
        ))
    return _PREDICTORS[key]


def decode(model, params, vocabulary, split_data: EvaluationSplit, options: DecodingOptions,
           batch_size: int, advance: Callable[[int], None],
           buckets: tuple[int, ...] | None = DEFAULT_LENGTH_BUCKETS) -> list[str]:
    """The decoded text of every example, in the split's order: batches of `batch_size` rows of
    about one input length (the last with as few multiples of LAST_BATCH_ROWS as hold it), each
    padded to the smallest bucket that holds its longest input (the split's input length when
    `buckets` is None)."""
    lengths = [len(row) for row in split_data.input_tokens]
    inputs = feature_buckets(buckets, split_data.input_length)
    predict = predictor(model, options)
    predictions = [""] * len(lengths)
    batches = [(indices, bucket_rows(split_data.input_tokens, indices, inputs,
                                     batch_rows(len(indices), batch_size, LAST_BATCH_ROWS)))
               for indices in length_sorted_batches(lengths, batch_size)]
    # The first batch's program compiles on this thread, the other buckets' in the background;
    # the first is traced before the background starts (tracing holds Python's GIL).
    first = predict.lower(params, batches[0][1])
    for _, tokens in batches[1:]:
        predict.compile_ahead(params, tokens)
    first.compile()
    for indices, tokens in batches:
        decoded = np.asarray(predict(params, tokens))
        for index, row in zip(indices, decoded):
            predictions[index] = vocabulary.decode(row.tolist())
        advance(len(indices))
    return predictions


def run_lengths(record: RunRecord, settings: EvaluationSettings) -> dict[str, int]:
    """The feature lengths a run is scored at: its TASK_FEATURE_LENGTHS, or the user's."""
    lengths = dict(record.task_feature_lengths)
    for key, value in (("inputs", settings.max_input_length),
                       ("targets", settings.max_decode_length)):
        if value is not None:
            lengths[key] = value
    return lengths


def score(task: str, scored_as: str | None, targets: list, predictions: list[str],
          anchor_compatible: bool) -> dict[str, float]:
    """The metrics of the paper task the run is scored as, or, without one, the registered task's
    own metric functions. A scoring bug raises as it is; bad gold targets are UserInputError."""
    from ct5x_tasks.metrics import compute_metrics

    if scored_as is not None:
        return compute_metrics(scored_as, targets, predictions, anchor_compatible)
    provider = ct5x_tasks.get_provider(task)
    gold = [provider.postprocess_fn(t, is_target=True) for t in targets]
    predicted = [provider.postprocess_fn(p) for p in predictions]
    results: dict[str, float] = {}
    for metric_fn in provider.metric_fns:
        results.update(metric_fn(gold, predicted))
    return {name: float(value) for name, value in results.items()}


def _already_scored(path: pathlib.Path, step: int) -> bool:
    """True when `path` holds metrics of this checkpoint step (else it is rewritten)."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(previous, dict) and previous.get("checkpoint_step") == step


def metrics_record(record: RunRecord, split_data: EvaluationSplit, targets_digest: str,
                   metrics: dict[str, float], options: DecodingOptions, anchor_compatible: bool,
                   scored_as: str | None) -> dict[str, Any]:
    """metrics.json: the run's experiment cell, what was scored, how, and the scores. The cell is
    the trained variant's, with the site of the data scored (a run tested at another site)."""
    variant = dataclasses.replace(record.variant, site=split_data.task.variant.site)
    selection = record.selection or split_data.task.selection
    scoring = SCORING.get(scored_as) if scored_as else None
    return {
        "model": record.model,
        "task": record.task,
        "test_task": split_data.task.name,
        "base_task": variant.base,
        "setting": setting_name(variant),
        "fold": variant.fold,
        "fraction": variant.fraction,
        "site": variant.site,
        "prompt": "flan" if variant.flan else "t5",
        "deid": variant.deid,
        "split": split_data.split,
        "checkpoint_step": record.checkpoint_step,
        "test_sha256": targets_digest,
        "n_examples": len(split_data.ids),
        "selection_metric": selection.metric if selection else None,
        "scored_as": scored_as,
        "count_metrics": list(scoring.count_metrics if scoring else ()),
        "num_folds": record.num_folds,
        "max_input_length": split_data.input_length,
        "decoding": dataclasses.asdict(options),
        "anchor_compatible": anchor_compatible,
        "metrics": metrics,
    }


def evaluate_run(directory: pathlib.Path, record: RunRecord, settings: EvaluationSettings,
                 progress: EvaluationProgress) -> None:
    """Decode and score one run, writing its predictions and metrics files."""
    checkpoint_dir = directory / f"checkpoint_{record.checkpoint_step}"
    if not checkpoint_dir.is_dir():
        raise UserInputError(f"{checkpoint_dir}: checkpoint not found (run.json names step "
                             f"{record.checkpoint_step})")
    task = scored_task(directory, record, settings.test_site)
    anchor_compatible = anchor_mode(directory, record, settings.anchor_compatible)
    with timing.phase("checkpoint_load"):
        checkpoint = load_checkpoint(checkpoint_dir)
    if checkpoint.vocabulary_path is None and record.vocabulary:
        checkpoint = dataclasses.replace(checkpoint, vocabulary_path=record.vocabulary)
    vocabulary = load_vocabulary(checkpoint)
    locations = dataclasses.asdict(record.data_settings)
    if settings.data_dir:
        locations["data_dir"] = settings.data_dir
    with ct5x_tasks.settings(**locations, anchor_compatible=anchor_compatible,
                             vocabulary_path=checkpoint.vocabulary_path,
                             extra_ids=vocabulary.extra_ids):
        lengths = run_lengths(record, settings)
        split_data = build_split(task, settings.split, lengths)
        # A schema-1 record names no scoring: the registered task's, looked up by exact name.
        scored_as = record.scored_as if record.schema_version >= 2 else split_data.task.scored_as
        options = DecodingOptions(
            num_beams=split_data.task.num_beams,
            max_decode_length=split_data.task.decode_length_for(lengths["targets"]),
            length_penalty_style=settings.length_penalty_style or (
                "hf_4.22" if anchor_compatible else "hf"),
            alpha=settings.alpha,
        )
        model = EncoderDecoderModel(checkpoint.config.replace(dropout_rate=0.0))
        advance = progress.start_run(directory.name, len(split_data.ids))
        with timing.phase("test_prediction"):
            predictions = decode(model, jax.device_put(checkpoint.params), vocabulary,
                                 split_data, options,
                                 settings.batch_size or run_batch_size(record), advance,
                                 settings.length_buckets)
        metrics = score(task, scored_as, split_data.targets, predictions, anchor_compatible)
    lines = []
    for i, prediction in enumerate(predictions):
        line = {"id": split_data.ids[i], "prediction": prediction, "target": split_data.targets[i]}
        if settings.with_inputs:
            line["inputs"] = split_data.inputs[i]
        lines.append(line)
    predictions_name, metrics_name = output_names(settings.split, settings.test_site)
    write_atomic(directory / predictions_name, lines)
    digest = split_sha256(split_data.ids, split_data.targets)
    write_json(directory / metrics_name, metrics_record(
        record, split_data, digest, metrics, options, anchor_compatible, scored_as))


def evaluate_runs(runs_dir: str | pathlib.Path,
                  settings: EvaluationSettings = EvaluationSettings(),
                  show_progress: bool = True) -> EvaluationOutcome:
    """Score every run directory under `runs_dir`; failures are collected in the outcome, not
    raised, so that one bad run does not stop the grid."""
    if settings.batch_size is not None and settings.batch_size < 1:
        raise UserInputError(f"--batch-size={settings.batch_size}: must be at least 1")
    outcome = EvaluationOutcome()
    run_files = find_run_files(runs_dir)
    with EvaluationProgress(len(run_files), enabled=show_progress) as progress:
        for run_file in run_files:
            directory = run_file.parent
            try:
                record = read_run_record(run_file)
                metrics_path = directory / output_names(settings.split, settings.test_site)[1]
                if not record.finished:
                    log.warning("%s: training has not finished; skipped", directory)
                    outcome.skipped.append((directory, "unfinished"))
                elif not settings.force and _already_scored(metrics_path, record.checkpoint_step):
                    outcome.skipped.append((directory, "already scored"))
                else:
                    evaluate_run(directory, record, settings, progress)
                    outcome.scored.append(directory)
            except UserInputError as error:
                outcome.failed.append((directory, str(error)))
            except Exception as error:  # noqa: BLE001 - a bug in one run must not stop the grid
                first_line = (str(error).splitlines() or [""])[0]
                outcome.internal_errors.append(
                    (directory, f"{type(error).__name__}: {first_line}", traceback.format_exc()))
            progress.finish_run()
    return outcome
