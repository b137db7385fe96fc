"""T5X's pre-Orbax layout: msgpack `checkpoint` file plus zarr arrays read through TensorStore."""

import json

import ml_dtypes
import numpy as np
import pytest
import tensorstore as ts
from flax import serialization

from ct5x.checkpoints import load_checkpoint, save_t5x
from ct5x.checkpoints.t5x_legacy import read_legacy
from ct5x.errors import UserInputError


def test_hf_to_legacy_is_bit_exact(hf_dir, tmp_path, assert_same_params):
    direct = load_checkpoint(hf_dir)
    save_t5x(direct, tmp_path / "model", step=1200, layout="legacy")

    step_dir = tmp_path / "model" / "checkpoint_1200"
    assert (step_dir / "checkpoint").is_file()
    assert (step_dir / "target.encoder.layers_0.attention.key.kernel" / ".zarray").is_file()
    loaded = load_checkpoint(tmp_path / "model")
    assert_same_params(loaded.params, direct.params)
    assert loaded.config == direct.config and loaded.step == 1200
    assert loaded.vocabulary_path == str(tmp_path / "model" / "spiece.model")


def test_layout_matches_t5x(hf_dirs, tmp_path):
    save_t5x(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "model", step=3, layout="legacy")
    step_dir = tmp_path / "model" / "checkpoint_3"
    contents = serialization.msgpack_restore((step_dir / "checkpoint").read_bytes())
    assert contents["version"] == 3 and int(contents["optimizer"]["state"]["step"]) == 3
    spec = contents["optimizer"]["target"]["decoder"]["layers_1"]["self_attention"]["out"]["kernel"]
    assert spec["driver"] == "zarr"
    assert spec["kvstore"] == {"driver": "file",
                               "path": "target.decoder.layers_1.self_attention.out.kernel"}
    assert spec["metadata"]["compressor"] == {"id": "gzip"}
    zarray = json.loads((step_dir / spec["kvstore"]["path"] / ".zarray").read_text())
    assert zarray["shape"] == [8, 16] and zarray["dtype"] == "<f4"


def test_older_top_level_state_inline_and_bfloat16_arrays(hf_dirs, tmp_path):
    """Files without the "optimizer" wrapper, arrays kept inline, bfloat16 zarr arrays and
    absolute-path-free old specs all occur in T5X checkpoints in the wild."""
    direct = load_checkpoint(hf_dirs["t5_1_0"])
    save_t5x(direct, tmp_path / "model", step=5, layout="legacy")
    step_dir = tmp_path / "model" / "checkpoint_5"
    contents = serialization.msgpack_restore((step_dir / "checkpoint").read_bytes())
    target = contents["optimizer"]["target"]
    embedding = direct.params["token_embedder"]["embedding"]
    target["token_embedder"]["embedding"] = embedding  # inline in the msgpack
    bf16_dir = "target.encoder.encoder_norm.scale_bf16"
    scale = direct.params["encoder"]["encoder_norm"]["scale"].astype(ml_dtypes.bfloat16)
    store = ts.open({"driver": "zarr", "kvstore": {"driver": "file",
                                                   "path": str(step_dir / bf16_dir)},
                     "metadata": {"shape": [16], "chunks": [16], "dtype": "bfloat16"}},
                    create=True).result()
    store.write(scale).result()
    target["encoder"]["encoder_norm"]["scale"] = {"driver": "zarr", "path": bf16_dir,
                                                  "kvstore": {"driver": "file"}}
    (step_dir / "checkpoint").write_bytes(serialization.msgpack_serialize(
        {"target": target, "state": {"step": np.int32(5)}}))

    flat, step = read_legacy(step_dir)
    assert step == 5
    assert np.array_equal(flat["token_embedder/embedding"], embedding)
    assert flat["encoder/encoder_norm/scale"].dtype == ml_dtypes.bfloat16
    loaded = load_checkpoint(step_dir)
    assert loaded.params["encoder"]["encoder_norm"]["scale"].dtype == np.float32
    assert np.array_equal(loaded.params["encoder"]["encoder_norm"]["scale"],
                          scale.astype(np.float32))


def test_corrupt_msgpack(hf_dirs, tmp_path):
    save_t5x(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "model", step=1, layout="legacy")
    (tmp_path / "model" / "checkpoint_1" / "checkpoint").write_bytes(b"\xc1garbage")
    with pytest.raises(UserInputError, match=r"checkpoint_1/checkpoint: not a readable T5X"):
        load_checkpoint(tmp_path / "model")


def test_corrupt_zarr_chunk(hf_dirs, tmp_path):
    save_t5x(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "model", step=1, layout="legacy")
    array_dir = tmp_path / "model" / "checkpoint_1" / "target.decoder.layers_0.mlp.wo.kernel"
    (array_dir / "0.0").write_bytes(b"not gzip data")
    with pytest.raises(UserInputError,
                       match=r"target.decoder.layers_0.mlp.wo.kernel: cannot read array") as caught:
        load_checkpoint(tmp_path / "model")
    assert "\n" not in str(caught.value)


def test_missing_zarr_array(hf_dirs, tmp_path):
    import shutil

    save_t5x(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "model", step=1, layout="legacy")
    step_dir = tmp_path / "model" / "checkpoint_1"
    shutil.rmtree(step_dir / "target.encoder.layers_1.attention.query.kernel")
    with pytest.raises(UserInputError, match=r"layers_1.attention.query.kernel: cannot read array"):
        load_checkpoint(tmp_path / "model")
