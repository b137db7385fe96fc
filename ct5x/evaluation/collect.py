"""Reading metrics.json files and grouping their fold scores into score tables.

A score table is one task x setting; its rows are models (per prompt style). A row's scores must
come from folds 0..n-1 (n: the task's number of folds, or the report's --num-folds), each exactly
once, all scored on one test set (`test_sha256`) in one anchor mode; a run trained without folds
stands alone (n = 1). A row that breaks any of this is left out of its table and every reason is
returned as a `ReportProblem`, as is every file that cannot be read: the report names them all
and nothing is dropped silently. Rows of one table scored on different test sets (e.g.
de-identified targets) are allowed but flagged, since their paired comparison is then over
different gold text.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from ct5x import storage
from ct5x.errors import UserInputError
from ct5x.evaluation.paper import PAPER_MODELS, paper_model
from ct5x.run_record import SITE_METRICS_GLOB, TEST_METRICS_FILE
from ct5x_tasks.catalog import SCORING
from ct5x_tasks.naming import NUM_FOLDS

_REQUIRED = {"model": str, "base_task": str, "setting": str, "test_sha256": str, "metrics": dict}


@dataclasses.dataclass(frozen=True)
class ReportProblem:
    """Something the report could not include: the file, run or row, and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class FoldScore:
    """One metrics.json: a model's test scores for one fold of one experiment cell."""

    path: pathlib.Path
    model: str
    base_task: str
    setting: str
    prompt: str
    fold: int | None
    fraction: float | None
    site: str | None
    test_sha256: str
    selection_metric: str
    # Metrics that count things (no percent, no tests), and the folds a complete row has.
    count_metrics: tuple[str, ...]
    num_folds: int
    # None: scored before ct5x recorded the mode.
    anchor_compatible: bool | None
    metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class Row:
    """A model's fold scores in one table, in fold order."""

    model: str
    prompt: str
    folds: list[int | None]
    test_sha256: str
    anchor_compatible: bool | None
    scores: dict[str, list[float]]
    sources: list[str]

    @property
    def label(self) -> str:
        return f"{self.model} ({self.prompt})"


@dataclasses.dataclass(frozen=True)
class ScoreTable:
    """One task x setting: the rows of fold scores the report computes its numbers from."""

    base_task: str
    setting: str
    fraction: float | None
    site: str | None
    selection_metric: str
    count_metrics: tuple[str, ...]
    rows: list[Row]
    test_sets_differ: bool


def _parse(path: pathlib.Path) -> FoldScore:
    """One metrics.json; a UserInputError gives the reason it cannot be used."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        raise UserInputError("cannot be read") from None
    except json.JSONDecodeError as error:
        raise UserInputError(f"line {error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise UserInputError("not a JSON object")
    for name, kind in _REQUIRED.items():
        if not isinstance(record.get(name), kind):
            raise UserInputError(f"field {name!r} must be a {kind.__name__}")
    fold = record.get("fold")
    if fold is not None and (not isinstance(fold, int) or isinstance(fold, bool) or fold < 0):
        raise UserInputError("field 'fold' must be a fold number or null")
    metrics = record["metrics"]
    if not metrics or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise UserInputError("'metrics' must map metric names to numbers")
    # Files written before these fields were recorded: the paper task's facts, if it is one.
    scoring = SCORING.get(record["base_task"])
    selection = record.get("selection_metric") or (scoring.selection.metric if scoring else None)
    if not isinstance(selection, str) or selection not in metrics:
        raise UserInputError("no usable selection_metric (scored before ct5x recorded it?); "
                             "rescore with `ct5x evaluate --force`")
    counts = record.get("count_metrics", scoring.count_metrics if scoring else ())
    prompt = record.get("prompt") or "t5"
    return FoldScore(
        path=path,
        model=record["model"],
        base_task=record["base_task"],
        setting=record["setting"],
        prompt=prompt + ("+deid" if record.get("deid") else ""),
        fold=fold,
        fraction=record.get("fraction"),
        site=record.get("site"),
        test_sha256=record["test_sha256"],
        selection_metric=selection,
        count_metrics=tuple(counts),
        num_folds=int(record.get("num_folds", NUM_FOLDS)),
        anchor_compatible=record.get("anchor_compatible"),
        metrics={name: float(value) for name, value in metrics.items()},
    )


def find_metrics_files(root: str | pathlib.Path) -> list[pathlib.Path]:
    """Every metrics.json (and metrics_site_<site>.json) under `root` (local or a bucket),
    sorted."""
    root = storage.path(root)
    if not root.is_dir():
        raise UserInputError(f"--runs {root}: not a directory")
    paths = sorted([*storage.rglob(root, TEST_METRICS_FILE),
                    *storage.rglob(root, SITE_METRICS_GLOB)])
    if not paths:
        raise UserInputError(f"--runs {root}: no {TEST_METRICS_FILE} found (run `ct5x evaluate` "
                             "first)")
    return paths


def read_scores(paths: Sequence[str | pathlib.Path]) -> tuple[list[FoldScore],
                                                               list[ReportProblem]]:
    """The fold scores of the given metrics files, and a problem for each unusable file."""
    scores, problems = [], []
    for path in paths:
        try:
            scores.append(_parse(storage.path(path)))
        except UserInputError as error:
            problems.append(ReportProblem(str(path), str(error)))
    return scores, problems


def _row(model: str, prompt: str, cell: str, scores: Sequence[FoldScore], num_folds: int | None,
         problems: list[ReportProblem]) -> Row | None:
    """A row, or None after adding every reason it cannot be one to `problems`."""
    where = f"{cell}, model {model!r} ({prompt})"
    reasons = []
    by_fold = collections.defaultdict(list)
    for score in scores:
        by_fold[score.fold].append(score)
    for fold, group in sorted(by_fold.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        if len(group) > 1:
            files = ", ".join(str(s.path) for s in group)
            name = "the no-fold run" if fold is None else f"fold {fold}"
            reasons.append(f"{name} scored twice ({files})")
    folds = set(by_fold)
    if None in folds and len(folds) > 1:
        reasons.append("mixes fold runs with a run trained without folds")
    elif None not in folds:
        expected = {num_folds} if num_folds else {s.num_folds for s in scores}
        if len(expected) > 1:
            reasons.append(f"folds disagree on the number of folds ({sorted(expected)})")
        count = max(expected)
        missing = sorted(set(range(count)) - folds)
        extra = sorted(folds - set(range(count)))
        if missing:
            reasons.append(f"missing fold(s) {', '.join(map(str, missing))}")
        if extra:
            reasons.append(f"fold(s) {', '.join(map(str, extra))} beyond the {count} folds "
                           "expected")
    digests = sorted({s.test_sha256 for s in scores})
    if len(digests) > 1:
        parts = [f"fold {s.fold}: {s.test_sha256[:12]}" for s in scores]
        reasons.append(f"folds scored on different test sets ({', '.join(parts)})")
    names = {frozenset(s.metrics) for s in scores}
    if len(names) > 1:
        reasons.append("folds report different metrics")
    if len({s.anchor_compatible for s in scores}) > 1:
        reasons.append("folds scored in different anchor modes")
    if reasons:
        problems += [ReportProblem(where, reason) for reason in reasons]
        return None
    ordered = sorted(scores, key=lambda s: -1 if s.fold is None else s.fold)
    return Row(
        model=model,
        prompt=prompt,
        folds=[s.fold for s in ordered],
        test_sha256=digests[0],
        anchor_compatible=scores[0].anchor_compatible,
        scores={name: [s.metrics[name] for s in ordered] for name in sorted(ordered[0].metrics)},
        sources=[str(s.path) for s in ordered],
    )


def _model_order(row: Row) -> tuple:
    paper = paper_model(row.model)
    rank = PAPER_MODELS.index(paper) if paper else len(PAPER_MODELS)
    return rank, row.model.lower(), row.prompt


def _setting_order(key: tuple[str, str], first: FoldScore) -> tuple:
    return key[0], first.site or "", first.fraction if first.fraction is not None else 2.0


def group_tables(scores: Sequence[FoldScore], num_folds: int | None = None
                 ) -> tuple[list[ScoreTable], list[ReportProblem]]:
    """Score tables in task order (settings by site, then training fraction, full last), and the
    rows left out with every reason. `num_folds` overrides each task's number of folds."""
    cells: dict[tuple[str, str], list[FoldScore]] = collections.defaultdict(list)
    for score in scores:
        cells[(score.base_task, score.setting)].append(score)
    tables, problems = [], []
    for key in sorted(cells, key=lambda k: _setting_order(k, cells[k][0])):
        cell = f"{key[0]} {key[1]}"
        by_row: dict[tuple[str, str], list[FoldScore]] = collections.defaultdict(list)
        for score in cells[key]:
            by_row[(score.model, score.prompt)].append(score)
        rows = [_row(model, prompt, cell, group, num_folds, problems)
                for (model, prompt), group in by_row.items()]
        rows = sorted((row for row in rows if row is not None), key=_model_order)
        if not rows:
            continue
        first = cells[key][0]
        tables.append(ScoreTable(
            base_task=key[0],
            setting=key[1],
            fraction=first.fraction,
            site=first.site,
            selection_metric=first.selection_metric,
            count_metrics=first.count_metrics,
            rows=rows,
            test_sets_differ=len({row.test_sha256 for row in rows}) > 1,
        ))
    return tables, problems


def describe(table: ScoreTable) -> dict[str, Any]:
    """The table's identity as report.json and the file names spell it."""
    return {"base_task": table.base_task, "setting": table.setting, "fraction": table.fraction,
            "site": table.site, "selection_metric": table.selection_metric,
            "count_metrics": list(table.count_metrics)}
