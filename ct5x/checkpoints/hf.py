"""Hugging Face T5 directories: `config.json` plus weights in any published form.

Reads `model.safetensors`, sharded safetensors (`model.safetensors.index.json`),
`pytorch_model.bin` (and its sharded index) and `flax_model.msgpack`; writes
`model.safetensors`, `config.json` and `generation_config.json` that
`T5ForConditionalGeneration.from_pretrained` loads with no missing or unexpected keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ct5x import storage
from ct5x.checkpoints.bad_input import bad_input
from ct5x.checkpoints.flax_msgpack import load_flax_msgpack
from ct5x.checkpoints.hf_names import hf_to_t5x, t5x_to_hf
from ct5x.checkpoints.torch_pickle import load_torch_state_dict
from ct5x.checkpoints.tree import FlatParams
from ct5x.config import T5Config
from ct5x.errors import UserInputError

CONFIG_FILE = "config.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "flax_model.msgpack",
)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserInputError(f"{path}: cannot be read ({type(error).__name__})") from None


def _read_config_dict(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"{path}: missing; a Hugging Face checkpoint needs its config.json")
    hf = _read_json(path)
    if not isinstance(hf, dict):
        raise UserInputError(f"{path}: expected a JSON object")
    return hf


def _config_from_dict(hf: dict[str, Any], path: Path) -> T5Config:
    try:
        return T5Config.from_hf_dict(hf, source=str(path))
    except (TypeError, ValueError) as error:
        raise UserInputError(f"{path}: a T5 field has an invalid value ({error})") from None


def read_config(path: str | Path) -> T5Config:
    """A `T5Config` from a Hugging Face `config.json` (see `T5Config.from_hf_dict`)."""
    path = storage.path(path)
    return _config_from_dict(_read_config_dict(path), path)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    local = storage.local_copy(path)  # safetensors maps a local file; a bucket's is copied first
    try:
        with safe_open(local, framework="np") as handle:
            names = list(handle.keys())
            bf16 = {n for n in names if handle.get_slice(n).get_dtype() == "BF16"}
            tensors = {n: handle.get_tensor(n) for n in names if n not in bf16}
        if bf16:  # numpy has no bfloat16; the Flax reader returns ml_dtypes arrays
            with safe_open(local, framework="flax") as handle:
                tensors.update({n: np.asarray(handle.get_tensor(n)) for n in bf16})
    except Exception as error:  # noqa: BLE001 -- safetensors raises its own untyped errors
        raise bad_input(path, "not a readable safetensors file", error) from None
    return tensors


def _read_sharded(index_path: Path, read_shard: Callable[[Path], dict]) -> dict[str, np.ndarray]:
    index = _read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserInputError(f"{index_path}: has no weight_map")
    tensors: dict[str, np.ndarray] = {}
    for shard_name in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard_name
        if not shard_path.is_file():
            raise UserInputError(f"{shard_path}: shard named in {index_path.name} is missing")
        shard = read_shard(shard_path)
        for name, owner in weight_map.items():
            if owner == shard_name:
                if name not in shard:
                    raise UserInputError(f"{shard_path}: tensor {name} is missing")
                tensors[name] = shard[name]
    return tensors


def read_tensors(directory: Path) -> tuple[dict[str, np.ndarray], Path]:
    """The state dict of the first weights file found, in `WEIGHT_FILES` order, and its path."""
    readers: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {
        "model.safetensors": _read_safetensors,
        "model.safetensors.index.json": lambda p: _read_sharded(p, _read_safetensors),
        "pytorch_model.bin": load_torch_state_dict,
        "pytorch_model.bin.index.json": lambda p: _read_sharded(p, load_torch_state_dict),
        "flax_model.msgpack": load_flax_msgpack,
    }
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            return readers[name](path), path
    expected = ", ".join(WEIGHT_FILES)
    raise UserInputError(f"{directory}: no weights file (expected one of {expected})")


def read_hf(directory: str | Path) -> tuple[T5Config, FlatParams]:
    """Config and flat T5X params of a Hugging Face T5 directory."""
    directory = storage.path(directory)
    config_path = directory / CONFIG_FILE
    hf = _read_config_dict(config_path)
    config = _config_from_dict(hf, config_path)
    tensors, weights_path = read_tensors(directory)
    # Only a config that ties the embeddings may leave lm_head out (transformers 5 saves none).
    untied_by = None
    if not hf.get("tie_word_embeddings", True):
        untied_by = f"{config_path} says tie_word_embeddings=false"
    return config, hf_to_t5x(tensors, config, str(weights_path), untied_by=untied_by)


def config_json(config: T5Config) -> bytes:
    """The `config.json` bytes for `config` (also written beside T5X checkpoints)."""
    return (json.dumps(config.to_hf_dict(), indent=2) + "\n").encode()


def write_hf(directory: Path, config: T5Config, flat: FlatParams) -> None:
    """Writes weights and configs into an existing (staging) directory."""
    save_file(t5x_to_hf(flat, config), str(directory / "model.safetensors"),
              metadata={"format": "pt"})
    (directory / CONFIG_FILE).write_bytes(config_json(config))
    generation = {
        "decoder_start_token_id": config.decoder_start_id,
        "eos_token_id": config.eos_id,
        "pad_token_id": config.pad_id,
    }
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
