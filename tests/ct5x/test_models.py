"""Loss, scoring and decoding of `EncoderDecoderModel` against transformers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from t5_parity import PARITY_CONFIGS, hf_generate, random_tokens

from ct5x.checkpoints import load_checkpoint
from ct5x.models import DecodingOptions, EncoderDecoderModel, LossOptions


@pytest.fixture(scope="module", params=sorted(PARITY_CONFIGS))
def pair(request, make_hf_t5):
    """(ct5x model, params, transformers model) holding the same random weights."""
    directory = make_hf_t5(seed=11, **PARITY_CONFIGS[request.param])
    checkpoint = load_checkpoint(directory)
    torch_model = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
    return EncoderDecoderModel(checkpoint.config), checkpoint.params, torch_model


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
    np.testing.assert_allclose(np.asarray(model.score_batch(params, batch)), expected, atol=1e-4)


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
    ours = np.asarray(model.predict_batch(params, {"encoder_input_tokens": encoder_tokens}, options))
    extra = {} if length_penalty is None else {"length_penalty": length_penalty}
    expected = hf_generate(torch_model, encoder_tokens, 10, num_beams=num_beams, **extra)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("style", ["hf", "t5x"])
def test_predictions_do_not_depend_on_batch_neighbours(pair, style):
    model, params, _ = pair
    encoder_tokens = random_tokens(np.random.default_rng(4), 6, 12)
    options = DecodingOptions(num_beams=3, max_decode_length=8, length_penalty_style=style)
    together = np.asarray(
        model.predict_batch(params, {"encoder_input_tokens": encoder_tokens}, options)
    )
    for rows in (slice(0, 2), slice(2, 4), slice(4, 6)):
        apart = model.predict_batch(params, {"encoder_input_tokens": encoder_tokens[rows]}, options)
        np.testing.assert_array_equal(np.asarray(apart), together[rows])


def test_greedy_output_stops_at_eos(pair):
    model, params, _ = pair
    encoder_tokens = random_tokens(np.random.default_rng(5), 8, 10)
    tokens = np.asarray(
        model.predict_batch(params, {"encoder_input_tokens": jnp.asarray(encoder_tokens)},
                            DecodingOptions(max_decode_length=12))
    )
    for row in tokens:
        eos = np.flatnonzero(row == 1)
        if eos.size:
            assert (row[eos[0] + 1 :] == 0).all()


def test_unknown_loss_normalizing_factor_names_the_setting(pair):
    from ct5x.errors import UserInputError

    model, params, _ = pair
    bad = EncoderDecoderModel(model.config, LossOptions(loss_normalizing_factor="PER_BATCH"))
    with pytest.raises(UserInputError, match="loss_normalizing_factor='PER_BATCH'"):
        bad.loss_fn(params, teacher_forced_batch(np.random.default_rng(0)), None)
