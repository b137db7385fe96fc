"""Every number of the report as plain data (what report.json holds and the tables print).

Scores stay in the metrics' own scale (fractions in [0, 1]; counts for `invalid_predictions` and
`unknown_labels`); published numbers are in percent as the paper prints them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ct5x.evaluation import statistics
from ct5x.evaluation.collect import Row, Table, describe
from ct5x.evaluation.paper import published_percent

# Metrics that count things rather than score them: no percent, no pairwise tests.
COUNT_METRICS = frozenset({"invalid_predictions", "unknown_labels"})


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    bootstrap_resamples: int = 100
    seed: int = 42
    paper: bool = False
    num_folds: int = 5


def metric_order(table: Table) -> list[str]:
    """The selection metric first, then the other scores, then the counts (each alphabetical)."""
    names = sorted({name for row in table.rows for name in row.scores})
    return sorted(names, key=lambda n: (n != table.selection_metric, n in COUNT_METRICS, n))


def _cell(table: Table, row: Row, metric: str, settings: ReportSettings) -> dict[str, Any]:
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
        cell["published_percent"] = published_percent(
            table.base_task, table.setting, metric, row.model
        )
    return cell


def _comparisons(table: Table, metric: str) -> list[dict[str, Any]]:
    """Pairwise tests among the rows with fold scores (n > 1)."""
    tested = {row.label: row.scores[metric] for row in table.rows
              if len(row.scores[metric]) > 1}
    if len(tested) < 2:
        return []
    return [dataclasses.asdict(test) for test in statistics.paired_tests(tested)]


def summarise_table(table: Table, settings: ReportSettings) -> dict[str, Any]:
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
                "sources": row.sources,
                "metrics": {m: _cell(table, row, m, settings) for m in metrics},
            }
            for row in table.rows
        ],
        "comparisons": {
            m: _comparisons(table, m) for m in metrics if m not in COUNT_METRICS
        },
    }


def summarise(tables: list[Table], settings: ReportSettings) -> dict[str, Any]:
    """report.json: the settings, what each interval is, and every table's numbers."""
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
        "tables": [summarise_table(table, settings) for table in tables],
    }
