"""Conversion end to end, and that a failed write leaves nothing behind."""

import shutil

import pytest
import torch
import transformers

import ct5x.checkpoints.hf as hf_module
import ct5x.checkpoints.t5x_legacy as legacy_module
from ct5x.checkpoints import convert_checkpoint, load_checkpoint, save_hf, save_t5x
from ct5x.checkpoints.orbax_io import write_orbax
from ct5x.checkpoints.t5x_legacy import write_legacy
from ct5x.checkpoints.tree import flatten
from ct5x.errors import UserInputError


@pytest.mark.parametrize("layout", ["orbax", "legacy"])
def test_convert_hf_to_t5x_and_back(hf_dirs, tmp_path, layout, assert_same_params):
    src = hf_dirs["t5_1_1"]
    convert_checkpoint(src, tmp_path / "t5x", to="t5x", t5x_layout=layout)
    convert_checkpoint(tmp_path / "t5x", tmp_path / "hf", to="hf")

    assert_same_params(load_checkpoint(tmp_path / "hf").params, load_checkpoint(src).params)
    original = transformers.T5ForConditionalGeneration.from_pretrained(src).state_dict()
    written = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf").state_dict()
    assert all(torch.equal(original[name], written[name]) for name in original)


def test_unknown_target_format(hf_dirs, tmp_path):
    with pytest.raises(UserInputError, match=r"to='onnx': expected 'hf' or 't5x'"):
        convert_checkpoint(hf_dirs["t5_1_0"], tmp_path / "out", to="onnx")
    assert not (tmp_path / "out").exists()


def test_unknown_t5x_layout(hf_dirs, tmp_path):
    with pytest.raises(UserInputError, match=r"layout='zip'"):
        save_t5x(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "out", layout="zip")


def test_refuses_to_overwrite(hf_dirs, tmp_path):
    dst = tmp_path / "taken"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(UserInputError, match=r"taken: already exists and is not empty"):
        save_hf(load_checkpoint(hf_dirs["t5_1_0"]), dst)
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]


def test_save_hf_failure_midway_leaves_no_destination(hf_dirs, tmp_path, monkeypatch):
    def write_half_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(hf_module, "save_file", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_hf(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_save_t5x_failure_midway_leaves_no_destination(hf_dirs, tmp_path, monkeypatch):
    original = legacy_module.serialization.msgpack_serialize

    def fail_after_arrays(*args, **kwargs):
        original(*args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(legacy_module.serialization, "msgpack_serialize", fail_after_arrays)
    with pytest.raises(OSError, match="disk full"):
        save_t5x(load_checkpoint(hf_dirs["t5_1_0"]), tmp_path / "out", layout="legacy")
    assert list(tmp_path.iterdir()) == []


def test_new_step_in_existing_model_directory(hf_dirs, tmp_path, monkeypatch):
    checkpoint = load_checkpoint(hf_dirs["t5_1_0"])
    save_t5x(checkpoint, tmp_path, step=1)
    save_t5x(checkpoint, tmp_path, step=2)
    assert load_checkpoint(tmp_path).step == 2
    with pytest.raises(UserInputError, match=r"checkpoint_2: already exists"):
        save_t5x(checkpoint, tmp_path, step=2)

    monkeypatch.setattr(legacy_module, "_chunks", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_t5x(checkpoint, tmp_path, step=3, layout="legacy")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_1", "checkpoint_2", "config.json", "spiece.model"]


def test_params_that_disagree_with_config_are_not_saved(hf_dirs, tmp_path):
    checkpoint = load_checkpoint(hf_dirs["t5_1_0"])
    broken = type(checkpoint)(
        config=checkpoint.config.replace(mlp_dim=64), params=checkpoint.params,
        vocabulary_path=checkpoint.vocabulary_path,
    )
    with pytest.raises(UserInputError, match=r"parameters to save: .*mlp/wi/kernel has shape"):
        save_hf(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_vocabulary_and_tokenizer_settings_travel(hf_dirs, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(hf_dirs["t5_1_0"], src)
    (src / "tokenizer_config.json").write_text('{"extra_ids": 0}')
    convert_checkpoint(src, tmp_path / "t5x", to="t5x")
    convert_checkpoint(tmp_path / "t5x", tmp_path / "hf", to="hf")
    for name in ("spiece.model", "tokenizer_config.json"):
        assert (tmp_path / "t5x" / name).read_bytes() == (src / name).read_bytes()
        assert (tmp_path / "hf" / name).read_bytes() == (src / name).read_bytes()


@pytest.mark.parametrize("layout", ["orbax", "orbax_zarr", "legacy"])
def test_t5x_checkpoint_without_logits_dense_for_an_untied_config(hf_dirs, tmp_path, layout):
    """A config.json that unties the logits needs decoder/logits_dense: never a silent tie."""
    src = hf_dirs["t5_1_1"]
    convert_checkpoint(src, tmp_path / "model", to="t5x", t5x_layout=layout)
    flat = flatten(load_checkpoint(src).params)
    del flat["decoder/logits_dense/kernel"]
    step_dir = tmp_path / "model" / "checkpoint_0"
    shutil.rmtree(step_dir)
    step_dir.mkdir()
    if layout == "legacy":
        write_legacy(step_dir, flat, 0)
    else:
        write_orbax(step_dir, flat, 0, ocdbt=layout == "orbax")
    with pytest.raises(UserInputError, match=r"checkpoint_0: parameter decoder/logits_dense/kernel"
                                             r" is missing, but .*config.json describes untied"):
        load_checkpoint(tmp_path / "model")
