"""Every number of the report as plain data (what report.json holds and `render` prints).

Scores stay in the metrics' own scale (fractions in [0, 1]; counts for a task's count metrics,
such as `invalid_predictions` and `unknown_labels`); published numbers are in percent as the paper
prints them. The paper computed its numbers with the study's code, which ct5x runs under the
anchor switch: a compared cell scored in another mode is marked `paper_mode_differs`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ct5x.evaluation import statistics
from ct5x.evaluation.collect import ReportProblem, Row, ScoreTable, describe
from ct5x.evaluation.paper import published_percent


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    bootstrap_resamples: int = 100
    seed: int = 42
    paper: bool = False
    # Folds a complete row has; None: each task's own number (`TaskInfo.num_folds`).
    num_folds: int | None = None


def metric_order(table: ScoreTable) -> list[str]:
    """The selection metric first, then the other scores, then the counts (each alphabetical)."""
    names = sorted({name for row in table.rows for name in row.scores})
    return sorted(names, key=lambda n: (n != table.selection_metric, n in table.count_metrics, n))


def _cell(table: ScoreTable, row: Row, metric: str, settings: ReportSettings) -> dict[str, Any]:
    scores = row.scores[metric]
    cell = {
        "scores": scores,
        "mean": statistics.mean(scores),
        "sd": statistics.standard_deviation(scores),
        "paper_interval": statistics.paper_interval(
            scores, settings.bootstrap_resamples, settings.seed
        ),
        "t_interval": statistics.t_interval(scores),
    }
    if settings.paper:
        published = published_percent(table.base_task, table.setting, metric, row.model)
        cell["published_percent"] = published
        cell["paper_mode_differs"] = published is not None and row.anchor_compatible is not True
    return cell


def _comparisons(table: ScoreTable, metric: str) -> list[dict[str, Any]]:
    """Pairwise tests among the rows with fold scores (n > 1)."""
    tested = {row.label: row.scores[metric] for row in table.rows
              if len(row.scores[metric]) > 1}
    if len(tested) < 2:
        return []
    return [dataclasses.asdict(test) for test in statistics.paired_tests(tested)]


def table_numbers(table: ScoreTable, settings: ReportSettings) -> dict[str, Any]:
    metrics = metric_order(table)
    return {
        **describe(table),
        "metrics": metrics,
        "test_sets_differ": table.test_sets_differ,
        "rows": [
            {
                "model": row.model,
                "prompt": row.prompt,
                "label": row.label,
                "n": len(row.folds),
                "folds": row.folds,
                "test_sha256": row.test_sha256,
                "anchor_compatible": row.anchor_compatible,
                "sources": row.sources,
                "metrics": {m: _cell(table, row, m, settings) for m in metrics},
            }
            for row in table.rows
        ],
        "comparisons": {
            m: _comparisons(table, m) for m in metrics if m not in table.count_metrics
        },
    }


def report_numbers(tables: list[ScoreTable], settings: ReportSettings,
                   problems: list[ReportProblem]) -> dict[str, Any]:
    """report.json: the settings, what each interval is, every table's numbers, and what the
    report could not include."""
    return {
        "settings": dataclasses.asdict(settings),
        "intervals": {
            "paper_interval": (
                f"the study's percentile bootstrap: {settings.bootstrap_resamples} resamples of "
                f"the fold scores with numpy RandomState({settings.seed}), 2.5th-97.5th "
                "percentiles of the resample means"
            ),
            "t_interval": "mean +/- t(0.975, n-1) * sd / sqrt(n)",
        },
        "tests": "scipy.stats.ttest_rel by fold; Holm (statsmodels multipletests) over all pairs "
                 "of a table and metric",
        "tables": [table_numbers(table, settings) for table in tables],
        "problems": [dataclasses.asdict(problem) for problem in problems],
    }
