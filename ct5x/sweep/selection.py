"""The learning-rate choice of the paper's low-resource runs: per group (model, grid block, task,
fraction, site), the rate with the best mean validation score over the folds.

A run's validation score is the `best_metric` its run.json records (the selection metric at its
best checkpoint, better by the metric's recorded direction). The choice is made over complete folds
only: a group is decided when every fold of every rate has finished. A group where some rate lost a
fold (not started, unfinished, failed, or an unreadable run.json) is left undecided and its missing
folds are listed, so a failed fold never silently hands the group to another rate. With
`allow_incomplete` the best of the complete rates is taken anyway (the older rule), and the choice
says it was made on incomplete evidence. A group with one rate has nothing to choose: its rate is
taken, and its missing folds are listed all the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ct5x import storage
from ct5x.errors import UserInputError
from ct5x.run_record import SWEEP_ERROR_LOG, read_run_record
from ct5x.sweep.grid import GridRun

Group = tuple[str, str, str, float | None, str | None]
# (metric, value, higher is better), or why the run has no score.
RunScore = tuple[str, float, bool] | str


@dataclasses.dataclass(frozen=True)
class MissingFold:
    """A fold of a rate that has no validation score, and why."""

    learning_rate: float
    fold: int
    model_dir: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Choice:
    """A group's rate (None: undecided), every rate's mean validation score (None where folds
    are missing), the folds missing, and whether the choice ignored some (`allow_incomplete`)."""

    group: Group
    metric: str | None
    learning_rate: float | None
    mean_scores: dict[float, float | None]
    missing: tuple[MissingFold, ...] = ()
    incomplete: bool = False
    # Why a group with all its folds still has no rate (its folds chose on different metrics).
    conflict: str | None = None

    def as_record(self) -> dict:
        model, block, task, fraction, site = self.group
        return {
            "model": model, "block": block, "base_task": task, "fraction": fraction,
            "site": site, "metric": self.metric, "learning_rate": self.learning_rate,
            "incomplete": self.incomplete, "conflict": self.conflict,
            "mean_validation": {f"{rate:g}": score for rate, score in self.mean_scores.items()},
            "missing": [dataclasses.asdict(fold) for fold in self.missing],
        }

    @property
    def where(self) -> str:
        """The group in words: model, task, grid block, fraction and site."""
        model, block, task, fraction, site = self.group
        return f"{model} {task} (block {block}, fraction {fraction}, site {site})"

    def describe(self) -> str:
        """One line: the group, and why it has no rate or was decided on incomplete folds."""
        where = self.where
        lost = "; ".join(f"lr {fold.learning_rate:g} fold {fold.fold}: {fold.reason}"
                         for fold in self.missing)
        if self.conflict:
            return f"{where}: no learning rate: {self.conflict}"
        if self.learning_rate is None:
            return f"{where}: no learning rate chosen, folds missing: {lost}"
        return f"{where}: lr {self.learning_rate:g} taken with folds missing: {lost}"


def run_score(run: GridRun) -> RunScore:
    """A run's validation score from its run.json, or the reason it has none."""
    directory = storage.path(run.model_dir)
    try:
        record = read_run_record(directory)
    except UserInputError as error:
        return str(error)
    if record is None or not record.finished:
        if (directory / SWEEP_ERROR_LOG).is_file():
            return f"training failed (see {directory / SWEEP_ERROR_LOG})"
        return "not started" if record is None else "training has not finished"
    if record.best_metric is None or record.selection is None:
        return "finished without a validation score"
    return record.best_metric.name, record.best_metric.value, record.selection.higher_is_better


def _mean_scores(by_rate: dict[float, list[GridRun]], score: Callable[[GridRun], RunScore]):
    """(means per rate, missing folds, the metric and direction sets seen)."""
    means: dict[float, float | None] = {}
    missing, metrics = [], set()
    for rate, rate_runs in by_rate.items():
        values = []
        for run in rate_runs:
            result = score(run)
            if isinstance(result, str):
                missing.append(MissingFold(rate, run.fold, run.model_dir, result))
                continue
            name, value, higher = result
            metrics.add((name, higher))
            values.append(value)
        means[rate] = sum(values) / len(values) if len(values) == len(rate_runs) else None
    return means, tuple(missing), metrics


def choose_learning_rates(runs: Sequence[GridRun], allow_incomplete: bool = False,
                          score: Callable[[GridRun], RunScore] = run_score) -> list[Choice]:
    """One `Choice` per group, in the grid's order; ties go to the rate listed first."""
    groups: dict[Group, dict[float, list[GridRun]]] = {}
    for run in runs:
        groups.setdefault(run.group, {}).setdefault(run.learning_rate, []).append(run)
    choices = []
    for group, by_rate in groups.items():
        means, missing, metrics = _mean_scores(by_rate, score)
        if len(metrics) > 1:
            conflict = (f"folds were selected on different metrics {sorted(metrics)}; their "
                        "scores cannot be averaged")
            choices.append(Choice(group, None, None, means, missing, conflict=conflict))
            continue
        metric, higher = next(iter(metrics), (None, True))
        complete = {rate: mean for rate, mean in means.items() if mean is not None}
        chosen = None
        if len(by_rate) == 1:  # nothing to choose: its folds are scored, missing ones listed
            chosen = next(iter(by_rate))
        elif complete and (not missing or allow_incomplete):
            pick = max if higher else min
            chosen = pick(complete, key=lambda rate: complete[rate])
        choices.append(Choice(group, metric, chosen, means, missing,
                              incomplete=bool(missing) and chosen is not None))
    return choices


def chosen_runs(runs: Sequence[GridRun], choices: Sequence[Choice]) -> list[GridRun]:
    """The runs at their group's chosen rate (undecided groups contribute none)."""
    rate_of = {choice.group: choice.learning_rate for choice in choices}
    return [run for run in runs if rate_of.get(run.group) == run.learning_rate]
