"""Save and restore the whole train state in T5X's Orbax layout, in the background, committed as
Orbax commits, with keep-N pruning; on local disk and in a bucket alike.

`MODEL_DIR/checkpoint_<step>/state/` holds `{"target": params, "state": {"step", "param_states"}}`
(OCDBT on; sharded arrays are written by every process and restored straight onto the mesh), and
`checkpoint_<step>/train_ds-<process>-of-<processes>.json` each process's data position beside it.

Commit protocol: Orbax's commit-file mode, on every file system (an object store cannot rename a
folder into place). Every process writes its data position, then Orbax writes the arrays where
they stay and, once every process has written, process 0 writes `state/commit_success.txt`. A
step is complete only when that marker exists (checkpoints saved by earlier ct5x versions, which
renamed whole folders, have it too); one without it, left by a process killed mid-save, is
ignored and then removed by the next run. Pruning deletes the marker first, so a kill mid-delete
leaves a step that is ignored and removed the same way.

`CheckpointWriter` saves as T5X's Orbax checkpointer does, asynchronously: `start` returns once
the state is copied off the devices and training goes on while it is written; `committed` says,
without waiting, whether it has committed, and `wait` waits for it. `state_to_tree` and
`tree_to_state` convert between the Trainer's `TrainState` and that saved tree.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax import serialization

from ct5x import storage
from ct5x.checkpoints.bad_input import bad_input
from ct5x.checkpoints.orbax_io import ITEM
from ct5x.errors import UserInputError
from ct5x.multihost import barrier
from ct5x.train_state import TrainState

STEP_DIR = re.compile(r"checkpoint_(\d+)")
# Staging folders of ct5x versions that renamed whole folders into place.
STAGING = re.compile(r"\.checkpoint_\d+\.(tmp|deleting)")
# Orbax's commit marker (orbax.checkpoint's COMMIT_SUCCESS_FILE), inside the `state` item.
COMMIT_MARKER = "commit_success.txt"

logger = logging.getLogger(__name__)


def step_dir(model_dir: str | os.PathLike, step: int) -> epath.Path:
    return storage.absolute(model_dir) / f"checkpoint_{step}"


def data_position_file(directory: epath.Path, process: int, processes: int) -> epath.Path:
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


def is_committed(directory: epath.Path) -> bool:
    """True when the step's save committed (its marker exists)."""
    return (directory / ITEM / COMMIT_MARKER).exists()


def complete_steps(model_dir: str | os.PathLike) -> list[int]:
    """Steps of the committed train-state checkpoints in `model_dir`, oldest first."""
    model_dir = storage.absolute(model_dir)
    if not model_dir.is_dir():
        return []
    steps = [
        int(match.group(1))
        for child in model_dir.iterdir()
        if (match := STEP_DIR.fullmatch(child.name)) and is_committed(child)
    ]
    return sorted(steps)


def _is_partial_save(child: epath.Path) -> bool:
    """A staging folder of an earlier ct5x, or a step this module began and never committed
    (only its own files: another tool's `checkpoint_<step>` is left alone)."""
    if STAGING.fullmatch(child.name):
        return True
    if not STEP_DIR.fullmatch(child.name) or is_committed(child):
        return False
    return all(item.name == ITEM or item.name.startswith("train_ds-")
               for item in child.iterdir())


def remove_partial_saves(model_dir: str | os.PathLike) -> list[str]:
    """Deletes the saves a process killed mid-save or mid-delete left; returns their names."""
    model_dir = storage.absolute(model_dir)
    removed = []
    if jax.process_index() == 0 and model_dir.is_dir():
        for child in sorted(model_dir.iterdir()):
            if _is_partial_save(child):
                child.rmtree(missing_ok=True)
                removed.append(child.name)
    barrier("ct5x:remove_partial_saves")
    return removed


def _handler() -> ocp.PyTreeCheckpointHandler:
    return ocp.PyTreeCheckpointHandler(use_ocdbt=True)


# Orbax's commit-file protocol wherever MODEL_DIR is (its default on local disk renames instead).
COMMIT_FILE = ocp.options.AtomicityOptions(mode=ocp.options.AtomicityMode.COMMIT_FILE)


class CheckpointWriter:
    """Saves train states one after another in the background (every process calls it alike)."""

    def __init__(self) -> None:
        self._checkpointer: ocp.AsyncCheckpointer | None = None
        self._waiter: threading.Thread | None = None
        self._error: BaseException | None = None
        self.step: int | None = None  # the save in flight, or the last one

    def start(self, model_dir: str | os.PathLike, step: int, tree: Any,
              data_position: dict) -> epath.Path:
        """Starts writing `checkpoint_<step>`: returns once the arrays are off the devices (the
        previous save must have been waited for)."""
        if self._waiter is not None:
            raise RuntimeError("CheckpointWriter.start: the previous save was not waited for")
        final = step_dir(model_dir, step)
        if jax.process_index() == 0:
            final.mkdir(parents=True, exist_ok=True)
        barrier("ct5x:save_start")
        position_file = data_position_file(final, jax.process_index(), jax.process_count())
        position_file.write_text(json.dumps(data_position) + "\n")
        if self._checkpointer is None:
            self._checkpointer = ocp.AsyncCheckpointer(_handler(), atomicity_options=COMMIT_FILE)
        # Orbax's save begins at a barrier: every data position is written before any array.
        self._checkpointer.save(final / ITEM, args=ocp.args.PyTreeSave(tree))
        self.step, self._error = step, None
        self._waiter = threading.Thread(target=self._wait_for_orbax, name="ct5x-checkpoint",
                                        daemon=True)
        self._waiter.start()
        return final

    def _wait_for_orbax(self) -> None:
        try:
            self._checkpointer.wait_until_finished()
        except BaseException as error:  # noqa: BLE001 -- raised again by `wait`
            self._error = error

    def committed(self) -> bool:
        """True, without waiting, once the save in flight has committed (or none is)."""
        return self._waiter is None or not self._waiter.is_alive()

    def wait(self) -> int | None:
        """Waits until the save in flight has committed; returns its step (None: nothing saved).
        An error of the background write is raised here."""
        if self._waiter is not None:
            self._waiter.join()
            self._waiter = None
            if self._error is not None:
                error, self._error = self._error, None
                raise error
        return self.step

    def close(self) -> None:
        self.wait()
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None


def save_train_state(model_dir: str | os.PathLike, step: int, tree: Any,
                     data_position: dict) -> epath.Path:
    """Writes `checkpoint_<step>` and waits until it has committed (every host calls this)."""
    writer = CheckpointWriter()
    try:
        return writer.start(model_dir, step, tree, data_position)
    finally:
        writer.close()


def restore_train_state(directory: str | os.PathLike, abstract_tree: Any) -> Any:
    """The saved tree restored onto the shardings of `abstract_tree` (ShapeDtypeStructs)."""
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_tree)
    try:
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as checkpointer:
            return checkpointer.restore(
                storage.absolute(directory) / ITEM,
                args=ocp.args.PyTreeRestore(item=abstract_tree, restore_args=restore_args),
            )
    except Exception as error:  # noqa: BLE001 -- Orbax and TensorStore raise many error types
        raise bad_input(storage.path(directory) / ITEM,
                        "cannot be restored into this run's train state",
                        error) from None


def read_data_position(directory: epath.Path) -> dict:
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


def prune_checkpoints(model_dir: str | os.PathLike, keep: int, protect: set[int]) -> list[int]:
    """Deletes all but the `keep` newest committed checkpoints and those in `protect` (process 0;
    the others return at once: they read no older checkpoint while training); returns the steps.

    Each loses its commit marker first, so a kill mid-delete never leaves a broken step that
    looks complete.
    """
    if jax.process_index() != 0:
        return []
    steps = complete_steps(model_dir)
    doomed = [s for s in steps[:max(0, len(steps) - keep)] if s not in protect]
    for step in doomed:
        directory = step_dir(model_dir, step)
        (directory / ITEM / COMMIT_MARKER).unlink(missing_ok=True)
        directory.rmtree(missing_ok=True)
    return doomed
