"""Finding and reading the run directories that `ct5x train` writes (`MODEL_DIR/run.json`).

A run directory is any folder under the search root holding a `run.json`. Only the fields the
evaluation needs are checked here; the task's variant (fold, fraction, site) comes from the task
registry, which is what the run trained on.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping
from typing import Any

from ct5x.errors import UserInputError

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
DATA_SETTING_KEYS = ("data_dir", "dataset_dirs", "site_dirs", "folds_dir")


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run as its run.json describes it."""

    directory: pathlib.Path
    model: str
    task: str
    finished: bool
    latest_step: int
    best_step: int | None
    data_settings: Mapping[str, Any]
    vocabulary: str | None

    @property
    def checkpoint_step(self) -> int:
        """The step to evaluate: the best validation checkpoint, else the latest."""
        return self.latest_step if self.best_step is None else self.best_step

    @property
    def checkpoint_dir(self) -> pathlib.Path:
        return self.directory / f"checkpoint_{self.checkpoint_step}"


def find_run_files(root: str | pathlib.Path) -> list[pathlib.Path]:
    """Every run.json under `root` (any depth), sorted so runs are visited in a stable order."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise UserInputError(f"--runs {root}: not a directory")
    return sorted(root.rglob(RUN_FILE))


def _field(record: Mapping, name: str, kinds: tuple[type, ...], path: pathlib.Path) -> Any:
    value = record.get(name)
    # bool is an int subclass: a step given as true/false is still wrong.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
        raise UserInputError(f"{path}: field {name!r} must be {expected}")
    return value


def read_run(path: str | pathlib.Path) -> Run:
    """A run.json parsed and checked; UserInputError naming the file for anything unusable."""
    path = pathlib.Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserInputError(f"{path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise UserInputError(f"{path}: not a JSON object")
    data_settings = record.get("data_settings") or {}
    if not isinstance(data_settings, dict):
        raise UserInputError(f"{path}: field 'data_settings' must be an object")
    unknown = sorted(set(data_settings) - set(DATA_SETTING_KEYS))
    if unknown:
        raise UserInputError(f"{path}: unknown data_settings keys {', '.join(unknown)}")
    return Run(
        directory=path.parent,
        model=_field(record, "model", (str,), path),
        task=_field(record, "task", (str,), path),
        finished=_field(record, "finished", (bool,), path),
        latest_step=_field(record, "latest_step", (int,), path),
        best_step=_field(record, "best_step", (int, type(None)), path),
        data_settings=data_settings,
        vocabulary=_field(record, "vocabulary", (str, type(None)), path),
    )

