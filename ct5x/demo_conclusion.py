"""The demo's answer: one table over the training fractions and a conclusion computed from it.

Nothing is written in advance. `fraction_rows` reads what `ct5x report` wrote in report.json (per
fraction: each model's fold scores, mean and 95% t interval, and the paired t-tests by fold) and
the majority baseline; `conclusion` states, per fraction, which of two models is better and
whether the paired t-test finds the difference significant, then what that says about
pre-training on the domain's text at the smallest fraction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

ALPHA = 0.05
_METRIC_NAMES = {"macro_f1": "macro-F1", "micro_f1": "micro-F1", "f1": "F1",
                 "accuracy": "accuracy"}


@dataclasses.dataclass(frozen=True)
class ModelScore:
    """A model's test scores at one fraction (the metric's own scale)."""

    mean: float
    t_interval: tuple[float, float] | None
    folds: list[float]


@dataclasses.dataclass(frozen=True)
class PairTest:
    """The paired t-test of model a against model b; p is None when undefined."""

    a: str
    b: str
    mean_difference: float
    p: float | None
    p_holm: float | None


@dataclasses.dataclass(frozen=True)
class FractionRow:
    """One training fraction (None: all the training data)."""

    setting: str
    fraction: float | None
    scores: dict[str, ModelScore]
    tests: list[PairTest]
    baseline: float | None

    @property
    def label(self) -> str:
        return "100%" if self.fraction is None else f"{100 * self.fraction:g}%"

    def test(self, a: str, b: str) -> PairTest | None:
        """The test of a against b (either order in the report; the sign follows a - b)."""
        for test in self.tests:
            if (test.a, test.b) == (a, b):
                return test
            if (test.a, test.b) == (b, a):
                return dataclasses.replace(test, a=a, b=b, mean_difference=-test.mean_difference)
        return None


def metric_name(metric: str) -> str:
    return _METRIC_NAMES.get(metric, metric)


def _defined(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def fraction_rows(report: Mapping[str, Any], metric: str,
                  baselines: Mapping[str, float] | None = None) -> list[FractionRow]:
    """The report's tables as rows, smallest fraction first and all the data last.

    `baselines` maps a table's setting ('pct5', 'full') to the majority baseline's score.
    """
    rows = []
    for table in report["tables"]:
        model_of = {row["label"]: row["model"] for row in table["rows"]}
        scores = {}
        for row in table["rows"]:
            cell = row["metrics"][metric]
            interval = cell.get("t_interval")
            scores[row["model"]] = ModelScore(cell["mean"], tuple(interval) if interval else None,
                                              list(cell["scores"]))
        tests = [PairTest(model_of[test["a"]], model_of[test["b"]], test["mean_difference"],
                          _defined(test["p"]), _defined(test["p_holm"]))
                 for test in table["comparisons"].get(metric, [])]
        rows.append(FractionRow(table["setting"], table["fraction"], scores, tests,
                                (baselines or {}).get(table["setting"])))
    return sorted(rows, key=lambda row: 2.0 if row.fraction is None else row.fraction)


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def _cell(score: ModelScore | None) -> str:
    if score is None:
        return "-"
    if score.t_interval is None:
        return _percent(score.mean)
    low, high = score.t_interval
    return f"{_percent(score.mean)} [{_percent(low)}, {_percent(high)}]"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def format_table(rows: Sequence[FractionRow], metric: str, models: Sequence[str],
                 treated: str = "clinical", control: str = "general") -> list[str]:
    """The table the demo prints: per fraction, each model's mean [95% t interval] in percent,
    the majority baseline, and the paired t-test of `treated` against `control`."""
    header = ["data", *models, "majority", f"{treated} - {control}", "p", "p (Holm)"]
    lines = [[row.label, *(_cell(row.scores.get(model)) for model in models),
              "-" if row.baseline is None else _percent(row.baseline)]
             + _test_cells(row.test(treated, control)) for row in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    return ["  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip()
            for line in [header, *lines]]


def _test_cells(test: PairTest | None) -> list[str]:
    if test is None:
        return ["-", "-", "-"]
    return [f"{100 * test.mean_difference:+.1f}", _p(test.p), _p(test.p_holm)]


def verdict(row: FractionRow, treated: str, control: str, metric: str,
            alpha: float = ALPHA) -> str:
    """One fraction's finding, e.g. 'clinical better at 5% (+6.1 macro-F1, p = 0.004)'."""
    test = row.test(treated, control)
    if test is None:
        return f"no paired test of {treated} and {control} at {row.label}"
    difference = 100 * test.mean_difference
    if test.p is None:
        return (f"no test possible at {row.label} (every fold differs by {difference:+.1f} "
                f"{metric_name(metric)})")
    if test.p < alpha:
        better = treated if difference > 0 else control
        return (f"{better} better at {row.label} (+{abs(difference):.1f} {metric_name(metric)}, "
                f"p = {_p(test.p)})")
    return f"no significant difference at {row.label} ({difference:+.1f}, p = {_p(test.p)})"


def conclusion(rows: Sequence[FractionRow], metric: str, treated: str = "clinical",
               control: str = "general", alpha: float = ALPHA) -> list[str]:
    """The demo's last lines, every word decided by the numbers in `rows`."""
    if not rows:
        return ["No scores were reported: nothing to conclude."]
    findings = "; ".join(verdict(row, treated, control, metric, alpha) for row in rows)
    lines = [findings[0].upper() + findings[1:] + "."]
    smallest = rows[0]
    where = (f"the smallest fraction ({smallest.label})" if len(rows) > 1
             else smallest.label)
    test = smallest.test(treated, control)
    gaps = [row.test(treated, control) for row in rows]
    gaps = [100 * gap.mean_difference for gap in gaps if gap is not None]
    if test is None or test.p is None:
        lines.append(f"Pre-training on {treated} text could not be tested at {where}.")
    elif test.p >= alpha:
        lines.append(f"Pre-training on {treated} text made no significant difference at {where} "
                     "in this run.")
    elif test.mean_difference > 0:
        largest = len(gaps) > 1 and 100 * test.mean_difference == max(gaps)
        lines.append(f"Pre-training on {treated} text helped at {where}"
                     + (", and the gap was largest there." if largest else "."))
    else:
        lines.append(f"Pre-training on {treated} text did worse than on {control} text at "
                     f"{where}.")
    below = [f"{model} at {row.label}" for row in rows if row.baseline is not None
             for model, score in row.scores.items() if score.mean <= row.baseline]
    if below:
        lines.append("At or below the majority baseline: " + ", ".join(below) + ".")
    return lines
