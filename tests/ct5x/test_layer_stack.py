"""A stack's layers run rematerialised or as one scan (ct5x.layer_stack): the same loss, gradients,
parameter tree and decoding as the plain stack."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from t5_parity import random_tokens

from ct5x.checkpoints import load_checkpoint
from ct5x.models import EncoderDecoderModel


def _tiny_batch(rng: np.random.Generator) -> dict[str, np.ndarray]:
    decoder_inputs = random_tokens(rng, 3, 10)
    decoder_inputs[:, 0] = 0
    return {
        "encoder_input_tokens": random_tokens(rng, 3, 24),
        "decoder_input_tokens": decoder_inputs,
        "decoder_target_tokens": random_tokens(rng, 3, 10),
    }


def _loss_and_grads(config, params, batch, *dropout_rngs):
    """Loss and gradients for each dropout key, from one compiled function."""
    model = EncoderDecoderModel(config)
    grad_fn = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))
    results = [grad_fn(params, batch, rng) for rng in dropout_rngs]
    return [(float(loss), grads) for (loss, _), grads in results]


def test_remat_and_scan_give_the_same_loss_and_gradients(make_hf_t5):
    checkpoint = load_checkpoint(make_hf_t5(seed=5, num_decoder_layers=2))
    config = checkpoint.config.replace(dropout_rate=0.1)
    batch = _tiny_batch(np.random.default_rng(1))
    key = jax.random.PRNGKey(3)
    (loss, grads), (other_key_loss, _) = _loss_and_grads(
        config, checkpoint.params, batch, key, jax.random.PRNGKey(4)
    )
    # Dropout is on: every variant must draw the same masks.
    assert abs(loss - other_key_loss) > 1e-3
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads))
    for policy, scan in (("minimal", False), ("none", True), ("full", True)):
        [(other_loss, other_grads)] = _loss_and_grads(
            config.replace(remat_policy=policy, scan_layers=scan), checkpoint.params, batch, key
        )
        assert abs(other_loss - loss) <= 1e-5 * max(1.0, abs(loss)), (policy, scan)
        assert jax.tree.structure(other_grads) == jax.tree.structure(grads)
        worst = max(
            float(jnp.abs(a - b).max())
            for a, b in zip(jax.tree.leaves(other_grads), jax.tree.leaves(grads))
        )
        assert worst <= 1e-5 * max(1.0, scale), (policy, scan, worst, scale)


def test_scanned_layers_keep_the_parameter_tree_and_cached_decoding(make_hf_t5):
    from ct5x.models import DecodingOptions

    checkpoint = load_checkpoint(make_hf_t5(seed=6))
    plain = EncoderDecoderModel(checkpoint.config)
    scanned = EncoderDecoderModel(checkpoint.config.replace(scan_layers=True, remat_policy="full"))
    key = jax.random.PRNGKey(0)
    plain_shapes = jax.eval_shape(plain.init_params, key)
    assert jax.tree.map(lambda x: x.shape, jax.eval_shape(scanned.init_params, key)) == (
        jax.tree.map(lambda x: x.shape, plain_shapes)
    )
    batch = {"encoder_input_tokens": random_tokens(np.random.default_rng(2), 3, 20)}
    options = DecodingOptions(num_beams=2, max_decode_length=8)
    def predict(model):
        jitted = jax.jit(model.predict_batch, static_argnames="options")
        return np.asarray(jitted(checkpoint.params, batch, options=options))

    np.testing.assert_array_equal(predict(scanned), predict(plain))


def test_a_scanned_deep_stack_compiles_as_one_loop(make_hf_t5):
    """Reports compile times of an 8 + 8 layer tiny model; asserts only that the scan is a loop."""
    import time

    config = load_checkpoint(make_hf_t5(seed=7)).config.replace(
        num_encoder_layers=8, num_decoder_layers=8
    )
    batch = _tiny_batch(np.random.default_rng(3))
    seconds, texts = {}, {}
    for scan in (False, True):
        model = EncoderDecoderModel(config.replace(scan_layers=scan))
        params = jax.eval_shape(model.init_params, jax.random.PRNGKey(0))
        start = time.perf_counter()
        loss = functools.partial(_deterministic_loss, model)
        lowered = jax.jit(jax.grad(loss)).lower(params, batch)
        texts[scan] = lowered.as_text()
        lowered.compile()
        seconds[scan] = time.perf_counter() - start
    print(f"compile 8+8 layers: unscanned {seconds[False]:.2f} s, scanned {seconds[True]:.2f} s")
    assert "while" in texts[True] and "while" not in texts[False]


def _deterministic_loss(model, params, batch):
    return model.loss_fn(params, batch, None)[0]
