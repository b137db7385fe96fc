"""The training loss against a direct float64 numpy computation, for every loss-normalizing
factor, on unpacked and packed batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from packed_batches import pack_examples

from ct5x import losses
from ct5x.errors import UserInputError

VOCAB = 11
FACTORS = ["NONE", "NUM_REAL_TARGET_TOKENS", "NUM_TOTAL_TARGET_TOKENS", "AVERAGE_PER_SEQUENCE",
           7.5]


def unpacked_batch(rng):
    """Rows of different lengths; the last row is empty (all padding)."""
    lengths = [6, 3, 1, 0]
    targets = np.zeros((4, 6), np.int32)
    for row, length in enumerate(lengths):
        targets[row, :length] = rng.integers(2, VOCAB, length)
    return targets, (targets > 0).astype(np.float32), None


def packed_batch(rng):
    """Row 0 packs sequences of 3, 1 and 2 tokens; row 1 packs 2 and 3 then padding; row 2 holds
    one sequence; row 3 is empty. Sequence 2 of row 1 carries a zero-weight token."""
    segments = np.array([[1, 1, 1, 2, 3, 3],
                         [1, 1, 2, 2, 2, 0],
                         [1, 1, 1, 1, 0, 0],
                         [0, 0, 0, 0, 0, 0]], np.int32)
    targets = np.where(segments > 0, rng.integers(2, VOCAB, segments.shape), 0).astype(np.int32)
    weights = (segments > 0).astype(np.float32)
    weights[1, 3] = 0.0
    return targets, weights, segments


def numpy_loss(logits, targets, weights, segments, factor, z_loss, label_smoothing):
    """Written from the definitions, sequence by sequence, in float64."""
    logits = logits.astype(np.float64)
    log_z = np.log(np.exp(logits).sum(-1))
    log_probs = logits - log_z[..., None]
    confidence, low = 1.0 - label_smoothing, label_smoothing / (VOCAB - 1)
    rows, length = targets.shape
    token_loss = np.zeros((rows, length))
    for row in range(rows):
        for pos in range(length):
            target = np.full(VOCAB, low)
            target[targets[row, pos]] = confidence
            entropy = -sum(q * np.log(q) for q in target if q > 0)
            token_loss[row, pos] = (-(target * log_probs[row, pos]).sum() - entropy
                                    + z_loss * log_z[row, pos] ** 2)
    if factor != "AVERAGE_PER_SEQUENCE":
        total = (token_loss * weights).sum()
        divisor = {"NONE": 1.0, "NUM_REAL_TARGET_TOKENS": weights.sum(),
                   "NUM_TOTAL_TARGET_TOKENS": targets.size}.get(factor, factor)
        return total / divisor
    sequence_means = []
    for row in range(rows):
        ids = np.ones(length, int) if segments is None else segments[row]
        for segment in set(ids[ids > 0].tolist()):
            where = (ids == segment) & (weights[row] > 0)
            if where.any():
                sequence_means.append((token_loss[row] * weights[row])[where].sum()
                                      / weights[row][where].sum())
    return np.mean(sequence_means)


@pytest.mark.parametrize("make_batch", [unpacked_batch, packed_batch])
@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("z_loss, label_smoothing", [(1e-4, 0.0), (1e-2, 0.1)])
def test_weighted_loss_matches_numpy(make_batch, factor, z_loss, label_smoothing):
    rng = np.random.default_rng(0)
    targets, weights, segments = make_batch(rng)
    logits = rng.normal(0, 3, (*targets.shape, VOCAB)).astype(np.float32)
    loss, parts = losses.weighted_loss(
        jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights), z_loss, label_smoothing,
        factor, segment_ids=None if segments is None else jnp.asarray(segments),
    )
    expected = numpy_loss(logits, targets, weights, segments, factor, z_loss, label_smoothing)
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5)
    assert float(parts["weight_sum"]) == weights.sum()


def test_average_per_sequence_differs_from_the_per_row_mean_when_packed():
    """The packed normalisation is not the per-row one (what ct5x did before)."""
    rng = np.random.default_rng(1)
    targets, weights, segments = packed_batch(rng)
    logits = jnp.asarray(rng.normal(0, 3, (*targets.shape, VOCAB)), jnp.float32)
    packed, _ = losses.weighted_loss(logits, targets, weights, 0.0, 0.0, "AVERAGE_PER_SEQUENCE",
                                     segment_ids=jnp.asarray(segments))
    per_row, _ = losses.weighted_loss(logits, targets, weights, 0.0, 0.0, "AVERAGE_PER_SEQUENCE")
    assert abs(float(packed) - float(per_row)) > 1e-3


def test_per_sequence_weights_sum_to_one_per_non_empty_sequence():
    _, weights, segments = packed_batch(np.random.default_rng(2))
    scaled = np.asarray(losses.per_sequence_weights(jnp.asarray(weights), jnp.asarray(segments)))
    for row in range(segments.shape[0]):
        for segment in range(1, segments.max() + 1):
            where = segments[row] == segment
            if where.any():
                np.testing.assert_allclose(scaled[row][where].sum(), 1.0, rtol=1e-6)
    assert scaled[3].sum() == 0 and scaled.sum() == pytest.approx(6.0)  # six sequences


def test_token_log_likelihood_matches_numpy():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (2, 5, VOCAB)).astype(np.float32)
    targets = rng.integers(0, VOCAB, (2, 5))
    log_probs = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(losses.token_log_likelihood(jnp.asarray(logits), targets), expected,
                               rtol=1e-5)


@pytest.mark.parametrize("factor", ["PER_BATCH", True, None])
def test_unknown_factor_names_the_setting(factor):
    with pytest.raises(UserInputError, match="loss_normalizing_factor"):
        losses.normalize_weights(jnp.ones((2, 3)), factor)


def test_packing_leaves_the_model_loss_unchanged():
    """Three examples, unpacked in three rows or packed two-and-one with segment ids: the
    network masks across segments, so the summed loss is the same, and so is the mean over
    sequences once the model passes the segment ids to the normalisation."""
    from ct5x.config import T5Config
    from ct5x.models import EncoderDecoderModel, LossOptions

    rng = np.random.default_rng(4)
    lengths = ((5, 3), (4, 2), (6, 4))
    examples = [(rng.integers(2, 60, n), rng.integers(2, 60, m)) for n, m in lengths]

    # Same shapes both ways (the packed batch's last row is empty), so one program serves both.
    unpacked = pack_examples([[example] for example in examples], 10, 6)
    packed = pack_examples([examples[:2], examples[2:], []], 10, 6)
    config = T5Config(vocab_size=64, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32,
                      num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0)
    params = EncoderDecoderModel(config).init_params(jax.random.PRNGKey(0))
    models = [EncoderDecoderModel(config, LossOptions(loss_normalizing_factor=factor))
              for factor in ("NONE", "AVERAGE_PER_SEQUENCE")]
    both_losses = jax.jit(lambda p, b: [model.loss_fn(p, b, None)[0] for model in models])
    np.testing.assert_allclose(both_losses(params, packed), both_losses(params, unpacked),
                               rtol=1e-5)
