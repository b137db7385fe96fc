"""The torch-free reader of `pytorch_model.bin`: exact tensors, and no code from the file runs."""

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from ct5x.checkpoints.torch_pickle import load_torch_state_dict
from ct5x.errors import UserInputError


def test_reads_dtypes_views_and_parameters_exactly(tmp_path):
    torch.manual_seed(0)
    base = torch.randn(5, 7)
    state = collections.OrderedDict(
        float32=torch.randn(3, 4),
        transposed=base.t(),  # strided view of a shared storage
        sliced=base[1:4, 2:6],  # offset into the same storage
        float16=torch.randn(6).half(),
        bfloat16=torch.randn(2, 3).bfloat16(),
        int64=torch.arange(5),
        scalar=torch.tensor(2.5),
        parameter=torch.nn.Parameter(torch.randn(2, 2)),
    )
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)

    loaded = load_torch_state_dict(path)
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        expected = tensor.detach().float().numpy() if tensor.dtype == torch.bfloat16 \
            else tensor.detach().numpy()
        actual = loaded[name].astype(np.float32) if tensor.dtype == torch.bfloat16 else loaded[name]
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
        assert np.array_equal(actual, expected), name


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_like_zip(path, payload):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


def test_refuses_pickled_code_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": _RunsShell(marker)}, protocol=2)
    assert b"system" in payload
    path = tmp_path / "pytorch_model.bin"
    _torch_like_zip(path, payload)

    with pytest.raises(UserInputError, match=r"pytorch_model.bin: .*refused global"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_refuses_builtins_even_when_harmless_looking(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    _torch_like_zip(path, pickle.dumps({"weight": bytearray(b"xy")}, protocol=4))
    with pytest.raises(UserInputError, match=r"refused global builtins.bytearray"):
        load_torch_state_dict(path)


def test_refuses_the_pre_zip_format(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"weight": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UserInputError, match=r"not a zip-format PyTorch file"):
        load_torch_state_dict(path)


def test_truncated_storage_is_bad_input(tmp_path):
    source = tmp_path / "good.bin"
    torch.save({"weight": torch.zeros(64)}, source)
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(source) as good, zipfile.ZipFile(path, "w") as bad:
        for info in good.infolist():
            data = good.read(info)
            bad.writestr(info.filename, data[:16] if info.filename.endswith("data/0") else data)
    with pytest.raises(UserInputError, match=r"storage 0 is truncated"):
        load_torch_state_dict(path)


def test_non_tensor_contents_are_bad_input(tmp_path):
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "epoch": 3}, buffer)
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UserInputError, match=r"does not hold a plain state dict of tensors"):
        load_torch_state_dict(path)
