"""The learning-rate choice of the paper's low-resource runs: per model and setting (task,
fraction, site), the rate with the best mean validation score over the folds.

A run's validation score is the `best_metric` its run.json records (the selection metric at its
best checkpoint). A rate competes only when every fold of it has finished, so a half-done search
never picks a rate on fewer folds than its rivals.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence

from ct5x.errors import UserInputError
from ct5x.sweep.grid import Run

Group = tuple[str, str, str, float | None, str | None]


@dataclasses.dataclass(frozen=True)
class Choice:
    """The chosen rate of one group (None when no rate has all its folds) and every rate's
    mean validation score (None where folds are missing)."""

    group: Group
    metric: str | None
    learning_rate: float | None
    mean_scores: Mapping[float, float | None]

    def as_record(self) -> dict:
        model, setting, task, fraction, site = self.group
        return {
            "model": model, "setting": setting, "base_task": task, "fraction": fraction,
            "site": site, "metric": self.metric, "learning_rate": self.learning_rate,
            "mean_validation": {f"{rate:g}": score for rate, score in self.mean_scores.items()},
        }


def read_best_metric(run: Run) -> tuple[str, float] | None:
    """(metric name, value) from a finished run's run.json; None if unfinished or missing."""
    path = pathlib.Path(run.model_dir) / "run.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}:{error.lineno}: not valid JSON") from None
    best = record.get("best_metric")
    if not record.get("finished") or not isinstance(best, Mapping):
        return None
    value = best.get("value")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return str(best.get("name")), float(value)


def choose_learning_rates(
    runs: Sequence[Run],
    best_metric: Callable[[Run], tuple[str, float] | None] = read_best_metric,
) -> list[Choice]:
    """One `Choice` per group, in the grid's order; ties go to the rate listed first."""
    groups: dict[Group, dict[float, list[Run]]] = {}
    for run in runs:
        groups.setdefault(run.group, {}).setdefault(run.learning_rate, []).append(run)
    choices = []
    for group, by_rate in groups.items():
        means: dict[float, float | None] = {}
        names = set()
        for rate, rate_runs in by_rate.items():
            results = [best_metric(run) for run in rate_runs]
            if any(result is None for result in results):
                means[rate] = None
                continue
            names.update(name for name, _ in results)
            means[rate] = sum(value for _, value in results) / len(results)
        if len(names) > 1:
            raise UserInputError(
                f"{group[0]} {group[2]}: folds were selected on different metrics "
                f"{sorted(names)}; their scores cannot be averaged"
            )
        complete = {rate: mean for rate, mean in means.items() if mean is not None}
        chosen = max(complete, key=lambda rate: complete[rate]) if complete else None
        choices.append(Choice(group, names.pop() if names else None, chosen, means))
    return choices


def chosen_runs(runs: Sequence[Run], choices: Sequence[Choice]) -> list[Run]:
    """The runs at their group's chosen rate (groups without a choice contribute none)."""
    rate_of = {choice.group: choice.learning_rate for choice in choices}
    return [run for run in runs if rate_of.get(run.group) == run.learning_rate]
