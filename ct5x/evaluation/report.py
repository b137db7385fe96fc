"""`write_report`: from the given metrics.json files to the paper-style tables and figures.

Writes into `out`: report.json (every number), report.md (all tables, then the runs and rows the
report could not include), scores.csv and comparisons.csv (all tables, full precision),
tables/<task>_<setting>.{md,tex,csv}, and plots/*.{png,svg}. Files are written atomically;
existing ones of the same name are replaced. The report is always written from what could be
used: an unreadable file, a row with a missing fold, or a failed run a caller names is listed
under "Failed and missing runs" (and in report.json's "problems"), and the caller decides the
exit code.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

from ct5x import storage
from ct5x.atomic import write_json, write_text
from ct5x.errors import UserInputError
from ct5x.evaluation import plots, render
from ct5x.evaluation.collect import ReportProblem, group_tables, read_scores
from ct5x.evaluation.report_numbers import ReportSettings, report_numbers

REPORT_FILE = "report.json"
PROBLEMS_TITLE = "## Failed and missing runs"


def _finite(value: Any) -> Any:
    """NaN or infinity (an undefined t or p; a t of differences equal up to rounding) as JSON
    null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _header(settings: ReportSettings) -> str:
    return (
        "# Evaluation report\n\n"
        "Scores are percentages (counts as they are): the mean over folds, the sample standard "
        "deviation, and two 95% intervals of the mean: the paper's (a percentile bootstrap of "
        f"the fold scores, {settings.bootstrap_resamples} resamples, seed {settings.seed}) and "
        "Student's t (mean +/- t(0.975, n-1) sd/sqrt(n)). Models are compared by a paired "
        "t-test over folds (scipy ttest_rel) with Holm-adjusted p values.\n"
    )


def problems_section(problems: Sequence[dict[str, str]]) -> str:
    """The report's list of what it could not include (empty when nothing is missing)."""
    if not problems:
        return ""
    count = f"{len(problems)} runs, files or rows are not in the tables above:"
    lines = [PROBLEMS_TITLE, "", count, ""]
    lines += [f"- `{problem['where']}`: {problem['reason']}" for problem in problems]
    return "\n".join(lines) + "\n"


def write_report(metrics_files: Sequence[str | pathlib.Path], out_dir: str | pathlib.Path,
                 settings: ReportSettings | None = None,
                 problems: Sequence[ReportProblem] = ()) -> dict[str, Any]:
    """Writes the report of `metrics_files` into `out_dir` and returns report.json's content.
    `problems` are failures found before scoring (a sweep's failed runs), listed with the
    report's own."""
    settings = settings or ReportSettings()
    if settings.bootstrap_resamples < 1:
        raise UserInputError(f"--bootstrap-resamples={settings.bootstrap_resamples}: must be >= 1")
    if settings.num_folds is not None and settings.num_folds < 1:
        raise UserInputError(f"--num-folds={settings.num_folds}: must be at least 1")
    scores, unreadable = read_scores(metrics_files)
    grouped, left_out = group_tables(scores, settings.num_folds)
    report = _finite(report_numbers(grouped, settings, [*problems, *unreadable, *left_out]))
    out = storage.path(out_dir)
    for folder in (out, out / "tables"):
        folder.mkdir(parents=True, exist_ok=True)
    sections = [_header(settings)]
    for table in report["tables"]:
        stem = out / "tables" / f"{table['base_task']}_{table['setting']}"
        section = render.markdown(table, settings.paper)
        sections.append(section)
        write_text(stem.with_suffix(".md"), section)
        write_text(stem.with_suffix(".tex"), render.latex(table, settings.paper))
        write_text(stem.with_suffix(".csv"), render.scores_csv([table]))
    sections.append(problems_section(report["problems"]))
    write_text(out / "report.md", "\n".join(section for section in sections if section))
    write_text(out / "scores.csv", render.scores_csv(report["tables"]))
    write_text(out / "comparisons.csv", render.comparisons_csv(report["tables"]))
    plots.draw_all(report["tables"], out / "plots", settings.paper)
    write_json(out / REPORT_FILE, report)
    return report
