"""The validation loss's scoring rows: a packing run scores the split packed where that computes
less than its decoding batches, and keeps the batches where it does not."""

import functools

import numpy as np

from ct5x.config import T5Config
from ct5x.length_buckets import LengthBuckets
from ct5x.validation import scoring_parts

CONFIG = T5Config(vocab_size=40, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=24,
                  num_encoder_layers=2, num_decoder_layers=2)
BUCKETS = LengthBuckets.for_lengths((8, 16), {"inputs": 24, "targets": 24})
ROW_COST = functools.partial(CONFIG.train_step_flops, 1)


def _features(lengths: list[int]) -> dict[str, np.ndarray]:
    """Unpacked rows at 24/24 whose input and target are each `length` tokens."""
    used = np.arange(24)[None, :] < np.asarray(lengths)[:, None]
    tokens = np.where(used, 7, 0).astype(np.int32)
    decoder_inputs = np.zeros_like(tokens)
    decoder_inputs[:, 1:] = tokens[:, :-1]
    return {"encoder_input_tokens": tokens, "decoder_target_tokens": tokens,
            "decoder_input_tokens": decoder_inputs, "decoder_loss_weights": used.astype(np.int32)}


def _batches(features: dict[str, np.ndarray], size: int) -> list[dict[str, np.ndarray]]:
    """Decoding batches of `size` rows in order, each cut to its bucket pair."""
    batches = []
    for start in range(0, len(features["encoder_input_tokens"]), size):
        batch = {key: value[start:start + size] for key, value in features.items()}
        batches.append(BUCKETS.fit(batch).trim(batch))
    return batches


def _shapes(parts) -> list[tuple[int, int, int, bool]]:
    return [(*part["encoder_input_tokens"].shape, part["decoder_target_tokens"].shape[1],
             "encoder_segment_ids" in part) for part in parts]


def test_a_split_of_short_examples_is_scored_packed():
    features = _features([5] * 7 + [20])
    batches = _batches(features, 4)
    assert _shapes(scoring_parts(features, batches, BUCKETS, 2)) == (
        [(2, 8, 8, False)] * 2 + [(2, 24, 24, False)] * 2)
    # 8 examples in 3 rows of 24 + 24 (the long one alone, then 4 short ones a row), rounded to
    # 4: the batches' 2 rows of 8 + 8 fewer.
    assert _shapes(scoring_parts(features, batches, BUCKETS, 2, ROW_COST)) == (
        [(2, 24, 24, True)] * 2)


def test_a_split_of_mostly_long_examples_keeps_its_batches():
    """Packed, the two 5-token examples share a row of 24 + 24 beside the long ones' own: 3
    rows, rounded to 4, against the batches' 2 rows of 8 + 8 and 2 of 24 + 24."""
    features = _features([5, 5, 20, 20])
    batches = _batches(features, 2)
    parts = scoring_parts(features, batches, BUCKETS, 2, ROW_COST)
    assert _shapes(parts) == [(2, 8, 8, False), (2, 24, 24, False)]
