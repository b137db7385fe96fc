"""Runs a grid on this machine, one run after another, then scores and reports the chosen runs.

Runs are trained in this process through `ct5x.train.run`: JAX, TensorFlow and the compiled
steps of runs with the same shapes are loaded once, which saves a subprocess start (tens of
seconds) per run, most of a small run's time. A run that raises is reported (traceback in
MODEL_DIR/sweep_error.log) and the sweep goes on; Ctrl-C stops the sweep, and the next `ct5x
sweep run` skips finished runs and resumes the interrupted one from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from ct5x.errors import UserInputError
from ct5x.jsonl import write_atomic
from ct5x.sweep.grid import Experiment, Run
from ct5x.sweep.selection import Choice, choose_learning_rates, chosen_runs

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"

ERROR_LOG = "sweep_error.log"
TrainFn = Callable[[Sequence[str], Sequence[str]], dict]


@dataclasses.dataclass
class SweepSummary:
    """What happened to each run of the sweep."""

    trained: list[Run] = dataclasses.field(default_factory=list)
    skipped: list[Run] = dataclasses.field(default_factory=list)
    failed: list[tuple[Run, str]] = dataclasses.field(default_factory=list)


def is_finished(run: Run) -> bool:
    """True when the run's run.json says training finished."""
    path = pathlib.Path(run.model_dir) / "run.json"
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("finished"))
    except json.JSONDecodeError:
        return False


def default_train_fn(gin_files: Sequence[str], bindings: Sequence[str]) -> dict:
    """`ct5x.train.run`, imported when the first run starts."""
    from ct5x.train import run

    return run(list(gin_files), list(bindings))


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def check_checkpoints(experiment: Experiment, runs: Sequence[Run]) -> None:
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
        if not pathlib.Path(model.checkpoint).exists():
            raise UserInputError(f"model {model.name}: checkpoint {model.checkpoint} not found")


def train_runs(runs: Sequence[Run], train_fn: TrainFn = default_train_fn,
               console: Console | None = None) -> SweepSummary:
    """Train each unfinished run in turn; one line per run keeps the overall count and time."""
    console = console or Console(stderr=True)
    summary = SweepSummary()
    started = time.monotonic()
    for position, run in enumerate(runs, start=1):
        header = f"[{position}/{len(runs)}] {run.model} {run.task} lr={run.learning_rate:g}"
        if is_finished(run):
            summary.skipped.append(run)
            console.print(f"{header}: finished earlier, skipped")
            continue
        resumed = any(pathlib.Path(run.model_dir).glob("checkpoint_*"))
        console.rule(f"{header}{' (resuming)' if resumed else ''}")
        run_started = time.monotonic()
        try:
            train_fn(run.gin_files, run.bindings)
        except Exception as error:  # noqa: BLE001 - one failed run must not stop the grid
            first_line = (str(error).splitlines() or [type(error).__name__])[0]
            summary.failed.append((run, first_line))
            _write_error_log(run, traceback.format_exc())
            console.print(f"{header}: FAILED ({type(error).__name__}: {first_line}); "
                          f"details in {pathlib.Path(run.model_dir) / ERROR_LOG}")
            continue
        summary.trained.append(run)
        done = len(summary.trained)
        elapsed = time.monotonic() - started
        left = (len(runs) - position) * elapsed / max(done, 1)
        console.print(f"{header}: done in {_duration(time.monotonic() - run_started)}; "
                      f"{position}/{len(runs)} handled, {len(summary.failed)} failed, "
                      f"about {_duration(left)} left")
    return summary


def _write_error_log(run: Run, text: str) -> None:
    directory = pathlib.Path(run.model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ERROR_LOG).write_text(text, encoding="utf-8")


def experiment_dir(experiment: Experiment) -> pathlib.Path:
    return pathlib.Path(experiment.runs_dir) / experiment.name


def write_choices(experiment: Experiment, choices: Sequence[Choice]) -> pathlib.Path:
    """learning_rates.jsonl beside the runs: every group's means and chosen rate."""
    directory = experiment_dir(experiment)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "learning_rates.jsonl"
    write_atomic(path, [choice.as_record() for choice in choices])
    return path


def evaluate_and_report(experiment: Experiment, runs: Sequence[Run],
                        console: Console | None = None, report_settings: Any = None,
                        evaluation_settings: Any = None) -> dict:
    """Choose learning rates, score the chosen runs on the test split, write the report.

    Returns {"choices", "evaluated", "report_dir", "report", "unresolved",
    "evaluation_failures"}; groups with no complete rate are listed in "unresolved" and left out.
    """
    from ct5x.evaluation import EvaluationSettings, evaluate_runs, write_report

    console = console or Console(stderr=True)
    choices = choose_learning_rates(runs)
    choices_path = write_choices(experiment, choices)
    unresolved = [choice.as_record() for choice in choices if choice.learning_rate is None]
    for record in unresolved:
        console.print(f"no complete learning rate yet for {record['model']} {record['base_task']}"
                      f" (fraction {record['fraction']}, site {record['site']}): left out")
    selected = [run for run in chosen_runs(runs, choices) if is_finished(run)]
    console.print(f"learning rates chosen ({choices_path}); scoring {len(selected)} runs")
    failures = []
    for run in selected:
        summary = evaluate_runs(run.model_dir, evaluation_settings or EvaluationSettings(),
                                show_progress=False)
        failures += summary.failed
    for directory, message in failures:
        console.print(f"evaluation failed: {directory}: {message}")
    chosen_dir = collect_chosen_scores(experiment, selected)
    report_dir = experiment_dir(experiment) / "report"
    report = write_report(chosen_dir, report_dir, report_settings)
    return {"choices": choices, "evaluated": selected, "report_dir": report_dir,
            "report": report, "unresolved": unresolved, "evaluation_failures": failures}


def collect_chosen_scores(experiment: Experiment, runs: Sequence[Run]) -> pathlib.Path:
    """A fresh `<experiment>/chosen/` holding a copy of each chosen run's metrics.json, so that
    the report sees exactly one score per fold even where other rates were scored too."""
    chosen = experiment_dir(experiment) / "chosen"
    if chosen.exists():
        shutil.rmtree(chosen)
    for run in runs:
        source = pathlib.Path(run.model_dir) / METRICS_FILE
        if source.is_file():
            target = chosen / pathlib.Path(run.model_dir).relative_to(experiment_dir(experiment))
            target.mkdir(parents=True)
            shutil.copyfile(source, target / METRICS_FILE)
    return chosen
