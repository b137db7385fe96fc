"""The loop of a run: resume, step, log, evaluate, keep the best checkpoint, stop.

A checkpoint is saved at every evaluation (and every CHECKPOINT_PERIOD steps); the best one by the
task's selection metric and the newest KEEP_CHECKPOINTS are kept. run.json is rewritten after each
evaluation, so a reader always finds a consistent run, and a killed run resumes from its newest
checkpoint with the same data position and dropout randomness.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import jax
import numpy as np

from ct5x import timing
from ct5x.checkpoints import train_state as saved
from ct5x.data_pipeline import TrainingStream
from ct5x.errors import UserInputError
from ct5x.progress import Progress
from ct5x.run_directory import RunDirectory
from ct5x.trainer import Trainer, TrainState
from ct5x.validation import Validator, write_predictions

logger = logging.getLogger(__name__)


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the message names the step."""


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
    selection_metric: str
    early_stopping_patience: int | None
    log_examples: bool = False
    summary_writers: dict[str, Any] = dataclasses.field(default_factory=dict)


def _tokens(batch: dict[str, np.ndarray]) -> int:
    """Non-padding input and target tokens of a host batch."""
    inputs = np.sum(batch["encoder_input_tokens"] > 0)
    return int(inputs + np.sum(batch["decoder_loss_weights"] > 0))


def restore_or_start(run: Run, initial_params: Any) -> TrainState:
    """The newest checkpoint's state (its data position checked), or a fresh step-0 state."""
    removed = saved.remove_partial_saves(run.directory.path)
    if removed:
        logger.warning("removed unfinished checkpoint saves: %s", ", ".join(removed))
    steps = saved.complete_steps(run.directory.path)
    if not steps:
        return run.trainer.create_state(initial_params)
    directory = saved.step_dir(run.directory.path, steps[-1])
    tree = saved.restore_train_state(directory, run.trainer.abstract_tree())
    state = run.trainer.tree_to_state(tree)
    position = saved.read_data_position(directory)
    expected = {"step": steps[-1], "seed": run.stream.settings.seed,
                "host_examples": run.stream.num_examples}
    if any(position.get(key) != value for key, value in expected.items()):
        raise UserInputError(
            f"{directory}: saved data position {position} does not match this run {expected} "
            "(RANDOM_SEED or the training data changed)"
        )
    run.directory.truncate_metrics(after_step=steps[-1])
    print(f"resuming from {directory} (step {steps[-1]})", flush=True)
    return state


def _save(run: Run, state: TrainState, step: int) -> None:
    if step in saved.complete_steps(run.directory.path):
        return
    position = {"step": step, "seed": run.stream.settings.seed,
                "epoch": run.stream.epoch_of_step(step),
                "host_examples": run.stream.num_examples}
    with timing.phase("checkpoint_save"):
        saved.save_train_state(run.directory.path, step, run.trainer.state_to_tree(state),
                               position)


def _prune(run: Run, step: int) -> None:
    """Keeps the newest checkpoints and the best one that run.json on disk names."""
    protect = {run.record["best_step"]} if run.record.get("best_step") is not None else set()
    saved.prune_checkpoints(run.directory.path, run.keep_checkpoints, protect | {step})


def _write(run: Run, collection: str, step: int, scalars: dict[str, float]) -> None:
    writer = run.summary_writers.get(collection)
    if writer is not None:
        writer.write_scalars(step, scalars)
        writer.flush()


def _evaluate(run: Run, state: TrainState, step: int, epoch: float) -> bool:
    """Scores the validation split, saves, updates run.json; True when early stopping fires."""
    with timing.phase("validation"):
        result = run.validator.run(run.trainer, state.params)
    name = run.selection_metric
    if name not in result.metrics:
        raise UserInputError(
            f"selection metric {name!r} is not among the task's metrics "
            f"({', '.join(sorted(result.metrics))}); set SELECTION_METRIC"
        )
    value = result.metrics[name]
    record = run.record
    best = record.get("best_metric")
    improved = best is None or value > best["value"]
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
    if jax.process_index() == 0:
        write_predictions(run.directory.path / "validation" / f"predictions_{step}.jsonl", result)
    if run.log_examples:
        for example in result.predictions[:3]:
            print(f"  example {example['id']}: target={example['target']!r} "
                  f"prediction={example['prediction']!r}", flush=True)
    print(f"step {step}: validation " + ", ".join(
        f"{key} {value:.4f}" for key, value in sorted(result.metrics.items())), flush=True)
    # Save, then name it in run.json, then prune: a kill in between never loses the best.
    _save(run, state, step)
    record.update(latest_step=step, finished=False)
    run.directory.write_run(record)
    _prune(run, step)
    patience = run.early_stopping_patience
    stop = patience is not None and record["evaluations_without_improvement"] >= patience
    return stop


def _finish(run: Run, step: int) -> dict[str, Any]:
    run.record.update(latest_step=step, finished=True)
    run.directory.write_run(run.record)
    return run.record


def train(run: Run, initial_params: Any) -> dict[str, Any]:
    """Trains to `train_steps` (or early stop) and returns the final run.json contents."""
    state = restore_or_start(run, initial_params)
    timing.mark("training_start")
    step = int(state.step)
    evaluated = run.record.get("latest_step") or 0  # as run.json on disk says
    boundary = step == run.train_steps or (step and step % run.eval_period == 0)
    if step > evaluated and boundary:
        # Killed after the evaluation's checkpoint was saved but before run.json named it.
        run.directory.truncate_metrics(after_step=step, drop_validation_at=step)
        _evaluate(run, state, step, run.stream.epoch_of_step(step))
    run.record["latest_step"] = step
    progress = Progress(run.train_steps, start=step)
    pending: tuple[int, Any] | None = None  # (step, metrics) read one step late: no stall
    tokens, window_start = 0, time.perf_counter()
    stopped = False
    while step < run.train_steps and not stopped:
        state, executed = _execute(run, state, step)
        if "first_step" not in timing.current().marks:
            jax.block_until_ready(executed[-1][1])
            timing.mark("first_step")
        tokens += sum(_tokens(batch) for batch, _ in executed)
        # Throughput since the last log line, measured when an execution has finished; log
        # lines that fall inside one execution of several steps share its figure.
        tokens_per_s = None
        for _, metrics in executed:
            step += 1
            if pending is not None:
                _check_finite(*pending)
            pending = (step, metrics)
            boundary = step % run.eval_period == 0 or step == run.train_steps
            if step % run.log_period == 0 or boundary:
                _check_finite(*pending)
                if tokens_per_s is None:
                    elapsed = time.perf_counter() - window_start
                    tokens_per_s = tokens * jax.process_count() / elapsed if elapsed > 0 else 0.0
                    tokens, window_start = 0, time.perf_counter()
                epoch = run.stream.epoch_of_step(step)
                loss = float(metrics["loss"])
                learning_rate = float(run.trainer.learning_rate(step - 1))
                line = {"step": step, "epoch": round(epoch, 4), "loss": loss,
                        "learning_rate": learning_rate, "tokens_per_s": round(tokens_per_s, 1),
                        "grad_norm": float(metrics["grad_norm"])}
                run.directory.append_metrics(line)
                _write(run, "train", step, {k: v for k, v in line.items() if k != "step"})
                progress.update(step, loss, tokens_per_s)
        # `_execute` never runs past an evaluation or a checkpoint: `state` is this step's.
        if boundary:
            stopped = _evaluate(run, state, step, run.stream.epoch_of_step(step))
            tokens, window_start = 0, time.perf_counter()
        elif run.checkpoint_period and step % run.checkpoint_period == 0:
            _check_finite(*pending)
            _save(run, state, step)
            _prune(run, step)
    timing.mark("training_end")
    progress.close()
    for writer in run.summary_writers.values():
        writer.close()
    if stopped:
        print(f"early stopping at step {step}: no better {run.selection_metric} in "
              f"{run.early_stopping_patience} evaluations", flush=True)
    return _finish(run, step)


def _next_stop(run: Run, step: int) -> int:
    """The first step after `step` whose state the loop needs: an evaluation, a checkpoint or
    the last step."""
    stops = [run.train_steps, (step // run.eval_period + 1) * run.eval_period]
    if run.checkpoint_period:
        stops.append((step // run.checkpoint_period + 1) * run.checkpoint_period)
    return min(stops)


def _execute(run: Run, state: TrainState, step: int) -> tuple[TrainState, list[tuple]]:
    """STEPS_PER_EXECUTION steps in one execution, fewer where an evaluation, a checkpoint or the
    end comes first; returns each step's (host batch, metrics)."""
    if run.trainer.steps_per_execution > 1:
        count = min(run.trainer.steps_per_execution, _next_stop(run, step) - step)
        batches = [run.stream.batch(index) for index in range(step, step + count)]
        state, stacked = run.trainer.train_steps(state, batches)
        return state, [(batch, {name: values[i] for name, values in stacked.items()})
                       for i, batch in enumerate(batches)]
    batch = run.stream.batch(step)
    state, metrics = run.trainer.train_step(state, batch)
    return state, [(batch, metrics)]


def _check_finite(step: int, metrics: dict) -> None:
    """Stops on a NaN or infinite loss or gradient: nothing computed from it is ever saved."""
    for name in ("loss", "grad_norm"):
        value = float(metrics[name])
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"{name} is {value} at step {step}; the last good checkpoint is kept"
            )
