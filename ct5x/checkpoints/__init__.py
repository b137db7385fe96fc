"""Checkpoints in every format ct5x meets: Hugging Face T5 directories and T5X checkpoints.

`load_checkpoint` turns any of them into one `Checkpoint` (config, T5X parameter tree,
vocabulary); `save_hf` and `save_t5x` write it back out atomically; `convert_checkpoint`
chains the two.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ct5x import storage
from ct5x.atomic import staged_directory, write_bytes
from ct5x.checkpoints.detect import HF, T5X_LEGACY, detect_format, locate
from ct5x.checkpoints.hf import CONFIG_FILE, config_json, read_config, read_hf, write_hf
from ct5x.checkpoints.orbax_io import read_orbax, write_orbax
from ct5x.checkpoints.t5x_legacy import read_legacy, write_legacy
from ct5x.checkpoints.tree import check_params, flatten, infer_config, unflatten
from ct5x.config import T5Config
from ct5x.errors import UserInputError

VOCABULARY_FILE = "spiece.model"
# Hugging Face tokenizer settings that travel with the vocabulary (they give its extra_ids).
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json")
# "orbax": OCDBT, as T5X writes today; "orbax_zarr": one zarr directory per array (older Orbax);
# "legacy": T5X's msgpack + TensorStore layout from before Orbax.
T5X_LAYOUTS = ("orbax", "orbax_zarr", "legacy")

__all__ = [
    "Checkpoint",
    "convert_checkpoint",
    "detect_format",
    "load_checkpoint",
    "save_hf",
    "save_t5x",
]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A T5 checkpoint in memory, whatever format it came from."""

    config: T5Config
    # Nested T5X parameter tree of float32 numpy arrays.
    params: dict[str, Any]
    # The checkpoint's own spiece.model, if it has one.
    vocabulary_path: str | None
    # Training step of a T5X checkpoint; None for Hugging Face directories.
    step: int | None = None
    # The directory it was read from, for messages; None when built in memory.
    source: str | None = None


def _first_file(directories: tuple[Path, ...], name: str) -> Path | None:
    return next((d / name for d in directories if (d / name).is_file()), None)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Reads a HF directory or T5X checkpoint; UserInputError (one line) for any bad input."""
    located = locate(path)
    step = None
    if located.format == HF:
        config, params = read_hf(located.directory)
    else:
        reader = read_legacy if located.format == T5X_LEGACY else read_orbax
        raw, step = reader(located.directory)
        config_path = _first_file(located.side_directories, CONFIG_FILE)
        source = str(located.directory)
        config = read_config(config_path) if config_path else infer_config(raw, source)
        if not config.logits_via_embedding and "decoder/logits_dense/kernel" not in raw:
            raise UserInputError(
                f"{source}: parameter decoder/logits_dense/kernel is missing, but {config_path} "
                "describes untied logits; ct5x will not substitute the embedding"
            )
        params = check_params(raw, config, source)
    vocabulary = _first_file(located.side_directories, VOCABULARY_FILE)
    return Checkpoint(
        config=config,
        params=unflatten(params),
        vocabulary_path=str(vocabulary) if vocabulary else None,
        step=step,
        source=str(located.directory),
    )


def _checked_params(checkpoint: Checkpoint) -> dict:
    return check_params(flatten(checkpoint.params), checkpoint.config, "parameters to save")


def _vocabulary_files(checkpoint: Checkpoint) -> dict[str, bytes]:
    """The vocabulary and the tokenizer settings beside it, as name -> bytes."""
    files: dict[str, bytes] = {}
    if checkpoint.vocabulary_path:
        vocabulary = storage.path(checkpoint.vocabulary_path)
        try:
            files[VOCABULARY_FILE] = vocabulary.read_bytes()
            for name in TOKENIZER_FILES:
                if (vocabulary.parent / name).is_file():
                    files[name] = (vocabulary.parent / name).read_bytes()
        except OSError as error:
            raise UserInputError(f"{vocabulary}: cannot be read ({error.strerror})") from None
    return files


def save_hf(checkpoint: Checkpoint, dst: str | Path) -> None:
    """Writes a Hugging Face T5 directory (safetensors, configs, vocabulary) at a new `dst`."""
    params = _checked_params(checkpoint)
    vocabulary_files = _vocabulary_files(checkpoint)
    with staged_directory(dst) as staging:
        write_hf(staging, checkpoint.config, params)
        for name, data in vocabulary_files.items():
            (staging / name).write_bytes(data)


def _write_step(step_dir: Path, params: dict, step: int, layout: str) -> None:
    if layout == "legacy":
        write_legacy(step_dir, params, step)
    else:
        write_orbax(step_dir, params, step, ocdbt=layout == "orbax")


def save_t5x(checkpoint: Checkpoint, dst: str | Path, step: int = 0,
             layout: str = "orbax") -> None:
    """Writes `dst/checkpoint_{step}` in one of `T5X_LAYOUTS`, config.json and vocabulary beside
    it. `dst` may be new, or an existing model directory that lacks this step."""
    if layout not in T5X_LAYOUTS:
        raise UserInputError(f"layout={layout!r}: expected one of {', '.join(T5X_LAYOUTS)}")
    if step < 0:
        raise UserInputError(f"step={step}: must be zero or more")
    params = _checked_params(checkpoint)
    side_files = {CONFIG_FILE: config_json(checkpoint.config), **_vocabulary_files(checkpoint)}
    dst = storage.path(dst)
    step_name = f"checkpoint_{step}"
    if dst.is_dir() and any(dst.iterdir()):
        if (dst / step_name).exists():
            raise UserInputError(f"{dst / step_name}: already exists")
        with staged_directory(dst / step_name) as staging:
            _write_step(staging, params, step, layout)
        for name, data in side_files.items():
            write_bytes(dst / name, data)
        return
    with staged_directory(dst) as staging:
        (staging / step_name).mkdir()
        _write_step(staging / step_name, params, step, layout)
        for name, data in side_files.items():
            (staging / name).write_bytes(data)


def convert_checkpoint(src: str | Path, dst: str | Path, to: str,
                       t5x_layout: str = "orbax") -> None:
    """Reads `src` in any format and writes it to a new `dst` as "hf" or "t5x" (either may be
    a bucket URL)."""
    if to not in ("hf", "t5x"):
        raise UserInputError(f"to={to!r}: expected 'hf' or 't5x'")
    checkpoint = load_checkpoint(src)
    if to == "hf":
        save_hf(checkpoint, dst)
    else:
        save_t5x(checkpoint, dst, step=checkpoint.step or 0, layout=t5x_layout)

