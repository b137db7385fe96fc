"""A report of the synthetic grid (known fold scores), written once for the report and notebook
tests."""

import pytest

from ct5x.evaluation.collect import find_metrics_files
from ct5x.evaluation.report import write_report
from ct5x.evaluation.report_numbers import ReportSettings
from tests.ct5x.evaluation.grid import write_grid


@pytest.fixture(scope="session")
def synthetic_report(tmp_path_factory):
    """(known scores, report.json content, report folder), compared with the paper."""
    root = tmp_path_factory.mktemp("synthetic_report")
    known = write_grid(root / "runs")
    report = write_report(find_metrics_files(root / "runs"), root / "out",
                          ReportSettings(paper=True))
    return known, report, root / "out"
