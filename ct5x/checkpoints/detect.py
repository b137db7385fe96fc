"""Which format a user's path holds, and where its weights, config and vocabulary are.

A T5X checkpoint may be given as its `checkpoint_{step}` directory, that directory's
`checkpoint` file, or the model directory above it (then the latest complete step is used).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ct5x import storage
from ct5x.checkpoints.hf import CONFIG_FILE, WEIGHT_FILES
from ct5x.checkpoints.orbax_io import is_orbax
from ct5x.checkpoints.t5x_legacy import CHECKPOINT_FILE, is_legacy
from ct5x.errors import UserInputError

HF, T5X_LEGACY, T5X_ORBAX = "hf", "t5x_legacy", "t5x_orbax"
_STEP_DIR = re.compile(r"checkpoint_(\d+)")


@dataclasses.dataclass(frozen=True)
class Located:
    format: str
    # The HF directory, or the T5X `checkpoint_{step}` directory.
    directory: Path
    # Where to look for config.json and spiece.model, nearest first.
    side_directories: tuple[Path, ...]


def _step_format(step_dir: Path) -> str | None:
    if is_orbax(step_dir):
        return T5X_ORBAX
    if is_legacy(step_dir):
        return T5X_LEGACY
    return None


def _latest_step_dir(model_dir: Path) -> Path | None:
    steps = [
        (int(match.group(1)), child)
        for child in model_dir.iterdir()
        if child.is_dir() and (match := _STEP_DIR.fullmatch(child.name)) and _step_format(child)
    ]
    return max(steps)[1] if steps else None


def locate(path: str | Path) -> Located:
    """Resolves a user's checkpoint path (local or in a bucket); UserInputError when it holds no
    known format."""
    path = storage.path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file or directory")
    if path.is_file() and path.name == CHECKPOINT_FILE:
        path = path.parent
    if not path.is_dir():
        raise UserInputError(f"{path}: expected a checkpoint directory")
    step_format = _step_format(path)
    if step_format:
        return Located(step_format, path, (path, path.parent))
    latest = _latest_step_dir(path)
    if latest is not None:
        return Located(_step_format(latest), latest, (latest, path))
    if any((path / name).is_file() for name in (CONFIG_FILE, *WEIGHT_FILES)):
        return Located(HF, path, (path,))
    raise UserInputError(
        f"{path}: neither a Hugging Face T5 directory nor a T5X checkpoint (checkpoint_<step>)"
    )


def detect_format(path: str | Path) -> str:
    """"hf", "t5x_legacy" or "t5x_orbax"; UserInputError for anything else."""
    return locate(path).format
