"""Loss, scoring and decoding of `EncoderDecoderModel` against transformers."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from t5_parity import PARITY_CONFIGS, hf_generate, random_tokens

from ct5x import decoding
from ct5x.checkpoints import load_checkpoint
from ct5x.models import DecodingOptions, EncoderDecoderModel, LossOptions


@pytest.fixture(scope="module", params=sorted(PARITY_CONFIGS))
def pair(request, make_hf_t5):
    """(ct5x model, params, transformers model) holding the same random weights."""
    directory = make_hf_t5(seed=11, **PARITY_CONFIGS[request.param])
    checkpoint = load_checkpoint(directory)
    torch_model = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
    return EncoderDecoderModel(checkpoint.config), checkpoint.params, torch_model


@functools.cache
def jitted(model, method: str):
    """The model's functions are plain; callers jit them (options static), once per model."""
    static = ("options",) if method.startswith("predict") else ()
    return jax.jit(getattr(model, method), static_argnames=static)


def predict(model, params, encoder_tokens, options):
    return np.asarray(
        jitted(model, "predict_batch")(params, {"encoder_input_tokens": encoder_tokens}, options)
    )


def with_frequent_eos(params, factor=3.0):
    """The same weights with EOS's output vector scaled, so that rows end at different steps
    (the random models rarely emit EOS on their own)."""
    params = jax.tree.map(np.array, params)
    if "logits_dense" in params["decoder"]:
        params["decoder"]["logits_dense"]["kernel"][:, 1] *= factor
    else:
        params["token_embedder"]["embedding"][1] *= factor
    return params


def teacher_forced_batch(rng, rows=4):
    encoder_tokens = random_tokens(rng, rows, 20)
    targets = random_tokens(rng, rows, 9)
    lengths = (targets > 0).sum(1)
    targets[np.arange(rows), lengths - 1] = 1  # EOS ends every target
    decoder_inputs = np.concatenate([np.zeros((rows, 1), np.int32), targets[:, :-1]], 1)
    return {
        "encoder_input_tokens": encoder_tokens,
        "decoder_input_tokens": decoder_inputs,
        "decoder_target_tokens": targets,
        "decoder_loss_weights": (targets > 0).astype(np.float32),
    }


def hf_token_log_probs(torch_model, batch):
    with torch.no_grad():
        logits = torch_model(
            input_ids=torch.from_numpy(batch["encoder_input_tokens"]).long(),
            attention_mask=torch.from_numpy(batch["encoder_input_tokens"] > 0).long(),
            decoder_input_ids=torch.from_numpy(batch["decoder_input_tokens"]).long(),
        ).logits
    log_probs = torch.log_softmax(logits.double(), -1)
    targets = torch.from_numpy(batch["decoder_target_tokens"]).long()
    return log_probs.gather(-1, targets[..., None])[..., 0].numpy()


def test_score_matches_transformers_log_likelihood(pair):
    model, params, torch_model = pair
    batch = teacher_forced_batch(np.random.default_rng(0))
    expected = (hf_token_log_probs(torch_model, batch) * batch["decoder_loss_weights"]).sum(1)
    np.testing.assert_allclose(np.asarray(jitted(model, "score_batch")(params, batch)), expected,
                               atol=1e-4)


def test_per_token_loss_matches_transformers_loss(pair):
    model, params, torch_model = pair
    batch = teacher_forced_batch(np.random.default_rng(1))
    labels = np.where(batch["decoder_target_tokens"] > 0, batch["decoder_target_tokens"], -100)
    with torch.no_grad():
        expected = torch_model(
            input_ids=torch.from_numpy(batch["encoder_input_tokens"]).long(),
            attention_mask=torch.from_numpy(batch["encoder_input_tokens"] > 0).long(),
            decoder_input_ids=torch.from_numpy(batch["decoder_input_tokens"]).long(),
            labels=torch.from_numpy(labels).long(),
        ).loss.item()
    mean_model = EncoderDecoderModel(
        model.config, LossOptions(z_loss=0.0, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    )
    loss, _ = mean_model.loss_fn(params, batch, None)
    assert abs(float(loss) - expected) < 1e-4
    # T5X's default: a sum over tokens, plus z-loss.
    summed, parts = model.loss_fn(params, batch, None)
    tokens = batch["decoder_loss_weights"].sum()
    assert float(parts["z_loss"]) > 0
    assert abs(float(summed) - float(parts["z_loss"]) - expected * tokens) < 1e-3


def test_dropout_is_seeded_and_only_in_training(pair):
    model, params, _ = pair
    dropout_model = EncoderDecoderModel(model.config.replace(dropout_rate=0.3))
    batch = teacher_forced_batch(np.random.default_rng(2))
    first = dropout_model.loss_fn(params, batch, jax.random.PRNGKey(0))[0]
    again = dropout_model.loss_fn(params, batch, jax.random.PRNGKey(0))[0]
    other = dropout_model.loss_fn(params, batch, jax.random.PRNGKey(1))[0]
    plain = dropout_model.loss_fn(params, batch, None)[0]
    assert float(first) == float(again)
    assert float(first) != float(other)
    assert float(plain) == float(model.loss_fn(params, batch, None)[0])


@pytest.mark.parametrize("num_beams, length_penalty", [(1, None), (4, None), (3, 0.6)])
def test_decoding_matches_generate(pair, num_beams, length_penalty):
    model, params, torch_model = pair
    encoder_tokens = random_tokens(np.random.default_rng(3), 5, 15)
    options = DecodingOptions(num_beams=num_beams, max_decode_length=10, alpha=length_penalty)
    ours = predict(model, params, encoder_tokens, options)
    extra = {} if length_penalty is None else {"length_penalty": length_penalty}
    expected = hf_generate(torch_model, encoder_tokens, 10, num_beams=num_beams, **extra)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("style", ["hf", "t5x"])
def test_predictions_do_not_depend_on_batch_neighbours(pair, style):
    model, params, _ = pair
    encoder_tokens = random_tokens(np.random.default_rng(4), 6, 12)
    options = DecodingOptions(num_beams=3, max_decode_length=8, length_penalty_style=style)
    together = predict(model, params, encoder_tokens, options)
    for rows in (slice(0, 2), slice(2, 4), slice(4, 6)):
        apart = predict(model, params, encoder_tokens[rows], options)
        np.testing.assert_array_equal(apart, together[rows])


def test_greedy_output_stops_at_eos(pair):
    model, params, _ = pair
    encoder_tokens = jnp.asarray(random_tokens(np.random.default_rng(5), 8, 10))
    options = DecodingOptions(max_decode_length=12)
    tokens = predict(model, with_frequent_eos(params), encoder_tokens, options)
    ends = [np.flatnonzero(row == 1) for row in tokens]
    assert any(eos.size for eos in ends), "no row emitted EOS: the check below never ran"
    for row, eos in zip(tokens, ends):
        if eos.size:
            assert (row[eos[0] + 1 :] == 0).all()


def test_loss_on_padding_is_transformers_loss_on_labels_padded_with_the_pad_id(make_hf_t5):
    """The study's FLAN Stigma labels were padded with the pad id (0), not -100: transformers
    derives the decoder inputs from them and averages its loss over every position."""
    directory = make_hf_t5(seed=11, **PARITY_CONFIGS["t5_1_1"])
    checkpoint = load_checkpoint(directory)
    model, params = EncoderDecoderModel(checkpoint.config), checkpoint.params
    torch_model = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
    batch = teacher_forced_batch(np.random.default_rng(2))
    assert (batch["decoder_target_tokens"] == 0).any()
    with torch.no_grad():
        expected = torch_model(
            input_ids=torch.from_numpy(batch["encoder_input_tokens"]).long(),
            attention_mask=torch.from_numpy(batch["encoder_input_tokens"] > 0).long(),
            labels=torch.from_numpy(batch["decoder_target_tokens"]).long(),
        ).loss.item()
    options = LossOptions(z_loss=0.0, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    padded = EncoderDecoderModel(model.config, dataclasses.replace(options, loss_on_padding=True))
    loss, parts = padded.loss_fn(params, batch, None)
    assert abs(float(loss) - expected) < 1e-4
    assert float(parts["weight_sum"]) == batch["decoder_target_tokens"].size
    real_only, _ = EncoderDecoderModel(model.config, options).loss_fn(params, batch, None)
    assert abs(float(real_only) - expected) > 1e-2


@pytest.fixture(scope="module")
def untied_model(make_hf_t5):
    """One parity model (t5_1_1 family) for the tests that need no sweep over families."""
    checkpoint = load_checkpoint(make_hf_t5(seed=11, **PARITY_CONFIGS["t5_1_1"]))
    return EncoderDecoderModel(checkpoint.config), checkpoint.params


@pytest.mark.parametrize("num_beams, style", [(1, "hf"), (3, "hf"), (3, "t5x")])
def test_predict_batch_with_aux_scores_the_returned_sequences(untied_model, num_beams, style):
    """Greedy: the summed log-probability; beams: that sum under the style's length penalty
    (T5X returns a never-ended beam's raw sum). Checked by teacher-forcing the output."""
    model, params = untied_model
    params = with_frequent_eos(params)
    encoder_tokens = random_tokens(np.random.default_rng(6), 6, 12)
    options = DecodingOptions(num_beams=num_beams, max_decode_length=8, length_penalty_style=style)
    tokens, aux = jitted(model, "predict_batch_with_aux")(
        params, {"encoder_input_tokens": encoder_tokens}, options)
    tokens, scores = np.asarray(tokens), np.asarray(aux["scores"])
    assert scores.shape == (6,) and scores.dtype == np.float32
    ended = (tokens == 1).any(1)
    assert ended.any()
    lengths = np.where(ended, np.argmax(tokens == 1, 1) + 1, tokens.shape[1])
    batch = {
        "encoder_input_tokens": encoder_tokens,
        "decoder_input_tokens": np.concatenate([np.zeros((6, 1), np.int32), tokens[:, :-1]], 1),
        "decoder_target_tokens": tokens,
        "decoder_loss_weights": (np.arange(tokens.shape[1]) < lengths[:, None]).astype(np.float32),
    }
    log_likelihood = np.asarray(jitted(model, "score_batch")(params, batch))
    if num_beams == 1:
        expected = log_likelihood
    elif style == "hf":
        expected = log_likelihood / lengths
    else:
        expected = np.where(ended, log_likelihood / ((5.0 + lengths) / 6.0) ** 0.6, log_likelihood)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_unknown_loss_normalizing_factor_names_the_setting(pair):
    from ct5x.errors import UserInputError

    model, params, _ = pair
    bad = EncoderDecoderModel(model.config, LossOptions(loss_normalizing_factor="PER_BATCH"))
    with pytest.raises(UserInputError, match="loss_normalizing_factor='PER_BATCH'"):
        bad.loss_fn(params, teacher_forced_batch(np.random.default_rng(0)), None)


@pytest.mark.parametrize("num_beams, style", [(1, "hf"), (3, "hf"), (3, "hf_4.22"), (3, "t5x")])
def test_a_cache_that_grows_in_stages_decodes_as_a_full_length_one(untied_model, monkeypatch,
                                                                   num_beams, style):
    """Stages of 2, 4, 6 and 8 positions (some rows end in the first, some run to the last)
    give the tokens and scores of one 8-position cache (whose parity with transformers' generate
    is tested above). A stage that did not grow its cache would overwrite its last position."""
    model, params = untied_model
    params = with_frequent_eos(params, factor=2.0)
    encoder_tokens = random_tokens(np.random.default_rng(9), 6, 12)
    options = DecodingOptions(num_beams=num_beams, max_decode_length=8,
                              length_penalty_style=style)
    outputs = {}
    for grown_from in (4, 9):
        monkeypatch.setattr(decoding, "GROWN_CACHE_MIN_LENGTH", grown_from)
        monkeypatch.setattr(decoding, "CACHE_STAGE_LENGTH", 2)

        # A new function for each setting: JAX's trace cache knows the function, not the
        # constants patched above, and could hand back the other setting's program.
        def predict_fn(params, batch, options):
            return model.predict_batch_with_aux(params, batch, options)

        tokens, aux = jax.jit(predict_fn, static_argnames="options")(
            params, {"encoder_input_tokens": encoder_tokens}, options)
        outputs[grown_from] = (np.asarray(tokens), np.asarray(aux["scores"]),
                               decoding.cache_lengths(8))
    staged, full = outputs[4], outputs[9]
    assert (staged[2], full[2]) == ([2, 4, 6, 8], [8])
    ends = [np.flatnonzero(row == 1) for row in staged[0]]
    assert any(eos.size and eos[0] < 2 for eos in ends), "no row ended in the first stage"
    assert any(not eos.size or eos[0] >= 6 for eos in ends), "no row reached the last stage"
    np.testing.assert_array_equal(staged[0], full[0])
    np.testing.assert_allclose(staged[1], full[1], rtol=1e-6)


def test_long_searches_grow_their_cache_in_stages_of_about_128_positions():
    assert decoding.cache_lengths(512) == [128, 256, 384, 512]
    assert decoding.cache_lengths(1000) == [143, 286, 429, 572, 715, 858, 1000]
    assert decoding.cache_lengths(384) == [128, 256, 384]
    assert decoding.cache_lengths(257) == [129, 257]
    assert decoding.cache_lengths(255) == [255]
    assert decoding.cache_lengths(19) == [19]
