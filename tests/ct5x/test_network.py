"""The Flax network against transformers' T5ForConditionalGeneration on random tiny configs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from t5_parity import PARITY_CONFIGS, hf_logits, random_tokens

from ct5x.checkpoints import load_checkpoint
from ct5x.layers import relative_position_bucket
from ct5x.models import EncoderDecoderModel
from ct5x.network import Transformer

LOGICAL_AXES = {"vocab", "embed", "joined_kv", "mlp", "heads", "relpos_buckets"}


@pytest.mark.parametrize("name", sorted(PARITY_CONFIGS))
def test_logits_match_transformers(make_hf_t5, name):
    directory = make_hf_t5(seed=3, **PARITY_CONFIGS[name])
    checkpoint = load_checkpoint(directory)
    torch_model = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
    rng = np.random.default_rng(7)
    encoder_tokens = random_tokens(rng, 3, 40)
    decoder_inputs = random_tokens(rng, 3, 12)
    decoder_inputs[:, 0] = 0
    ours = Transformer(checkpoint.config).apply(
        {"params": checkpoint.params}, encoder_tokens, decoder_inputs
    )
    reference = hf_logits(torch_model, encoder_tokens, decoder_inputs)
    assert np.abs(np.asarray(ours) - reference).max() < 1e-4


def test_bfloat16_activations_stay_close(make_hf_t5):
    checkpoint = load_checkpoint(make_hf_t5(seed=4))
    rng = np.random.default_rng(0)
    encoder_tokens, decoder_inputs = random_tokens(rng, 2, 16), random_tokens(rng, 2, 6)
    full = Transformer(checkpoint.config).apply(
        {"params": checkpoint.params}, encoder_tokens, decoder_inputs
    )
    half = Transformer(checkpoint.config.replace(dtype="bfloat16")).apply(
        {"params": checkpoint.params}, encoder_tokens, decoder_inputs
    )
    assert half.dtype == jnp.float32  # logits are always returned in float32
    scale = float(jnp.abs(full).max())
    assert float(jnp.abs(half - full).max()) < 0.1 * scale


def test_relative_position_bucket_matches_transformers():
    import torch

    relative = np.arange(-300, 300)
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20)):
            ours = relative_position_bucket(jnp.asarray(relative), bidirectional, buckets, distance)
            theirs = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
                torch.from_numpy(relative), bidirectional, buckets, distance
            )
            np.testing.assert_array_equal(np.asarray(ours), theirs.numpy())


@pytest.mark.parametrize("gin_config", ["t5_1_1", "t5_1_0"])
def test_every_parameter_has_logical_axes(gin_config):
    from ct5x.gin_utils import build_model

    model = build_model([f"models/{gin_config}/tiny.gin"])
    specs = model.params_logical_axes()
    shapes = jax.eval_shape(lambda: model.init_params(jax.random.PRNGKey(0)))
    flat_specs = jax.tree_util.tree_flatten_with_path(
        specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
    )[0]
    flat_shapes = dict(jax.tree_util.tree_flatten_with_path(shapes)[0])
    assert len(flat_specs) == len(flat_shapes)
    for path, spec in flat_specs:
        assert len(spec) == len(flat_shapes[path].shape), path
        assert set(spec) <= LOGICAL_AXES, path


@pytest.mark.parametrize(
    "gin_file, expected",
    [
        ("t5_1_1/small", 76_961_152),
        ("t5_1_1/base", 247_577_856),
        ("t5_1_1/large", 783_150_080),
    ],
)
def test_gin_sizes_have_the_published_parameter_counts(gin_file, expected):
    from ct5x.gin_utils import build_model

    model = build_model([f"models/{gin_file}.gin"])
    shapes = jax.eval_shape(lambda: model.init_params(jax.random.PRNGKey(0)))
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == expected


def test_t5x_tree_names():
    model = EncoderDecoderModel(load_tiny_config())
    params = model.init_params(jax.random.PRNGKey(0))
    assert params["token_embedder"]["embedding"].shape == (32128, 32)
    assert params["encoder"]["relpos_bias"]["rel_embedding"].shape == (4, 32)
    layer = params["decoder"]["layers_1"]
    assert set(layer) == {
        "pre_self_attention_layer_norm", "self_attention", "pre_cross_attention_layer_norm",
        "encoder_decoder_attention", "pre_mlp_layer_norm", "mlp",
    }
    assert set(layer["mlp"]) == {"wi_0", "wi_1", "wo"}
    assert layer["self_attention"]["query"]["kernel"].shape == (32, 32)
    assert "logits_dense" in params["decoder"]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nn.unbox(params)))


def load_tiny_config():
    from ct5x.gin_utils import build_model

    return build_model(["models/t5_1_1/tiny.gin"]).config
