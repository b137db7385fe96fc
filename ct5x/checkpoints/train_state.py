"""Save and restore the whole train state in T5X's Orbax layout, atomically, with keep-N pruning.

`MODEL_DIR/checkpoint_<step>/state/` holds `{"target": params, "state": {"step", "param_states"}}`
(OCDBT on; sharded arrays are written by every process and restored straight onto the mesh), and
`checkpoint_<step>/train_ds-<process>-of-<processes>.json` each process's data position beside it.
A step is built in `MODEL_DIR/.checkpoint_<step>.tmp` and renamed into place, so a process killed
mid-save leaves the previous checkpoints untouched and only a staging folder that the next run
removes. `state_to_tree` and `tree_to_state` convert between the Trainer's `TrainState` and that
saved tree.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import serialization

from ct5x.checkpoints.bad_input import bad_input
from ct5x.checkpoints.orbax_io import ITEM
from ct5x.errors import UserInputError
from ct5x.multihost import barrier
from ct5x.train_state import TrainState

STEP_DIR = re.compile(r"checkpoint_(\d+)")
STAGING = re.compile(r"\.checkpoint_\d+\.(tmp|deleting)")

logger = logging.getLogger(__name__)


def step_dir(model_dir: str | Path, step: int) -> Path:
    return Path(model_dir).absolute() / f"checkpoint_{step}"


def data_position_file(directory: Path, process: int, processes: int) -> Path:
    return directory / f"train_ds-{process:03d}-of-{processes:03d}.json"


def state_to_tree(state: TrainState) -> dict:
    """T5X's saved layout: {"target": params, "state": {"step", "param_states"}}."""
    return {
        "target": state.params,
        "state": {"step": state.step,
                  "param_states": serialization.to_state_dict(state.opt_state)},
    }


def tree_to_state(tree: dict, opt_state_template: Any) -> TrainState:
    """The saved layout back into a TrainState (the optimizer state's structure from
    `opt_state_template`, e.g. its shapes)."""
    opt_state = serialization.from_state_dict(opt_state_template, tree["state"]["param_states"])
    return TrainState(step=tree["state"]["step"], params=tree["target"], opt_state=opt_state)


def abstract_tree(state_shapes: TrainState, state_shardings: TrainState) -> dict:
    """The saved layout as ShapeDtypeStructs carrying the run's shardings (what to restore
    onto)."""
    def spec(shape, sharding):
        return jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding)

    return state_to_tree(jax.tree.map(spec, state_shapes, state_shardings))


def complete_steps(model_dir: str | Path) -> list[int]:
    """Steps of the train-state checkpoints in `model_dir`, oldest first."""
    model_dir = Path(model_dir).absolute()
    if not model_dir.is_dir():
        return []
    steps = [
        int(match.group(1))
        for child in model_dir.iterdir()
        if (match := STEP_DIR.fullmatch(child.name)) and (child / ITEM).is_dir()
    ]
    return sorted(steps)


def remove_partial_saves(model_dir: str | Path) -> list[str]:
    """Deletes staging folders left by a process killed mid-save or mid-delete; returns names."""
    model_dir = Path(model_dir).absolute()
    removed = []
    if jax.process_index() == 0 and model_dir.is_dir():
        for child in model_dir.iterdir():
            if STAGING.fullmatch(child.name):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child.name)
    barrier("ct5x:remove_partial_saves")
    return removed


def _fsync_directory(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def save_train_state(model_dir: str | Path, step: int, tree: Any, data_position: dict) -> Path:
    """Writes `checkpoint_<step>` (every host calls this; host 0 renames it into place)."""
    model_dir = Path(model_dir).absolute()
    final = step_dir(model_dir, step)
    staging = model_dir / f".checkpoint_{step}.tmp"
    if jax.process_index() == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier("ct5x:save_staging")
    handler = ocp.PyTreeCheckpointHandler(use_ocdbt=True)
    with ocp.Checkpointer(handler) as checkpointer:
        checkpointer.save(staging / ITEM, args=ocp.args.PyTreeSave(tree))
    position_file = data_position_file(staging, jax.process_index(), jax.process_count())
    position_file.write_text(json.dumps(data_position) + "\n")
    barrier("ct5x:save_written")
    if jax.process_index() == 0:
        _fsync_directory(staging)
        os.replace(staging, final)
        _fsync_directory(model_dir)
    barrier("ct5x:save_done")
    return final


def restore_train_state(directory: Path, abstract_tree: Any) -> Any:
    """The saved tree restored onto the shardings of `abstract_tree` (ShapeDtypeStructs)."""
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_tree)
    try:
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
            return checkpointer.restore(
                Path(directory).absolute() / ITEM,
                args=ocp.args.PyTreeRestore(item=abstract_tree, restore_args=restore_args),
            )
    except Exception as error:  # noqa: BLE001 -- Orbax and TensorStore raise many error types
        raise bad_input(directory / ITEM, "cannot be restored into this run's train state",
                        error) from None


def read_data_position(directory: Path) -> dict:
    """This process's data position saved beside a checkpoint, or, for a run resumed on another
    number of processes, process 0's (a position is the step of a stream every process reads
    whole, so it does not depend on the processes)."""
    own = data_position_file(directory, jax.process_index(), jax.process_count())
    found = [own] if own.is_file() else sorted(directory.glob("train_ds-000-of-*.json"))
    if not found:
        raise UserInputError(f"{own}: missing (and no train_ds-000-of-*.json beside it)")
    try:
        return json.loads(found[0].read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserInputError(f"{found[0]}: not a readable data position ({error})") from None


def prune_checkpoints(model_dir: str | Path, keep: int, protect: set[int]) -> list[int]:
    """Deletes all but the `keep` newest checkpoints and those in `protect`; returns the steps.

    Each is renamed to a staging name first, so a kill mid-delete never leaves a broken step.
    """
    steps = complete_steps(model_dir)
    doomed = [s for s in steps[:max(0, len(steps) - keep)] if s not in protect]
    if jax.process_index() == 0:
        for step in doomed:
            trash = Path(model_dir).absolute() / f".checkpoint_{step}.deleting"
            os.replace(step_dir(model_dir, step), trash)
            shutil.rmtree(trash, ignore_errors=True)
    barrier("ct5x:prune")
    return doomed
