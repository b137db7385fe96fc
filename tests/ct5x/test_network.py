"""The Flax network against transformers' T5ForConditionalGeneration on random tiny configs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from t5_parity import PARITY_CONFIGS, hf_logits, random_tokens

from ct5x.checkpoints import load_checkpoint
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


def test_bfloat16_logits_are_float32_and_close(make_hf_t5):
    checkpoint = load_checkpoint(make_hf_t5(seed=8))
    rng = np.random.default_rng(4)
    encoder_tokens, decoder_inputs = random_tokens(rng, 2, 16), random_tokens(rng, 2, 6)
    half = Transformer(checkpoint.config.replace(dtype="bfloat16"))
    jaxpr = jax.make_jaxpr(half.apply)(
        {"params": checkpoint.params}, encoder_tokens, decoder_inputs
    )
    vocab = checkpoint.config.vocab_size
    logit_dots = [
        eqn for eqn in _all_equations(jaxpr.jaxpr)
        if eqn.primitive.name == "dot_general" and eqn.outvars[0].aval.shape[-1] == vocab
    ]
    assert logit_dots
    assert all(v.aval.dtype == jnp.float32 for eqn in logit_dots for v in eqn.invars)
    full = Transformer(checkpoint.config).apply(
        {"params": checkpoint.params}, encoder_tokens, decoder_inputs
    )
    half_logits = half.apply({"params": checkpoint.params}, encoder_tokens, decoder_inputs)
    assert half_logits.dtype == jnp.float32
    # bfloat16 keeps 8 significant bits: per-layer rounding of ~0.4% compounds over 5 layers.
    assert float(jnp.abs(half_logits - full).max()) < 0.05 * float(jnp.abs(full).max())


def _all_equations(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", None)
            if inner is not None:
                yield from _all_equations(getattr(inner, "jaxpr", inner))


@pytest.mark.parametrize("keys_transposed", [False, True])
def test_decode_step_with_beams_reads_one_row_of_cross_attention_per_example(
    make_hf_t5, keys_transposed
):
    """Beams attend to their example's keys and values without copies, in either key layout:
    same logits as per-beam copies (T5X's and transformers' way: each row repeated K times)."""
    checkpoint = load_checkpoint(make_hf_t5(seed=9))
    module = Transformer(checkpoint.config)
    variables = {"params": checkpoint.params}
    encoder_tokens = random_tokens(np.random.default_rng(5), 3, 20)
    encoder_tokens[1, 12:] = 0  # padding differs between examples
    encoded = module.apply(variables, encoder_tokens, method=Transformer.encode)
    cross_kv = module.apply(variables, encoded, method=Transformer.precompute_cross_attention)
    shared_kv = module.apply(
        variables, encoded, keys_transposed, method=Transformer.precompute_cross_attention
    )
    beams = 4
    cache = module.apply(variables, 3 * beams, 6, method=Transformer.init_cache)
    tokens = jnp.asarray(random_tokens(np.random.default_rng(6), 1, 3 * beams)[0])

    def step(kv, mask):
        return module.apply(
            variables, tokens, jnp.int32(0), cache, kv, mask, method=Transformer.decode_step
        )

    shared, _ = step(shared_kv, encoder_tokens > 0)
    per_beam_copies = jax.tree.map(
        lambda x: jnp.repeat(x, beams, axis=0), (cross_kv, encoder_tokens > 0)
    )
    copied, _ = step(*per_beam_copies)
    assert shared.shape == (3 * beams, checkpoint.config.vocab_size)
    np.testing.assert_allclose(np.asarray(shared), np.asarray(copied), rtol=1e-5, atol=1e-5)
