"""Reads `pytorch_model.bin` (torch's zip format) into numpy arrays without torch and without
running code from the file.

Written by hand because no maintained library does this: `torch.load` needs torch (not a
runtime dependency here) and, with `weights_only=False`, unpickles arbitrary code; safetensors
reads only its own format. This unpickler resolves only the handful of globals torch uses to
describe tensors and reads each storage record of the zip as a flat numpy buffer.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from ct5x.checkpoints.bad_input import bad_input
from ct5x.errors import UserInputError

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class _StorageType:
    """Stands in for `torch.<X>Storage`: only its element dtype matters."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                       metadata=None) -> np.ndarray:
    del requires_grad, hooks, metadata
    size, stride = tuple(size), tuple(stride)
    if any(s < 0 for s in size + stride) or len(size) != len(stride):
        raise ValueError("invalid tensor geometry")
    reach = sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    last = offset + reach if all(size) else offset - 1
    if offset < 0 or last >= storage.size:
        raise ValueError("tensor reaches past the end of its storage")
    strides = tuple(s * storage.itemsize for s in stride)
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=strides)
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, hooks=None) -> np.ndarray:
    del requires_grad, hooks
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError("unknown persistent id")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("storage of an unknown type")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
            array = np.frombuffer(raw, dtype=dtype)
            if array.size < numel:
                raise pickle.UnpicklingError(f"storage {key} is truncated")
            self._storages[key] = array.astype(storage_type.dtype, copy=False)
        return self._storages[key]


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """{name: array} from a torch zip file (in a bucket: from a local copy); UserInputError for
    anything else or any code."""
    from ct5x import storage

    local = storage.local_copy(path)
    if not zipfile.is_zipfile(local):
        raise UserInputError(
            f"{path}: not a zip-format PyTorch file (re-save it with torch>=1.6 or as safetensors)"
        )
    try:
        with zipfile.ZipFile(local) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(pickles) != 1:
                raise pickle.UnpicklingError("expected exactly one data.pkl")
            prefix = pickles[0][: -len("data.pkl")]
            byteorder_name = f"{prefix}byteorder"
            byteorder = (
                archive.read(byteorder_name).decode().strip()
                if byteorder_name in archive.namelist() else "little"
            )
            state = _RestrictedUnpickler(
                archive.read(pickles[0]), archive, prefix, byteorder
            ).load()
    except Exception as error:  # noqa: BLE001 -- any failure to parse untrusted bytes is bad input
        raise bad_input(path, "cannot read as a PyTorch state dict", error) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
    ):
        raise UserInputError(f"{path}: does not hold a plain state dict of tensors")
    return dict(state)
