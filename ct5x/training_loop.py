"""The loop of a run: resume, step, log, evaluate, keep the best checkpoint, stop.

A checkpoint is saved at every evaluation (and every CHECKPOINT_PERIOD steps), in the background
while training goes on; the best one by the task's selection metric (higher is better, except for
the loss) and the newest KEEP_CHECKPOINTS are kept. An evaluation's checkpoint is named in run.json
only once its save has committed, and older checkpoints are pruned only then: as soon as the loop
sees the commit after an execution, and at the latest before the next save and at the end, which
wait for it. A reader always finds a consistent run, and a killed run resumes from its newest
committed checkpoint with the same data position and dropout randomness; settings that would
remap its data are refused. An early-stopped run stays stopped.

Every process runs this loop; process 0 alone prints, writes metrics.jsonl, TensorBoard and
run.json, and the others wait at a barrier after each write they may read.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import time
from typing import Any

import jax
import numpy as np

from ct5x import compile_ahead, multihost, timing
from ct5x.checkpoints import train_state as saved
from ct5x.data_pipeline import TrainingStream
from ct5x.errors import UserInputError
from ct5x.progress import Progress
from ct5x.run_directory import RunDirectory
from ct5x.train_state import TrainState
from ct5x.trainer import ExecutionMetrics, Trainer
from ct5x.validation import Validator, write_predictions
from ct5x_tasks.catalog import Selection

logger = logging.getLogger(__name__)


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the message names the step."""


# What a checkpoint's data position records besides the step, and the macro that sets each:
# resuming with another value would remap the training data.
DATA_SETTINGS = {"seed": "RANDOM_SEED", "task": "MIXTURE_OR_TASK_NAME",
                 "batch_size": "BATCH_SIZE", "pack": "PACK",
                 "feature_lengths": "TASK_FEATURE_LENGTHS"}


class Preempted(Exception):
    """Every process was asked to stop (SIGTERM) and saved a checkpoint; the message names it."""


@dataclasses.dataclass
class Run:
    """What the loop needs, built by `ct5x.train`."""

    trainer: Trainer
    stream: TrainingStream
    validator: Validator
    directory: RunDirectory
    # run.json's fixed fields (model, task, variant, ...); the loop fills in the progress fields.
    record: dict[str, Any]
    train_steps: int
    eval_period: int
    checkpoint_period: int | None
    log_period: int
    keep_checkpoints: int
    # The validation metric that picks the best checkpoint, and its direction.
    selection: Selection
    early_stopping_patience: int | None
    log_examples: bool = False
    # Compile the programs needed after the first execution in the background (COMPILE_AHEAD).
    compile_ahead: bool = False
    summary_writers: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoints: saved.CheckpointWriter = dataclasses.field(default_factory=saved.CheckpointWriter)
    # The save in flight: its step and, for an evaluation's, run.json to write once committed.
    pending: tuple[int, dict[str, Any] | None] | None = None


def _tokens(batch: dict[str, np.ndarray]) -> int:
    """Non-padding input and target tokens of a host batch."""
    inputs = np.sum(batch["encoder_input_tokens"] > 0)
    return int(inputs + np.sum(batch["decoder_loss_weights"] > 0))


def _data_settings(run: Run) -> dict[str, Any]:
    """This run's values of `DATA_SETTINGS`, as a checkpoint's data position records them."""
    data = run.stream.settings
    return {"seed": data.seed, "task": data.task_name, "batch_size": data.batch_size,
            "pack": data.pack, "feature_lengths": dict(data.feature_lengths)}


def check_data_position(position: dict[str, Any], run: Run, directory: Any, step: int) -> None:
    """Refuses to resume from a checkpoint whose data came from other settings, naming the
    first changed setting (positions saved before a setting was recorded are not checked on
    it), or from other training data."""
    for key, value in _data_settings(run).items():
        if key in position and position[key] != value:
            macro = DATA_SETTINGS[key]
            raise UserInputError(
                f"{directory} was trained with {macro}={position[key]!r}, this run sets "
                f"{macro}={value!r}: resuming would remap the training data; restore "
                f"{macro} or use a new MODEL_DIR"
            )
    # Checkpoints written before the stream was read whole by every process name it so.
    position.setdefault("examples", position.get("host_examples"))
    expected = {"step": step, "examples": run.stream.num_examples}
    if any(position.get(key) != value for key, value in expected.items()):
        raise UserInputError(
            f"{directory}: saved data position {position} does not match this run {expected} "
            "(the training data changed)"
        )


def restore_or_start(run: Run, initial_params: Any) -> TrainState:
    """The newest checkpoint's state (its data position checked), or a fresh step-0 state."""
    removed = saved.remove_partial_saves(run.directory.path)
    if removed:
        logger.warning("removed unfinished checkpoint saves: %s", ", ".join(removed))
    steps = saved.complete_steps(run.directory.path)
    if not steps:
        return run.trainer.create_state(initial_params)
    directory = saved.step_dir(run.directory.path, steps[-1])
    check_data_position(saved.read_data_position(directory), run, directory, steps[-1])
    trainer = run.trainer
    tree = saved.restore_train_state(
        directory, saved.abstract_tree(trainer.state_shapes, trainer.state_shardings))
    state = saved.tree_to_state(tree, trainer.state_shapes.opt_state)
    run.directory.truncate_metrics(after_step=steps[-1])
    multihost.say(f"resuming from {directory} (step {steps[-1]})")
    return state


def _save(run: Run, state: TrainState, step: int, record: dict[str, Any] | None = None) -> None:
    """Starts saving `step` in the background, once the previous save has committed; `record`:
    run.json to write when this one has (an evaluation's)."""
    _commit(run, wait=True)
    run.pending = (step, copy.deepcopy(record))
    if step in saved.complete_steps(run.directory.path):
        _commit(run, wait=True)  # saved before a kill: only run.json and pruning are left
        return
    settings = run.stream.settings
    position = {"step": step, **_data_settings(run), "epoch": run.stream.epoch_of_step(step),
                "examples": run.stream.num_examples, "shard_id": settings.shard_index,
                "num_shards": settings.num_shards}
    with timing.phase("checkpoint_save"):
        run.checkpoints.start(run.directory.path, step, saved.state_to_tree(state), position)


def _commit(run: Run, wait: bool) -> None:
    """Once the save in flight has committed: run.json names it (an evaluation's), then the
    checkpoints run.json no longer needs are pruned. With `wait`, waits for the commit (the
    training stalls for that time); without, acts only if it has committed already, and each
    process decides alone: only process 0 writes, and no process reads run.json or an older
    checkpoint while training."""
    if run.pending is None or not (wait or run.checkpoints.committed()):
        return
    with timing.phase("checkpoint_wait"):
        run.checkpoints.wait()  # raises the background write's error, if any
    step, record = run.pending
    run.pending = None
    if record is not None:
        run.directory.write_run(record)
    _prune(run, step)


def _prune(run: Run, step: int) -> None:
    """Keeps the newest checkpoints and the best one that run.json on disk names."""
    protect = {run.record["best_step"]} if run.record.get("best_step") is not None else set()
    saved.prune_checkpoints(run.directory.path, run.keep_checkpoints, protect | {step})


def _write(run: Run, collection: str, step: int, scalars: dict[str, float]) -> None:
    writer = run.summary_writers.get(collection)
    if writer is not None:
        writer.write_scalars(step, scalars)
        writer.flush()


def check_selection_metric(name: str, metrics: Any) -> None:
    """Refuses a selection metric the task does not compute, naming those it does."""
    if name not in metrics:
        raise UserInputError(
            f"SELECTION_METRIC={name!r} is not among the task's metrics "
            f"({', '.join(sorted(metrics))})"
        )


def _should_stop(run: Run) -> bool:
    """Early stopping: recorded as fired, or the patience used up (a kill can fall between)."""
    record, patience = run.record, run.early_stopping_patience
    return bool(record.get("early_stopped")) or (
        patience is not None and record.get("evaluations_without_improvement", 0) >= patience
    )


def _evaluate(run: Run, state: TrainState, step: int, epoch: float) -> bool:
    """Scores the validation split, saves, updates run.json; True when early stopping fires."""
    with timing.phase("validation"):
        result = run.validator.run(run.trainer, state.params)
    # The save before is named and pruned around as run.json stands, before this one changes it.
    _commit(run, wait=True)
    name = run.selection.metric
    check_selection_metric(name, result.metrics)
    value = result.metrics[name]
    record = run.record
    best = record.get("best_metric")
    # Ties keep the earlier checkpoint.
    improved = run.selection.improves(value, None if best is None else best["value"])
    if improved:
        record["best_step"], record["best_metric"] = step, {"name": name, "value": value}
        record["evaluations_without_improvement"] = 0
    else:
        record["evaluations_without_improvement"] = record.get(
            "evaluations_without_improvement", 0) + 1
    line = {"step": step, "epoch": round(epoch, 4),
            **{f"validation/{key}": value for key, value in result.metrics.items()}}
    run.directory.append_metrics(line)
    _write(run, "validation", step, result.metrics)
    if multihost.is_primary():
        write_predictions(run.directory.path / "validation" / f"predictions_{step}.jsonl", result)
    if run.log_examples:
        for example in result.predictions[:3]:
            multihost.say(f"  example {example['id']}: target={example['target']!r} "
                          f"prediction={example['prediction']!r}")
    multihost.say(f"step {step}: validation " + ", ".join(
        f"{key} {value:.4f}" for key, value in sorted(result.metrics.items())))
    record.update(latest_step=step, finished=False)
    stop = _should_stop(run)
    if stop:
        record["early_stopped"] = True
    # Save; run.json names it once it has committed, then older ones are pruned: a kill in
    # between never loses the best.
    _save(run, state, step, record)
    return stop


def _write_run(run: Run) -> None:
    """run.json from process 0; every process goes on once it is written."""
    run.directory.write_run(run.record)
    multihost.barrier("ct5x:run_json")


def _finish(run: Run, step: int) -> dict[str, Any]:
    compile_ahead.cancel_pending()
    _commit(run, wait=True)
    run.checkpoints.close()
    run.record.update(latest_step=step, finished=True)
    _write_run(run)
    return run.record


def train(run: Run, initial_params: Any) -> dict[str, Any]:
    """Trains to `train_steps` (or early stop) and returns the final run.json contents. A run
    that stops on an error still lets the save in flight commit (it holds the last good state):
    a process that exited first would lose it."""
    try:
        return _train(run, initial_params)
    except BaseException:
        compile_ahead.cancel_pending()
        with contextlib.suppress(Exception):  # the error that stopped the run is the one to see
            _commit(run, wait=True)
        raise


def _train(run: Run, initial_params: Any) -> dict[str, Any]:
    check_selection_metric(run.selection.metric, run.validator.metric_names())
    state = restore_or_start(run, initial_params)
    timing.mark("training_start")
    step = int(state.step)
    evaluated = run.record.get("latest_step") or 0  # as run.json on disk says
    boundary = step == run.train_steps or (step and step % run.eval_period == 0)
    # A resumed run that had stopped early (killed before run.json said finished) stays stopped.
    stopped = _should_stop(run)
    if step > evaluated and boundary:
        # Killed after the evaluation's checkpoint was saved but before run.json named it.
        run.directory.truncate_metrics(after_step=step, drop_validation_at=step)
        stopped = _evaluate(run, state, step, run.stream.epoch_of_step(step))
    run.record["latest_step"] = step
    if run.compile_ahead and step < run.train_steps and not stopped:
        _compile_ahead(run, state, step)
    log = TrainingLog(run, start=step)
    pending: tuple | None = None  # the execution before: read once the next is on its way
    executions = 0
    while step < run.train_steps and not stopped:
        # Up to STEPS_PER_EXECUTION batches that share one length bucket.
        batches = run.stream.execution(step, _execution_size(run, step))
        state, metrics = run.trainer.train(state, batches)
        if "first_step" not in timing.current().marks:
            jax.block_until_ready(metrics.values)
            timing.mark("first_step")
        if pending is not None:
            log.record(*pending)
        pending, step = (step, batches, metrics), step + len(batches)
        executions += 1
        _commit(run, wait=False)
        if multihost.preemption_sync_point(executions):
            log.record(*pending)
            _save(run, state, step)
            _commit(run, wait=True)
            raise Preempted(f"preempted at step {step}: checkpoint_{step} saved; the same "
                            "command resumes")
        # An execution never runs past an evaluation or a checkpoint: `state` is this step's.
        if step % run.eval_period == 0 or step == run.train_steps:
            log.record(*pending)
            pending = None
            stopped = _evaluate(run, state, step, run.stream.epoch_of_step(step))
            log.restart_window()
        elif run.checkpoint_period and step % run.checkpoint_period == 0:
            log.record(*pending)
            pending = None
            _save(run, state, step)
    timing.mark("training_end")
    log.close()
    if stopped:
        multihost.say(f"early stopping at step {step}: no better {run.selection.metric} in "
                      f"{run.early_stopping_patience} evaluations")
    return _finish(run, step)


class TrainingLog:
    """Checks every step's loss and gradient norm and logs every LOG_PERIOD steps: metrics.jsonl
    and TensorBoard (process 0) and the progress line, with the loss averaged over the steps
    since the previous line.

    Throughput is measured since the last log line, when an execution has finished; log lines
    that fall inside one execution of several steps share its figure.
    """

    def __init__(self, run: Run, start: int):
        self.run = run
        self.progress = Progress(run.train_steps, start=start) if multihost.is_primary() else None
        self.losses: list[float] = []  # the steps' losses since the last log line
        self.restart_window()

    def restart_window(self) -> None:
        self.tokens, self.window_start = 0, time.perf_counter()

    def record(self, first_step: int, batches: list[dict], metrics: ExecutionMetrics) -> None:
        """The steps after `first_step` that one execution ran on `batches`."""
        run = self.run
        values = metrics.fetch()
        self.tokens += sum(_tokens(batch) for batch in batches)
        tokens_per_s = None
        for offset in range(metrics.count):
            step = first_step + offset + 1
            step_metrics = {name: float(value[offset]) for name, value in values.items()}
            _check_finite(step, step_metrics)
            self.losses.append(step_metrics["loss"])
            boundary = step % run.eval_period == 0 or step == run.train_steps
            if step % run.log_period and not boundary:
                continue
            if tokens_per_s is None:
                # Every data shard's tokens, estimated from this process's shard.
                tokens = self.tokens * run.stream.settings.num_shards
                elapsed = time.perf_counter() - self.window_start
                tokens_per_s = tokens / elapsed if elapsed > 0 else 0.0
                self.restart_window()
            # The mean over the steps since the last log line, as transformers' Trainer logs it.
            loss, self.losses = float(np.mean(self.losses)), []
            line = {"step": step, "epoch": round(run.stream.epoch_of_step(step), 4),
                    "loss": loss, "learning_rate": float(run.trainer.learning_rate(step - 1)),
                    "tokens_per_s": round(tokens_per_s, 1),
                    "grad_norm": step_metrics["grad_norm"]}
            run.directory.append_metrics(line)
            _write(run, "train", step, {k: v for k, v in line.items() if k != "step"})
            if self.progress is not None:
                self.progress.update(step, loss, tokens_per_s)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        for writer in self.run.summary_writers.values():
            writer.close()


def _compile_ahead(run: Run, state: TrainState, step: int) -> None:
    """Compiles the first execution's program while, on a background thread, the programs the
    run calls after it compile: the training programs of the other packed row counts, then the
    validation's. The first is traced before the background starts, as tracing holds Python's
    GIL (two threads tracing at once slowed the first by half); XLA's compilation does not."""
    shapes = compile_ahead.abstract(state)
    first = run.stream.execution(step, _execution_size(run, step))
    lowered = run.trainer.lower_train(shapes, first)
    for batch in run.stream.packed_shapes(first[0]):
        run.trainer.compile_train_ahead(shapes, [batch])
    run.validator.compile_ahead(run.trainer, shapes.params)
    lowered.compile()


def _execution_size(run: Run, step: int) -> int:
    """The most steps the execution from `step` may take (the stream may take fewer)."""
    return min(run.trainer.steps_per_execution, _next_stop(run, step) - step)


def _next_stop(run: Run, step: int) -> int:
    """The first step after `step` whose state the loop needs: an evaluation, a checkpoint or
    the last step."""
    stops = [run.train_steps, (step // run.eval_period + 1) * run.eval_period]
    if run.checkpoint_period:
        stops.append((step // run.checkpoint_period + 1) * run.checkpoint_period)
    return min(stops)


def _check_finite(step: int, metrics: dict) -> None:
    """Stops on a NaN or infinite loss or gradient: nothing computed from it is ever saved."""
    for name in ("loss", "grad_norm"):
        value = float(metrics[name])
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"{name} is {value} at step {step}; the last good checkpoint is kept"
            )
