"""Runs a grid on this machine, one run after another, then scores and reports the chosen runs.

Runs are trained in this process through `ct5x.train.run`: JAX, TensorFlow and the compiled
steps of runs with the same shapes are loaded once, which saves a subprocess start (tens of
seconds) per run, most of a small run's time. A run that raises is reported (traceback in
MODEL_DIR/sweep_error.log) and the sweep goes on; Ctrl-C stops the sweep, and the next `ct5x
sweep run` skips finished runs and resumes the interrupted one from its latest checkpoint. The
report is written from the runs that scored, and lists every run that failed or is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from etils import epath
from rich.console import Console

from ct5x import storage
from ct5x.atomic import write_text
from ct5x.errors import UserInputError
from ct5x.jsonl import write_atomic
from ct5x.run_record import SWEEP_ERROR_LOG, TEST_METRICS_FILE, read_run_record
from ct5x.sweep.grid import Experiment, GridRun
from ct5x.sweep.selection import Choice, choose_learning_rates, chosen_runs

log = logging.getLogger(__name__)

TrainFn = Callable[[Sequence[str], Sequence[str]], dict]


@dataclasses.dataclass
class TrainingOutcome:
    """What happened to each run of the sweep's training."""

    trained: list[GridRun] = dataclasses.field(default_factory=list)
    skipped: list[GridRun] = dataclasses.field(default_factory=list)
    failed: list[tuple[GridRun, str]] = dataclasses.field(default_factory=list)


def is_finished(run: GridRun) -> bool:
    """True when the run's run.json says training finished (a bad run.json is an error)."""
    record = read_run_record(run.model_dir)
    return record is not None and record.finished


def default_train_fn(gin_files: Sequence[str], bindings: Sequence[str]) -> dict:
    """`ct5x.train.run`, imported when the first run starts."""
    from ct5x.train import run

    return run(list(gin_files), list(bindings))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def check_checkpoints(experiment: Experiment, runs: Sequence[GridRun]) -> None:
    """Every model a run needs has its checkpoint bound and present, before anything starts."""
    needed = {run.model for run in runs}
    for model in experiment.models:
        if model.name not in needed:
            continue
        macro = f"{model.key.upper()}_CHECKPOINT"
        if not model.checkpoint:
            if model.gin_file:
                continue  # trained from scratch
            raise UserInputError(f"model {model.name}: no checkpoint; bind --gin.{macro}")
        if not storage.path(model.checkpoint).exists():
            raise UserInputError(f"model {model.name}: checkpoint {model.checkpoint} not found")


def train_runs(runs: Sequence[GridRun], train_fn: TrainFn = default_train_fn,
               console: Console | None = None) -> TrainingOutcome:
    """Train each unfinished run in turn; one line per run keeps the overall count and time."""
    console = console or Console(stderr=True, soft_wrap=True)
    outcome = TrainingOutcome()
    started = time.monotonic()
    for position, run in enumerate(runs, start=1):
        header = f"[{position}/{len(runs)}] {run.model} {run.task} lr={run.learning_rate:g}"
        run_started = time.monotonic()
        try:
            if is_finished(run):
                outcome.skipped.append(run)
                console.print(f"{header}: finished earlier, skipped")
                continue
            resumed = any(storage.path(run.model_dir).glob("checkpoint_*"))
            console.rule(f"{header}{' (resuming)' if resumed else ''}")
            train_fn(run.gin_files, run.bindings)
        except Exception as error:  # noqa: BLE001 - one failed run must not stop the grid
            first_line = (str(error).splitlines() or [type(error).__name__])[0]
            outcome.failed.append((run, first_line))
            _write_error_log(run, traceback.format_exc())
            console.print(f"{header}: FAILED ({type(error).__name__}: {first_line}); "
                          f"details in {storage.path(run.model_dir) / SWEEP_ERROR_LOG}")
            continue
        outcome.trained.append(run)
        done = len(outcome.trained)
        elapsed = time.monotonic() - started
        left = (len(runs) - position) * elapsed / max(done, 1)
        console.print(f"{header}: done in {_duration(time.monotonic() - run_started)}; "
                      f"{position}/{len(runs)} handled, {len(outcome.failed)} failed, "
                      f"about {_duration(left)} left")
    return outcome


def _write_error_log(run: GridRun, text: str) -> None:
    directory = storage.path(run.model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / SWEEP_ERROR_LOG, text)


def experiment_dir(experiment: Experiment) -> epath.Path:
    return storage.path(experiment.runs_dir) / experiment.name


def write_choices(experiment: Experiment, choices: Sequence[Choice]) -> epath.Path:
    """learning_rates.jsonl beside the runs: every group's means and chosen rate."""
    directory = experiment_dir(experiment)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "learning_rates.jsonl"
    write_atomic(path, [choice.as_record() for choice in choices])
    return path


def _score(runs: Sequence[GridRun], settings: Any) -> tuple[list[epath.Path], list]:
    """Scores each run on the test split; (metrics files written or kept, problems)."""
    from ct5x.evaluation import evaluate_runs
    from ct5x.evaluation.collect import ReportProblem

    files, problems = [], []
    for run in runs:
        outcome = evaluate_runs(run.model_dir, settings, show_progress=False)
        problems += [ReportProblem(str(directory), reason) for directory, reason in
                     outcome.failed]
        problems += [ReportProblem(str(directory), f"internal error while scoring: {reason}")
                     for directory, reason, _ in outcome.internal_errors]
        path = storage.path(run.model_dir) / TEST_METRICS_FILE
        if not outcome.failed and not outcome.internal_errors and path.is_file():
            files.append(path)
    return files, problems


def choice_problems(choices: Sequence[Choice]) -> list:
    """The report's problems of the learning-rate choice: each fold without a score, and each
    group left without a rate."""
    from ct5x.evaluation.collect import ReportProblem

    problems = []
    for choice in choices:
        problems += [ReportProblem(fold.model_dir, f"no validation score: {fold.reason}")
                     for fold in choice.missing]
        if choice.learning_rate is None:
            problems.append(ReportProblem(choice.where, choice.conflict or "no learning rate "
                                          "chosen: some rate lost a fold (listed)"))
    return problems


def evaluate_and_report(experiment: Experiment, runs: Sequence[GridRun],
                        console: Console | None = None, report_settings: Any = None,
                        evaluation_settings: Any = None, allow_incomplete: bool = False) -> dict:
    """Choose learning rates, score the chosen runs on the test split, write the report from the
    runs that scored, listing every failed and missing run.

    Returns {"choices", "evaluated", "report_dir", "report", "unresolved", "problems"}:
    "unresolved" lists the groups without a rate, "problems" everything the report lists as
    failed or missing (empty when the sweep is complete).
    """
    from ct5x.evaluation import EvaluationSettings, ReportSettings, write_report

    console = console or Console(stderr=True, soft_wrap=True)
    # A row is complete with the experiment's folds (0..n-1), which may be fewer than the task's.
    report_settings = report_settings or ReportSettings(num_folds=len(experiment.folds))
    choices = choose_learning_rates(runs, allow_incomplete)
    choices_path = write_choices(experiment, choices)
    for choice in choices:
        if choice.missing or choice.conflict:
            console.print(choice.describe())
    unscored = {fold.model_dir for choice in choices for fold in choice.missing}
    selected = [run for run in chosen_runs(runs, choices) if run.model_dir not in unscored]
    console.print(f"learning rates chosen ({choices_path}); scoring {len(selected)} runs")
    files, scoring_problems = _score(selected, evaluation_settings or EvaluationSettings())
    problems = choice_problems(choices) + scoring_problems
    for problem in scoring_problems:
        console.print(f"evaluation failed: {problem}")
    report_dir = experiment_dir(experiment) / "report"
    report = write_report(files, report_dir, report_settings, problems)
    return {"choices": choices, "evaluated": selected, "report_dir": report_dir,
            "report": report, "problems": report["problems"],
            "unresolved": [choice.as_record() for choice in choices
                           if choice.learning_rate is None]}
