"""The report's tables as Markdown, LaTeX and CSV, from `report_numbers.table_numbers` output.

Scores print in percent with two decimals (counts as they are); intervals as [low, high]; t with
three decimals; p values with three significant digits. "n/a" marks a number that does not exist
(an interval of one score, a t of identical differences), "-" a cell the paper does not report,
and a dagger a published number computed in another mode than the row (a footnote says which).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

SCORE_HEADER = ["Model", "Prompt", "Metric", "n", "Mean", "SD", "95% CI (paper bootstrap)",
                "95% CI (t)"]
TEST_HEADER = ["Metric", "Model A", "Model B", "Mean diff (A-B)", "t", "df", "p", "p (Holm)"]
SCORE_CSV = ["base_task", "setting", "model", "prompt", "metric", "n", "folds", "scores", "mean",
             "sd", "paper_ci_low", "paper_ci_high", "t_ci_low", "t_ci_high", "published_percent",
             "paper_mode_differs"]
NOTE_DIFFERENT_TEST_SETS = (
    "Note: the rows were scored on different test sets (different test_sha256, e.g. "
    "de-identified targets)."
)
TESTS_CAPTION = "Paired t-tests by fold (p, and p Holm-adjusted over the pairs of each metric):"
PAPER_MODE_MARK = "\u2020"
TEST_CSV = ["base_task", "setting", "metric", "model_a", "model_b", "mean_difference", "t", "df",
            "p", "p_holm"]


def scaled(table: Mapping[str, Any], metric: str, value: float | None) -> float | None:
    """A score as the tables print it: percent, except the table's count metrics."""
    if value is None or metric in table["count_metrics"]:
        return value
    return 100 * value


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _p_value(value: float | None) -> str:
    """A p-value cell; an undefined test (zero variance of the differences) has none."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.3g}"


def _interval(table: Mapping[str, Any], metric: str, interval: Sequence[float] | None) -> str:
    if interval is None:
        return "n/a"
    low, high = (scaled(table, metric, v) for v in interval)
    return f"[{_number(low)}, {_number(high)}]"


def title(table: Mapping[str, Any]) -> str:
    return f"{table['base_task']} - {table['setting']}"


def score_rows(table: Mapping[str, Any], paper: bool) -> list[list[str]]:
    """One printed row per model and metric."""
    rows = []
    for row in table["rows"]:
        for metric in table["metrics"]:
            cell = row["metrics"][metric]
            printed = [row["model"], row["prompt"], metric, str(row["n"]),
                       _number(scaled(table, metric, cell["mean"])),
                       _number(scaled(table, metric, cell["sd"])),
                       _interval(table, metric, cell["paper_interval"]),
                       _interval(table, metric, cell["t_interval"])]
            if paper:
                published = cell.get("published_percent")
                mark = PAPER_MODE_MARK if cell.get("paper_mode_differs") else ""
                printed.append("-" if published is None else _number(published) + mark)
            rows.append(printed)
    return rows


def comparison_rows(table: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for metric, tests in table["comparisons"].items():
        for test in tests:
            rows.append([metric, test["a"], test["b"],
                         _number(scaled(table, metric, test["mean_difference"])),
                         _number(test["t"], 3), str(test["df"]),
                         _p_value(test["p"]), _p_value(test["p_holm"])])
    return rows


def _markdown_grid(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def paper_mode_note(table: Mapping[str, Any]) -> str | None:
    """The footnote of a table whose published numbers were computed in another mode than some
    of its rows, naming those rows' modes; None when there is none."""
    modes = {"false": [], "not recorded": []}
    for row in table["rows"]:
        if any(cell.get("paper_mode_differs") for cell in row["metrics"].values()):
            mode = "not recorded" if row["anchor_compatible"] is None else "false"
            modes[mode].append(row["label"])
    if not any(modes.values()):
        return None
    rows = "; ".join(f"anchor_compatible {mode}: {', '.join(labels)}"
                     for mode, labels in modes.items() if labels)
    return (f"{PAPER_MODE_MARK} The paper computed its numbers with the study's code (ct5x's "
            f"anchor mode, ANCHOR_COMPATIBLE=True); the marked rows were scored otherwise ({rows}),"
            " so a published number beside them is not computed alike.")


def markdown(table: Mapping[str, Any], paper: bool) -> str:
    """One table's section: scores, then the paired tests."""
    header = SCORE_HEADER + (["Paper"] if paper else [])
    parts = [f"## {title(table)}", "", _markdown_grid(header, score_rows(table, paper))]
    note = paper_mode_note(table) if paper else None
    if note:
        parts += ["", note]
    if table["test_sets_differ"]:
        parts += ["", NOTE_DIFFERENT_TEST_SETS]
    tests = comparison_rows(table)
    if tests:
        parts += ["", TESTS_CAPTION, "", _markdown_grid(TEST_HEADER, tests)]
    return "\n".join(parts) + "\n"


_LATEX_SPECIAL = {PAPER_MODE_MARK: r"\textsuperscript{\dag}",
                  "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def _latex_tabular(header: list[str], rows: list[list[str]]) -> str:
    lines = [r"\begin{tabular}{" + "l" * 3 + "r" * (len(header) - 3) + "}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def latex(table: Mapping[str, Any], paper: bool) -> str:
    """One table (booktabs) and its tests, each in a table float with a caption."""
    header = SCORE_HEADER + (["Paper"] if paper else [])
    parts = [r"\begin{table}[ht]", r"\centering",
             r"\caption{" + latex_escape(title(table)) + ": mean over folds and 95\\% intervals}",
             _latex_tabular(header, score_rows(table, paper))]
    note = paper_mode_note(table) if paper else None
    if note:
        parts += [r"\par\footnotesize " + latex_escape(note)]
    parts += [r"\end{table}"]
    tests = comparison_rows(table)
    if tests:
        parts += [r"\begin{table}[ht]", r"\centering",
                  r"\caption{" + latex_escape(title(table)) + ": paired t-tests by fold, "
                  "Holm-adjusted p}", _latex_tabular(TEST_HEADER, tests), r"\end{table}"]
    return "\n".join(parts) + "\n"


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return stream.getvalue()


def _plain(value: float | None) -> Any:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def scores_csv(tables: Sequence[Mapping[str, Any]]) -> str:
    """Every (table, model, metric) in the metrics' own scale, full precision."""
    rows = []
    for table in tables:
        for row in table["rows"]:
            for metric in table["metrics"]:
                cell = row["metrics"][metric]
                paper_ci = cell["paper_interval"] or (None, None)
                t_ci = cell["t_interval"] or (None, None)
                rows.append([table["base_task"], table["setting"], row["model"], row["prompt"],
                             metric, row["n"], " ".join(map(str, row["folds"])),
                             " ".join(map(repr, cell["scores"])), cell["mean"],
                             _plain(cell["sd"]), _plain(paper_ci[0]), _plain(paper_ci[1]),
                             _plain(t_ci[0]), _plain(t_ci[1]),
                             _plain(cell.get("published_percent")),
                             _plain(cell.get("paper_mode_differs"))])
    return _csv_text(SCORE_CSV, rows)


def comparisons_csv(tables: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for table in tables:
        for metric, tests in table["comparisons"].items():
            for test in tests:
                rows.append([table["base_task"], table["setting"], metric, test["a"], test["b"],
                             test["mean_difference"], _plain(test["t"]), test["df"],
                             _plain(test["p"]), _plain(test["p_holm"])])
    return _csv_text(TEST_CSV, rows)
