"""MODEL_DIR: the contract between `ct5x train` and the evaluation package.

It holds config.gin (the operative config), config.json and spiece.model (network and vocabulary),
checkpoint_<step>/ (train state), metrics.jsonl (one object per log or evaluation line),
run.json (`ct5x.run_record`, rewritten atomically after every evaluation), train/ and validation/
(TensorBoard). Only host 0 writes files; every host may read them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax

from ct5x.atomic import write_bytes
from ct5x.errors import UserInputError
from ct5x.run_record import RUN_FILE, TRAINING_METRICS_FILE, read_run_record, record_text

# Room for temporary copies while a checkpoint is staged, beyond the checkpoint itself.
DISK_MARGIN = 1.2


def is_primary() -> bool:
    return jax.process_index() == 0


class RunDirectory:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().absolute()

    def prepare(self, checkpoint_bytes: int) -> None:
        """Creates the folder; fails before training if it is not writable or the disk is short."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-check-"):
                pass
        except OSError as error:
            raise UserInputError(
                f"MODEL_DIR={self.path}: not writable ({error.strerror})"
            ) from None
        free = shutil.disk_usage(self.path).free
        needed = int(checkpoint_bytes * DISK_MARGIN)
        if free < needed:
            raise UserInputError(
                f"MODEL_DIR={self.path}: {free / 2**20:,.0f} MiB free, one checkpoint needs about "
                f"{needed / 2**20:,.0f} MiB"
            )

    def write_text(self, name: str, text: str) -> None:
        if is_primary():
            write_bytes(self.path / name, text.encode())

    def copy_in(self, source: str | os.PathLike, name: str) -> Path:
        """Copies a file into the run directory (atomically) and returns its new path."""
        if is_primary():
            try:
                data = Path(source).read_bytes()
            except OSError as error:
                raise UserInputError(f"{source}: cannot be read ({error.strerror})") from None
            write_bytes(self.path / name, data)
        return self.path / name

    def read_run(self) -> dict[str, Any] | None:
        """run.json's fields (checked by `run_record.read_run_record`), or None before the
        first evaluation."""
        record = read_run_record(self.path)
        return None if record is None else record.to_json()

    def write_run(self, record: dict[str, Any]) -> None:
        """run.json, checked as every reader checks it (`run_record`), written atomically."""
        self.write_text(RUN_FILE, record_text(record, str(self.path / RUN_FILE)))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """One line of metrics.jsonl (numbers only: never example text)."""
        if is_primary():
            with open(self.path / TRAINING_METRICS_FILE, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(record) + "\n")

    def truncate_metrics(self, after_step: int, drop_validation_at: int | None = None) -> None:
        """Drops lines a killed run logged after the checkpoint it resumes from (and the
        evaluation lines of a step about to be evaluated again)."""
        path = self.path / TRAINING_METRICS_FILE
        if not is_primary() or not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            evaluation = any(key.startswith("validation/") for key in record)
            if record.get("step", 0) > after_step or (
                evaluation and record.get("step") == drop_validation_at
            ):
                continue
            kept.append(line)
        write_bytes(path, "".join(line + "\n" for line in kept).encode())

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / TRAINING_METRICS_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
