"""Reading every metrics.json under a folder and grouping the fold scores into tables.

A table is one task x setting; its rows are models (per prompt style). A row's scores must come
from folds 0..n-1, each exactly once, all scored on one test set (`test_sha256`); a run trained
without folds stands alone (n = 1). Anything else is an error naming the files, never a silently
smaller n. Rows of one table scored on different test sets (e.g. de-identified targets) are
allowed but flagged, since their paired comparison is then over different gold text.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from ct5x.errors import UserInputError
from ct5x.evaluation.paper import PAPER_MODELS, paper_model
from ct5x.evaluation.runs import METRICS_FILE

NUM_FOLDS = 5
# What `ct5x evaluate --test-site` writes: the test scores at another site.
SITE_METRICS_GLOB = "metrics_site_*.json"
_REQUIRED = {"model": str, "base_task": str, "setting": str, "test_sha256": str, "metrics": dict}


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
    selection_metric: str | None
    anchor_compatible: bool
    metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class Row:
    """A model's fold scores in one table, in fold order."""

    model: str
    prompt: str
    folds: list[int | None]
    test_sha256: str
    scores: dict[str, list[float]]
    sources: list[str]

    @property
    def label(self) -> str:
        return f"{self.model} ({self.prompt})"


@dataclasses.dataclass(frozen=True)
class Table:
    base_task: str
    setting: str
    fraction: float | None
    site: str | None
    selection_metric: str
    rows: list[Row]
    test_sets_differ: bool


def _parse(path: pathlib.Path) -> FoldScore:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        raise UserInputError(f"{path}: cannot be read") from None
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise UserInputError(f"{path}: not a JSON object")
    for name, kind in _REQUIRED.items():
        if not isinstance(record.get(name), kind):
            raise UserInputError(f"{path}: field {name!r} must be a {kind.__name__}")
    fold = record.get("fold")
    if fold is not None and (not isinstance(fold, int) or isinstance(fold, bool) or fold < 0):
        raise UserInputError(f"{path}: field 'fold' must be a fold number or null")
    metrics = record["metrics"]
    if not metrics or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
    ):
        raise UserInputError(f"{path}: 'metrics' must map metric names to numbers")
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
        selection_metric=record.get("selection_metric"),
        anchor_compatible=bool(record.get("anchor_compatible", False)),
        metrics={name: float(value) for name, value in metrics.items()},
    )


def read_scores(root: str | pathlib.Path) -> list[FoldScore]:
    """Every metrics.json (and metrics_site_<site>.json) under `root`; all unreadable files are
    named in one error."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise UserInputError(f"--runs {root}: not a directory")
    scores, problems = [], []
    paths = [*root.rglob(METRICS_FILE), *root.rglob(SITE_METRICS_GLOB)]
    for path in sorted(paths):
        try:
            scores.append(_parse(path))
        except UserInputError as error:
            problems.append(str(error))
    if problems:
        raise UserInputError("; ".join(problems))
    if not scores:
        raise UserInputError(f"--runs {root}: no {METRICS_FILE} found (run `ct5x evaluate` first)")
    return scores


def _row(model: str, prompt: str, cell: str, scores: Sequence[FoldScore], num_folds: int,
         problems: list[str]) -> Row | None:
    """A row, or None after adding every reason it cannot be one to `problems`."""
    where = f"{cell}, model {model!r} ({prompt})"
    known_problems = len(problems)
    by_fold = collections.defaultdict(list)
    for score in scores:
        by_fold[score.fold].append(score)
    for fold, group in sorted(by_fold.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        if len(group) > 1:
            files = ", ".join(str(s.path) for s in group)
            name = "the no-fold run" if fold is None else f"fold {fold}"
            problems.append(f"{where}: {name} scored twice ({files})")
    folds = set(by_fold)
    if None in folds and len(folds) > 1:
        problems.append(f"{where}: mixes fold runs with a run trained without folds")
    elif None not in folds:
        missing = sorted(set(range(num_folds)) - folds)
        extra = sorted(folds - set(range(num_folds)))
        if missing:
            problems.append(f"{where}: missing fold(s) {', '.join(map(str, missing))}")
        if extra:
            problems.append(f"{where}: fold(s) {', '.join(map(str, extra))} beyond the "
                            f"{num_folds} folds expected")
    digests = sorted({s.test_sha256 for s in scores})
    if len(digests) > 1:
        parts = [f"fold {s.fold}: {s.test_sha256[:12]}" for s in scores]
        problems.append(f"{where}: folds scored on different test sets ({', '.join(parts)})")
    names = {frozenset(s.metrics) for s in scores}
    if len(names) > 1:
        problems.append(f"{where}: folds report different metrics")
    if len({s.anchor_compatible for s in scores}) > 1:
        problems.append(f"{where}: folds scored both with and without --anchor-compatible")
    if len(problems) > known_problems:
        return None
    ordered = sorted(scores, key=lambda s: -1 if s.fold is None else s.fold)
    return Row(
        model=model,
        prompt=prompt,
        folds=[s.fold for s in ordered],
        test_sha256=digests[0],
        scores={name: [s.metrics[name] for s in ordered] for name in sorted(ordered[0].metrics)},
        sources=[str(s.path) for s in ordered],
    )


def _model_order(row: Row) -> tuple:
    paper = paper_model(row.model)
    rank = PAPER_MODELS.index(paper) if paper else len(PAPER_MODELS)
    return rank, row.model.lower(), row.prompt


def _setting_order(key: tuple[str, str], first: FoldScore) -> tuple:
    return key[0], first.site or "", first.fraction if first.fraction is not None else 2.0


def group_tables(scores: Sequence[FoldScore], num_folds: int = NUM_FOLDS) -> list[Table]:
    """Tables in task order (settings by site, then training fraction, full last); every problem
    of every row is named in one error."""
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
        selection = first.selection_metric or min(rows[0].scores)
        tables.append(Table(
            base_task=key[0],
            setting=key[1],
            fraction=first.fraction,
            site=first.site,
            selection_metric=selection,
            rows=rows,
            test_sets_differ=len({row.test_sha256 for row in rows}) > 1,
        ))
    if problems:
        raise UserInputError("; ".join(problems))
    return tables


def describe(table: Table) -> dict[str, Any]:
    """The table's identity as report.json and the file names spell it."""
    return {"base_task": table.base_task, "setting": table.setting, "fraction": table.fraction,
            "site": table.site, "selection_metric": table.selection_metric}
