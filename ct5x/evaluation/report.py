"""`write_report`: from every metrics.json under a folder to the paper-style tables and figures.

Writes into `out`: report.json (every number), report.md (all tables), scores.csv and
comparisons.csv (all tables, full precision), tables/<task>_<setting>.{md,tex,csv}, and
plots/*.{png,svg}. Files are written atomically; existing ones of the same name are replaced.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

from ct5x.checkpoints.atomic import write_bytes
from ct5x.errors import UserInputError
from ct5x.evaluation import plots, tables
from ct5x.evaluation.collect import group_tables, read_scores
from ct5x.evaluation.summary import ReportSettings, summarise

REPORT_FILE = "report.json"


def _finite(value: Any) -> Any:
    """NaN (an undefined t or p) as JSON null, recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _write_text(path: pathlib.Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _header(settings: ReportSettings) -> str:
    return (
        "# Evaluation report\n\n"
        "Scores are percentages (counts as they are): the mean over folds, the sample standard "
        "deviation, and two 95% intervals of the mean: the paper's (a percentile bootstrap of "
        f"the fold scores, {settings.bootstrap_resamples} resamples, seed {settings.seed}) and "
        "Student's t (mean +/- t(0.975, n-1) sd/sqrt(n)). Models are compared by a paired "
        "t-test over folds (scipy ttest_rel) with Holm-adjusted p values.\n"
    )


def write_report(runs_dir: str | pathlib.Path, out_dir: str | pathlib.Path,
                 settings: ReportSettings | None = None) -> dict[str, Any]:
    """Writes the report of the runs under `runs_dir` into `out_dir`; returns report.json's
    content. Missing folds, folds scored twice and mixed test sets are a UserInputError."""
    settings = settings or ReportSettings()
    if settings.bootstrap_resamples < 1:
        raise UserInputError(f"--bootstrap-resamples={settings.bootstrap_resamples}: must be >= 1")
    if settings.num_folds < 1:
        raise UserInputError(f"--num-folds={settings.num_folds}: must be at least 1")
    grouped = group_tables(read_scores(runs_dir), settings.num_folds)
    report = _finite(summarise(grouped, settings))
    out = pathlib.Path(out_dir)
    for folder in (out, out / "tables"):
        folder.mkdir(parents=True, exist_ok=True)
    sections = [_header(settings)]
    for table in report["tables"]:
        stem = out / "tables" / f"{table['base_task']}_{table['setting']}"
        section = tables.markdown(table, settings.paper)
        sections.append(section)
        _write_text(stem.with_suffix(".md"), section)
        _write_text(stem.with_suffix(".tex"), tables.latex(table, settings.paper))
        _write_text(stem.with_suffix(".csv"), tables.scores_csv([table]))
    _write_text(out / "report.md", "\n".join(sections))
    _write_text(out / "scores.csv", tables.scores_csv(report["tables"]))
    _write_text(out / "comparisons.csv", tables.comparisons_csv(report["tables"]))
    plots.draw_all(report["tables"], out / "plots", settings.paper)
    _write_text(out / REPORT_FILE, json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report
