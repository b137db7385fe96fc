"""Reads a Hugging Face `flax_model.msgpack` into PyTorch-named, PyTorch-oriented tensors.

transformers' former Flax T5 used the PyTorch module names joined by "/" (for example
`encoder/block/0/layer/0/SelfAttention/q/kernel`), with `nn.Dense` kernels stored [in, out]
and `nn.Embed` tables under `embedding`. Renaming to the PyTorch names lets one mapping
(`hf_names`) serve both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flax import serialization

from ct5x import storage
from ct5x.checkpoints.bad_input import bad_input
from ct5x.checkpoints.tree import flatten
from ct5x.errors import UserInputError


def _torch_name(path: str, array: np.ndarray, source: Path) -> tuple[str, np.ndarray]:
    *module, leaf = path.split("/")
    name = ".".join(module)
    if leaf == "kernel":
        if array.ndim != 2:
            raise UserInputError(f"{source}: {path} should be 2-D, has shape {array.shape}")
        return f"{name}.weight", np.ascontiguousarray(array.T)
    if leaf in ("embedding", "weight"):
        return f"{name}.weight", array
    raise UserInputError(f"{source}: unexpected Flax parameter {path}")


def load_flax_msgpack(path: str | Path) -> dict[str, np.ndarray]:
    """{PyTorch name: array} from a Flax T5 parameter file."""
    path = storage.path(path)
    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except Exception as error:  # noqa: BLE001 -- any failure to parse the bytes is bad input
        raise bad_input(path, "not a readable Flax msgpack file", error) from None
    if not isinstance(tree, dict):
        raise UserInputError(f"{path}: does not hold a Flax parameter tree")
    if set(tree) == {"params"}:
        tree = tree["params"]
    tensors = {}
    for key, array in flatten(tree).items():
        if not isinstance(array, np.ndarray):
            raise UserInputError(f"{path}: {key} is not an array")
        name, tensor = _torch_name(key, array, path)
        tensors[name] = tensor
    return tensors
