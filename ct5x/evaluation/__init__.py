"""The evaluation package: score every run's best checkpoint on its test split
(`evaluate_runs`, `ct5x evaluate`), then the paper's statistics, tables and plots
(`write_report`, `ct5x report`). It reads run directories and never imports the trainer.

Submodules are imported on first use, so `import ct5x.evaluation` itself is cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EvaluationSettings": "ct5x.evaluation.scoring",
    "EvaluationOutcome": "ct5x.evaluation.scoring",
    "evaluate_runs": "ct5x.evaluation.scoring",
    "ReportSettings": "ct5x.evaluation.report_numbers",
    "find_metrics_files": "ct5x.evaluation.collect",
    "write_report": "ct5x.evaluation.report",
}

__all__ = ["EvaluationOutcome", "EvaluationSettings", "ReportSettings", "evaluate_runs",
           "find_metrics_files", "write_report"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ct5x.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
