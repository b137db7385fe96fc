"""run.json files as `ct5x train` writes them (schema 2), for tests that need a run directory
without training one."""

import pathlib

from ct5x.run_record import BestMetric, DataLocations, RunRecord, record_text
from ct5x_tasks.catalog import Selection
from ct5x_tasks.naming import Variant


def run_record(**fields) -> RunRecord:
    """A finished MedNLI fold-0 run's record; `fields` replace any of RunRecord's."""
    values = {
        "model": "T5-Den", "task": "mednli_fold0", "variant": Variant("mednli", fold=0),
        "initial_checkpoint": None, "learning_rate": 1e-4, "seed": 42, "train_examples": 12,
        "train_steps": 10, "task_feature_lengths": {"inputs": 256, "targets": 20},
        "data_settings": DataLocations(), "vocabulary": None, "ct5x_version": "0.1.0",
        "latest_step": 10, "best_step": 10, "best_metric": BestMetric("accuracy", 0.5),
        "finished": True, "anchor_compatible": False, "selection": Selection("accuracy"),
        "scored_as": "mednli", "batch_size": 8, "pack": False,
    }
    values.update(fields)
    return RunRecord(**values)


def write_run_record(directory, record: RunRecord) -> pathlib.Path:
    """Writes MODEL_DIR/run.json for `record`; returns its path."""
    path = pathlib.Path(directory) / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record_text(record, str(path)))
    return path
