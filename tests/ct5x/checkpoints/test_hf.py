"""Hugging Face directories: every published weights form reads to the same T5X params, and
what ct5x writes loads back into transformers bit-exactly."""

import json

import numpy as np
import pytest
import torch
import transformers
from flax import serialization
from safetensors.numpy import load_file, save_file

from ct5x.checkpoints import load_checkpoint, save_hf
from ct5x.errors import UserInputError


def _from_pretrained(directory):
    model, info = transformers.T5ForConditionalGeneration.from_pretrained(
        directory, output_loading_info=True
    )
    return model.eval(), info


def _assert_hf_round_trip(src, dst):
    original, _ = _from_pretrained(src)
    save_hf(load_checkpoint(src), dst)

    written, info = _from_pretrained(dst)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"] and not info["error_msgs"]
    expected, actual = original.state_dict(), written.state_dict()
    assert sorted(expected) == sorted(actual)
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
    assert written.config.scale_decoder_outputs == original.config.scale_decoder_outputs
    for field in ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                  "feed_forward_proj", "vocab_size", "decoder_start_token_id", "eos_token_id"):
        assert getattr(written.config, field) == getattr(original.config, field), field
    assert (dst / "spiece.model").read_bytes() == (src / "spiece.model").read_bytes()
    assert json.loads((dst / "generation_config.json").read_text()) == {
        "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}


def test_hf_round_trip_is_bit_exact(hf_dir, tmp_path):
    _assert_hf_round_trip(hf_dir, tmp_path / "out")


def test_params_take_t5x_names_and_orientation(hf_dirs):
    tensors = load_file(hf_dirs["t5_1_1"] / "model.safetensors")
    checkpoint = load_checkpoint(hf_dirs["t5_1_1"])
    params, config = checkpoint.params, checkpoint.config
    assert (config.num_heads, config.head_dim, config.emb_dim) == (3, 8, 16)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (2, 3)
    assert config.mlp_activations == ("gelu", "linear") and not config.logits_via_embedding
    assert np.array_equal(params["token_embedder"]["embedding"], tensors["shared.weight"])
    assert np.array_equal(params["encoder"]["relpos_bias"]["rel_embedding"], tensors[
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].T)
    cross_attention = params["decoder"]["layers_2"]["encoder_decoder_attention"]
    assert np.array_equal(cross_attention["out"]["kernel"],
                          tensors["decoder.block.2.layer.1.EncDecAttention.o.weight"].T)
    assert np.array_equal(params["decoder"]["layers_1"]["mlp"]["wi_1"]["kernel"],
                          tensors["decoder.block.1.layer.2.DenseReluDense.wi_1.weight"].T)
    assert np.array_equal(params["decoder"]["logits_dense"]["kernel"], tensors["lm_head.weight"].T)


def test_unscaled_logits_without_lm_head_use_the_embedding(hf_dirs, tmp_path,
                                                          copy_without_weights):
    # transformers 5 may save an unscaled (t5_1_1-style) model with no lm_head: it then ties
    # lm_head to the embedding, so the logits kernel must be the embedding itself.
    directory = copy_without_weights(hf_dirs["odd"], tmp_path / "no_lm_head")
    tensors = load_file(hf_dirs["odd"] / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    assert json.loads((directory / "config.json").read_text())["scale_decoder_outputs"] is False

    checkpoint = load_checkpoint(directory)
    assert not checkpoint.config.logits_via_embedding
    assert np.array_equal(checkpoint.params["decoder"]["logits_dense"]["kernel"],
                          tensors["shared.weight"].T)
    _assert_hf_round_trip(directory, tmp_path / "out")


def test_tied_family_has_no_logits_dense(hf_dirs):
    tied = load_checkpoint(hf_dirs["t5_1_0"])
    assert tied.config.logits_via_embedding and "logits_dense" not in tied.params["decoder"]
    assert tied.config.mlp_activations == ("relu",)
    assert "wi" in tied.params["encoder"]["layers_1"]["mlp"]


def test_sharded_safetensors_read_like_one_file(hf_dirs, tmp_path, assert_same_params):
    model, _ = _from_pretrained(hf_dirs["t5_1_1"])
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    (tmp_path / "config.json").write_text((hf_dirs["t5_1_1"] / "config.json").read_text())
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    assert_same_params(load_checkpoint(tmp_path).params,
                       load_checkpoint(hf_dirs["t5_1_1"]).params)


def _flax_tree(state_dict):
    """The parameter tree transformers' former Flax T5 saved: PyTorch module names split on
    ".", Dense kernels [in, out], Embed tables under "embedding", layer norms under "weight"."""
    tree = {}
    for name, tensor in state_dict.items():
        if name.endswith("embed_tokens.weight"):
            continue
        array = tensor.numpy()
        *module, _ = name.split(".")
        if module[-1] in ("shared", "relative_attention_bias"):
            leaf = "embedding"
        elif "layer_norm" in module[-1]:
            leaf = "weight"
        else:
            leaf, array = "kernel", array.T
        node = tree
        for part in module:
            node = node.setdefault(part, {})
        node[leaf] = np.ascontiguousarray(array)
    return tree


@pytest.mark.parametrize("family", ["t5_1_1", "t5_1_0"])
def test_flax_msgpack_matches_safetensors(family, hf_dirs, tmp_path, assert_same_params,
                                          copy_without_weights):
    model, _ = _from_pretrained(hf_dirs[family])
    state = model.state_dict()
    if model.config.scale_decoder_outputs:  # tied: Flax T5 stored no lm_head
        state.pop("lm_head.weight")
    directory = copy_without_weights(hf_dirs[family], tmp_path / "flax")
    (directory / "flax_model.msgpack").write_bytes(serialization.to_bytes(_flax_tree(state)))
    assert_same_params(load_checkpoint(directory).params, load_checkpoint(hf_dirs[family]).params)


def test_pytorch_bin_matches_safetensors(hf_dirs, tmp_path, assert_same_params,
                                         copy_without_weights):
    model, _ = _from_pretrained(hf_dirs["t5_1_1"])
    directory = copy_without_weights(hf_dirs["t5_1_1"], tmp_path / "bin")
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    assert_same_params(load_checkpoint(directory).params,
                       load_checkpoint(hf_dirs["t5_1_1"]).params)


def test_bfloat16_safetensors_become_float32(hf_dirs, tmp_path, copy_without_weights):
    model, _ = _from_pretrained(hf_dirs["t5_1_0"])
    directory = copy_without_weights(hf_dirs["t5_1_0"], tmp_path / "bf16")
    model.to(torch.bfloat16).save_pretrained(directory)
    params = load_checkpoint(directory).params
    expected = model.shared.weight.detach().float().numpy()
    assert params["token_embedder"]["embedding"].dtype == np.float32
    assert np.array_equal(params["token_embedder"]["embedding"], expected)


def _one_line_error(path, match):
    with pytest.raises(UserInputError, match=match) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def _broken_copy(hf_dirs, tmp_path, family="t5_1_1"):
    directory = tmp_path / "broken"
    directory.mkdir()
    for item in hf_dirs[family].iterdir():
        (directory / item.name).write_bytes(item.read_bytes())
    return directory


def test_missing_directory(tmp_path):
    _one_line_error(tmp_path / "absent", "absent: no such file or directory")


def test_missing_config(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    (directory / "config.json").unlink()
    _one_line_error(directory, r"config.json: missing")


def test_invalid_config_json(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    (directory / "config.json").write_text('{"model_type": "t5",\n  oops}')
    _one_line_error(directory, r"config.json:2: not valid JSON")


def test_non_t5_config(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config.update(model_type="bert", architectures=["BertModel"])
    (directory / "config.json").write_text(json.dumps(config))
    _one_line_error(directory, r"config.json: model_type='bert' is not a T5 model")


def test_no_weights_file(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    (directory / "model.safetensors").unlink()
    _one_line_error(directory, r"no weights file")


def test_corrupt_safetensors(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[: len(data) // 2])
    _one_line_error(directory, r"model.safetensors: not a readable safetensors file")


def test_corrupt_flax_msgpack(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    (directory / "model.safetensors").unlink()
    (directory / "flax_model.msgpack").write_bytes(b"\xc1\xc1 not msgpack")
    _one_line_error(directory, r"flax_model.msgpack: not a readable Flax msgpack file")


def test_missing_tensor(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    tensors = load_file(directory / "model.safetensors")
    del tensors["decoder.block.1.layer.1.EncDecAttention.k.weight"]
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    _one_line_error(directory,
                    r"tensor decoder.block.1.layer.1.EncDecAttention.k.weight is missing")


def test_shape_disagrees_with_config(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["d_ff"] = 28
    (directory / "config.json").write_text(json.dumps(config))
    _one_line_error(directory, r"model.safetensors: encoder.block.0.layer.1.DenseReluDense.wi_0"
                               r".weight has shape \(24, 16\), the config implies \(28, 16\)")


def test_unexpected_tensor(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    tensors = load_file(directory / "model.safetensors")
    tensors["encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"] = (
        np.zeros((32, 3), np.float32))
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    _one_line_error(directory, r"unexpected tensor encoder.block.1.layer.0.SelfAttention")


def test_tied_config_with_a_different_lm_head(hf_dirs, tmp_path):
    directory = _broken_copy(hf_dirs, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (directory / "config.json").write_text(json.dumps(config))
    _one_line_error(directory, r"lm_head.weight differs from shared.weight")


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin",
                                          "flax_model.msgpack"])
def test_untied_config_without_lm_head_is_an_error(hf_dirs, tmp_path, copy_without_weights,
                                                   weights_file):
    """config.json says tie_word_embeddings=false: a missing lm_head is never filled with the
    embedding, whatever form the weights take."""
    directory = copy_without_weights(hf_dirs["t5_1_1"], tmp_path / "untied")
    assert json.loads((directory / "config.json").read_text())["tie_word_embeddings"] is False
    model, _ = _from_pretrained(hf_dirs["t5_1_1"])
    state = {name: tensor for name, tensor in model.state_dict().items()
             if name != "lm_head.weight"}
    if weights_file == "model.safetensors":
        save_file({k: v.numpy() for k, v in state.items()}, directory / weights_file,
                  metadata={"format": "pt"})
    elif weights_file == "pytorch_model.bin":
        torch.save(state, directory / weights_file)
    else:
        (directory / weights_file).write_bytes(serialization.to_bytes(_flax_tree(state)))
    message = _one_line_error(directory, r"tensor lm_head.weight is missing, but .*config.json "
                                         r"says tie_word_embeddings=false")
    assert weights_file in message


def test_missing_shard(hf_dirs, tmp_path):
    model, _ = _from_pretrained(hf_dirs["t5_1_1"])
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    next(iter(sorted(tmp_path.glob("model-*.safetensors")))).unlink()
    _one_line_error(tmp_path, r"model-0+1-of-\d+.safetensors: shard named in "
                              r"model.safetensors.index.json is missing")
