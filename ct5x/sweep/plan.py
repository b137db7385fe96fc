"""Reading an experiment gin file into its runs, and printing the plan (table or JSON Lines)."""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import json
from collections.abc import Sequence

from ct5x.errors import UserInputError
from ct5x.sweep.grid import Experiment, GridRun, expand

CACHE_MACRO = "COMPILATION_CACHE_DIR"


def load_experiment(path: str, bindings: Sequence[str] = ()) -> Experiment:
    """The `EXPERIMENT` an experiment gin file binds (path, or name under ct5x's gin/)."""
    from ct5x.gin_utils import is_bound, macro, parse_gin

    parse_gin([path], bindings)
    experiment = macro("EXPERIMENT")
    if not isinstance(experiment, Experiment):
        raise UserInputError(f"{path}: EXPERIMENT must be @grid.experiment()")
    if is_bound(CACHE_MACRO):  # e.g. --gin.COMPILATION_CACHE_DIR=None: every run gets it
        bound = {**experiment.bindings, CACHE_MACRO: macro(CACHE_MACRO)}
        experiment = dataclasses.replace(experiment, bindings=bound)
    return experiment


def select(runs: Sequence[GridRun], only: str | None = None,
           index: int | None = None) -> list[GridRun]:
    """Runs whose task, model or MODEL_DIR matches the glob `only`, or the one at `index`."""
    if index is not None:
        if not 0 <= index < len(runs):
            raise UserInputError(f"--index {index}: the plan has runs 0-{len(runs) - 1}")
        return [runs[index]]
    if only is None:
        return list(runs)
    chosen = [
        run for run in runs
        if any(fnmatch.fnmatchcase(text, only) for text in (run.task, run.model, run.model_dir))
    ]
    if not chosen:
        raise UserInputError(f"--only {only!r}: matches no run's task, model or MODEL_DIR")
    return chosen


def plan_jsonl(runs: Sequence[GridRun]) -> str:
    """One JSON object per run."""
    return "".join(json.dumps(run.as_record()) + "\n" for run in runs)


def plan_table(experiment: Experiment, runs: Sequence[GridRun], commands: bool = True) -> str:
    """A readable plan: one entry per run (index, what it is, MODEL_DIR, command), then the
    counts per grid block and model, and the total."""
    lines = []
    for index, run in enumerate(runs):
        fraction = "full" if run.fraction is None else f"{run.fraction:g}"
        site = run.site or "default"
        lines.append(
            f"{index:>5}  {run.model:<17} {run.task:<40} fold {run.fold}  data {fraction:<5} "
            f"site {site:<8} lr {run.learning_rate:<7g} batch {run.batch_size}"
        )
        lines.append(f"       MODEL_DIR {run.model_dir}")
        if commands:
            lines.append(f"       {run.command}")
    by_block = collections.Counter(run.block for run in runs)
    by_model = collections.Counter(run.model for run in runs)
    lines.append("")
    lines.append("runs per block: " + ", ".join(f"{k} {v}" for k, v in by_block.items()))
    lines.append("runs per model: " + ", ".join(f"{k} {v}" for k, v in by_model.items()))
    lines.append(f"total: {len(runs)} runs in experiment {experiment.name}")
    return "\n".join(lines) + "\n"


def load_runs(path: str, bindings: Sequence[str] = ()) -> tuple[Experiment, list[GridRun]]:
    experiment = load_experiment(path, bindings)
    return experiment, expand(experiment)
