"""MODEL_DIR: the contract between `ct5x train` and the evaluation package.

It holds config.gin (the operative config), config.json and spiece.model (network and vocabulary),
checkpoint_<step>/ (train state), metrics.jsonl (one object per log or evaluation line),
run.json (`ct5x.run_record`, rewritten atomically after every evaluation), train/ and validation/
(TensorBoard). Only host 0 writes files; every host may read them.

MODEL_DIR may be a bucket (`gs://...`, `ct5x.storage`): every file is then one object, written
whole. metrics.jsonl, which grows, is rewritten whole after each line (from a copy kept in memory),
so a preempted run leaves it as it stood after its last complete line, as on local disk; TensorBoard
event files are written on local disk and copied into the bucket after each flush. The free-space
check applies to local disk only (a bucket has no such figure).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from typing import Any

import jax

from ct5x import storage
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
        self.path = storage.absolute(path)
        self._metrics_text: str | None = None  # metrics.jsonl as written, in a bucket

    def prepare(self, checkpoint_bytes: int) -> None:
        """Creates the folder; fails before training if it is not writable or (on local disk)
        the disk is short."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if storage.is_url(self.path):
                probe = self.path / f".write-check-{uuid.uuid4().hex}"
                probe.write_bytes(b"")
                probe.unlink()
                return
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-check-"):
                pass
        except Exception as error:  # noqa: BLE001 -- OSError locally; the store's own errors
            reason = getattr(error, "strerror", None) or (str(error).splitlines() or [""])[0]
            raise UserInputError(f"MODEL_DIR={self.path}: not writable ({reason})") from None
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

    def copy_in(self, source: str | os.PathLike, name: str) -> Any:
        """Copies a file into the run directory (atomically) and returns its new path."""
        if is_primary():
            try:
                data = storage.path(source).read_bytes()
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
        if not is_primary():
            return
        line = json.dumps(record) + "\n"
        path = self.path / TRAINING_METRICS_FILE
        if not storage.is_url(path):
            storage.append_text(path, line)
            return
        # In a bucket, storage.append_text would read the object back for every line.
        if self._metrics_text is None:
            self._metrics_text = path.read_text(encoding="utf-8") if path.exists() else ""
        self._metrics_text += line
        write_bytes(path, self._metrics_text.encode())

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
        self._metrics_text = "".join(line + "\n" for line in kept)
        write_bytes(path, self._metrics_text.encode())

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / TRAINING_METRICS_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def summary_writers(self, names: tuple[str, ...] = ("train", "validation")) -> dict:
        """TensorBoard writers (clu's) for the folders `names`; in a bucket, each writes on local
        disk and copies its event files in after every flush (TensorFlow's own GCS file system
        cannot be aimed at another endpoint, see `ct5x.storage`)."""
        from clu.metric_writers import SummaryWriter

        if not storage.is_url(self.path):
            return {name: SummaryWriter(str(self.path / name)) for name in names}
        return {name: MirroredSummaryWriter(self.path / name) for name in names}


class MirroredSummaryWriter:
    """clu's SummaryWriter into a local folder, mirrored into `destination` on every flush."""

    def __init__(self, destination: Any):
        from clu.metric_writers import SummaryWriter

        self.destination = destination
        self.local = tempfile.mkdtemp(prefix="ct5x-events-")
        self.writer = SummaryWriter(self.local)

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self.writer.write_scalars(step, scalars)

    def flush(self) -> None:
        self.writer.flush()
        storage.upload_tree(self.local, self.destination)

    def close(self) -> None:
        self.writer.close()
        storage.upload_tree(self.local, self.destination)
        shutil.rmtree(self.local, ignore_errors=True)
