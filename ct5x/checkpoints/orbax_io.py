"""T5X's Orbax checkpoint layout, through `orbax.checkpoint`.

T5X's Orbax checkpoint manager saves the train state dict `{"target": params, "state": {...}}`
as the item `state` of step directory `checkpoint_{step}` (PyTree handler). The arrays live in
one OCDBT key-value store (Orbax's default, what T5X writes today) or, in older checkpoints, in
one zarr directory per leaf; both read the same. A bare PyTree checkpoint saved straight into
`checkpoint_{step}` is read as well.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from ct5x import storage
from ct5x.checkpoints.bad_input import bad_input
from ct5x.checkpoints.tree import FlatParams, flatten, unflatten
from ct5x.errors import UserInputError

ITEM = "state"


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Orbax logs every phase (and absent optional metadata) through absl; keep errors only."""
    absl_logger = logging.getLogger("absl")
    previous_level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(previous_level)


def item_directory(step_dir: Path) -> Path:
    """Where the PyTree lives: `checkpoint_{step}/state` (T5X) or the step directory itself."""
    return step_dir / ITEM if (step_dir / ITEM).is_dir() else step_dir


def is_orbax(step_dir: Path) -> bool:
    return (step_dir / ITEM).is_dir() or (step_dir / "_METADATA").is_file()


def _restore_target_and_step(checkpointer: ocp.Checkpointer, item: Path) -> dict:
    metadata = checkpointer.metadata(item).item_metadata.tree
    if not isinstance(metadata, dict) or not isinstance(metadata.get("target"), dict):
        raise UserInputError(f"{item}: holds no 'target' parameter tree")
    wanted = {"target": metadata["target"]}
    step_metadata = (metadata.get("state") or {}).get("step")
    if step_metadata is not None:
        wanted["state"] = {"step": step_metadata}
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                          wanted)
    return checkpointer.restore(
        item, args=ocp.args.PyTreeRestore(item=wanted, restore_args=restore_args,
                                          partial_restore=True)
    )


def read_orbax(step_dir: str | Path) -> tuple[dict[str, np.ndarray], int | None]:
    """Flat (unchecked) target params and step, restored as host numpy arrays."""
    # Orbax reads a relative path's metadata as absent: always hand it an absolute one.
    item = item_directory(storage.absolute(step_dir))
    try:
        with _quiet_orbax(), ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
            restored = _restore_target_and_step(checkpointer, item)
    except UserInputError:
        raise
    except Exception as error:  # noqa: BLE001 -- Orbax and TensorStore raise many error types
        raise bad_input(item, "not a readable Orbax checkpoint", error) from None
    step = restored.get("state", {}).get("step")
    return flatten(restored["target"]), None if step is None else int(np.asarray(step))


def write_orbax(step_dir: Path, flat: FlatParams, step: int, ocdbt: bool = True) -> None:
    """Writes the item `state` into an existing (staging) `checkpoint_{step}` directory, as T5X's
    Orbax manager lays it out: OCDBT (all arrays in one key-value store), as T5X writes today,
    or with `ocdbt=False` one zarr directory per leaf, as older T5X and Orbax versions did."""
    tree = {"target": unflatten(flat), "state": {"step": np.asarray(step, np.int32)}}
    handler = ocp.PyTreeCheckpointHandler(use_ocdbt=ocdbt)
    with _quiet_orbax(), ocp.Checkpointer(handler) as checkpointer:
        checkpointer.save(storage.absolute(step_dir) / ITEM, args=ocp.args.PyTreeSave(tree))
