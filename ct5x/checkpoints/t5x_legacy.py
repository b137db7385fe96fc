"""T5X's own (pre-Orbax) checkpoint layout, read and written with msgpack and TensorStore.

`checkpoint_{step}/checkpoint` is a Flax msgpack of `{"version": 3, "optimizer": state}` (older
files: the state at top level), where state is `{"target": params, "state": {"step": ...}}`.
Each large array is replaced in the msgpack by a TensorStore spec naming a zarr directory
beside it, such as `target.encoder.layers_0.attention.key.kernel`; small ones stay inline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts
from flax import serialization

from ct5x import storage
from ct5x.checkpoints.bad_input import bad_input
from ct5x.checkpoints.tree import FlatParams, unflatten
from ct5x.errors import UserInputError

CHECKPOINT_FILE = "checkpoint"
_VERSION = 3
# T5X aims for zarr chunks of at most 64 MiB.
_CHUNK_BYTES = 64 * 1024 * 1024


def _is_spec(value: Any) -> bool:
    return isinstance(value, dict) and "driver" in value


def _flatten_with_specs(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not _is_spec(value):
            flat.update(_flatten_with_specs(value, path + "/"))
        else:
            flat[path] = value
    return flat


def _local_spec(spec: dict, step_dir: Path) -> dict | None:
    """The spec with its array folder found beside the msgpack file, wherever the checkpoint was
    written and wherever it is now (a local folder, or a bucket through TensorStore's gcs
    driver); None when it names no path."""
    spec = dict(spec)
    # tensorstore<0.1.14 specs put the path beside the kvstore rather than inside it.
    outer_path = spec.pop("path", None)
    relative = (spec.get("kvstore") or {}).get("path", outer_path)
    if not isinstance(relative, str):
        return None
    array_dir = os.fspath(step_dir / os.path.basename(relative.rstrip("/")))
    spec["kvstore"] = (array_dir if storage.is_url(array_dir)
                       else {"driver": "file", "path": array_dir})
    return spec


def _read_array(spec: dict, step_dir: Path, name: str) -> np.ndarray:
    local = _local_spec(spec, step_dir)
    if local is None:
        raise UserInputError(f"{step_dir / CHECKPOINT_FILE}: the spec of {name} names no path")
    kvstore = local["kvstore"]
    source = kvstore if isinstance(kvstore, str) else kvstore["path"]
    try:
        store = ts.open(local, open=True, read=True).result()
        return np.asarray(store.read().result())
    except Exception as error:  # noqa: BLE001 -- TensorStore reports bad data as ValueError etc.
        raise bad_input(source, "cannot read array", error) from None


def read_legacy(step_dir: str | Path) -> tuple[dict[str, np.ndarray], int | None]:
    """Flat (unchecked) target params and the step of a legacy T5X checkpoint directory."""
    step_dir = storage.path(step_dir)
    path = step_dir / CHECKPOINT_FILE
    try:
        contents = serialization.msgpack_restore(path.read_bytes())
    except Exception as error:  # noqa: BLE001 -- any failure to parse the bytes is bad input
        raise bad_input(path, "not a readable T5X msgpack checkpoint", error) from None
    state = contents.get("optimizer", contents) if isinstance(contents, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("target"), dict):
        raise UserInputError(f"{path}: holds no 'target' parameter tree")
    flat = {}
    for name, value in _flatten_with_specs(state["target"]).items():
        if _is_spec(value):
            flat[name] = _read_array(value, step_dir, name)
        elif isinstance(value, np.ndarray):
            flat[name] = value
        else:
            raise UserInputError(f"{path}: target/{name} is neither an array nor a spec")
    inner = state.get("state")
    step = inner.get("step") if isinstance(inner, dict) else None
    return flat, None if step is None else int(np.asarray(step))


def _chunks(shape: tuple[int, ...], itemsize: int) -> list[int]:
    """Whole rows per chunk, as many as fit in `_CHUNK_BYTES`."""
    if not shape:
        return []
    row_bytes = itemsize * int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, min(shape[0], _CHUNK_BYTES // max(row_bytes, 1)))
    return [rows, *shape[1:]]


def write_legacy(step_dir: Path, flat: FlatParams, step: int) -> None:
    """Writes a legacy T5X checkpoint into an existing (staging) `checkpoint_{step}` directory."""
    specs = {}
    for name, array in flat.items():
        array_name = f"target.{name.replace('/', '.')}"
        spec = {
            "driver": "zarr",
            "dtype": array.dtype.name,
            "kvstore": {"driver": "file", "path": array_name},
            "metadata": {
                "compressor": {"id": "gzip"},
                "shape": list(array.shape),
                "chunks": _chunks(array.shape, array.itemsize),
            },
        }
        store = ts.open(_local_spec(spec, step_dir), create=True).result()
        store.write(array).result()
        specs[name] = spec
    state = {"target": unflatten(specs), "state": {"step": np.asarray(step, np.int32)}}
    payload = serialization.msgpack_serialize({"version": _VERSION, "optimizer": state})
    (step_dir / CHECKPOINT_FILE).write_bytes(payload)


def is_legacy(step_dir: Path) -> bool:
    return (step_dir / CHECKPOINT_FILE).is_file() and not (step_dir / "_METADATA").exists()

