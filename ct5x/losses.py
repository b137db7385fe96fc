"""Cross-entropy with T5X's z-loss and its loss-normalizing-factor choices, as pure functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ct5x.errors import UserInputError

# T5X's names for how the summed token loss is divided before the gradient step.
LOSS_NORMALIZING_FACTORS = (
    "NONE",  # T5X's default: the plain sum over weighted tokens
    "NUM_REAL_TARGET_TOKENS",  # per-token mean: what the paper's Hugging Face runs optimised
    "NUM_TOTAL_TARGET_TOKENS",  # divide by batch * target_length, padding included
    "AVERAGE_PER_SEQUENCE",  # mean over (packed) sequences of each one's per-token mean
)


def cross_entropy_with_z_loss(
    logits: jax.Array, targets: jax.Array, z_loss: float = 1e-4, label_smoothing: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Per-token loss and its z-loss part, both [batch, length], from float32 logits.

    z-loss (Mesh TensorFlow / T5X) adds z_loss * logsumexp(logits)^2 to keep the softmax
    normaliser near one. With label smoothing the loss is shifted by the entropy of the smoothed
    target so that a perfect prediction still scores zero, as T5X does.
    """
    vocab_size = logits.shape[-1]
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab_size - 1)
    soft_targets = jax.nn.one_hot(targets, vocab_size) * (confidence - low) + low
    # [batch, length]: -sum_v q_v log p_v with log p = logits - log_z
    token_loss = log_z - jnp.sum(soft_targets * logits, axis=-1)
    if label_smoothing > 0:
        entropy = -(
            confidence * jnp.log(confidence) + (vocab_size - 1) * low * jnp.log(low + 1e-20)
        )
        token_loss = token_loss - entropy
    z_term = z_loss * jnp.square(log_z)
    return token_loss + z_term, z_term


def token_log_likelihood(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(target token) for each position, [batch, length]."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]


def per_sequence_weights(weights: jax.Array, segment_ids: jax.Array | None = None) -> jax.Array:
    """Each token's weight divided by the total weight of its sequence, [batch, length].

    Unpacked, a row is one sequence; packed, `segment_ids` (0 on padding) split a row into
    sequences. Tokens of a sequence whose weights sum to zero get zero.
    """
    if segment_ids is None:
        totals = jnp.sum(weights, axis=-1, keepdims=True)
    else:
        # Per row: sum the weights of each segment id, then give every token its segment's total.
        length = segment_ids.shape[-1]

        def row_totals(row_weights: jax.Array, row_segments: jax.Array) -> jax.Array:
            sums = jax.ops.segment_sum(row_weights, row_segments, num_segments=length + 1)
            return sums[row_segments]

        totals = jax.vmap(row_totals)(weights, segment_ids)
    return jnp.where(totals > 0, weights / jnp.where(totals > 0, totals, 1.0), 0.0)


def normalize_weights(
    weights: jax.Array,
    loss_normalizing_factor: str | float,
    segment_ids: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | float]:
    """(token weights, divisor) for a loss-normalizing factor, as T5X computes them.

    AVERAGE_PER_SEQUENCE weighs each (packed) sequence equally: tokens get their sequence's
    share, and the sum is divided by the number of sequences with any weight.
    """
    if loss_normalizing_factor == "AVERAGE_PER_SEQUENCE":
        weights = per_sequence_weights(weights, segment_ids)
        return weights, jnp.maximum(jnp.sum(weights), 1.0)
    if loss_normalizing_factor == "NUM_REAL_TARGET_TOKENS":
        return weights, jnp.maximum(jnp.sum(weights), 1.0)
    if loss_normalizing_factor == "NUM_TOTAL_TARGET_TOKENS":
        return weights, float(weights.size)
    if loss_normalizing_factor == "NONE":
        return weights, 1.0
    if isinstance(loss_normalizing_factor, (int, float)) and not isinstance(
        loss_normalizing_factor, bool
    ):
        return weights, float(loss_normalizing_factor)
    raise UserInputError(
        f"LossOptions.loss_normalizing_factor={loss_normalizing_factor!r}: expected a number "
        f"or one of {', '.join(LOSS_NORMALIZING_FACTORS)}"
    )


def weighted_loss(
    logits: jax.Array,
    targets: jax.Array,
    weights: jax.Array,
    z_loss: float = 1e-4,
    label_smoothing: float = 0.0,
    loss_normalizing_factor: str | float = "NONE",
    segment_ids: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar training loss and its parts; `weights` [batch, length] is 0 on padding, and
    `segment_ids` (the batch's decoder_segment_ids) marks packed sequences. The part
    "weight_sum" is the sum of the given weights (the real target tokens)."""
    weights = weights.astype(jnp.float32)
    scaled, divisor = normalize_weights(weights, loss_normalizing_factor, segment_ids)
    token_loss, z_term = cross_entropy_with_z_loss(logits, targets, z_loss, label_smoothing)
    loss = jnp.sum(token_loss * scaled) / divisor
    parts = {
        "z_loss": jnp.sum(z_term * scaled) / divisor,
        "weight_sum": jnp.sum(weights),
    }
    return loss, parts
