"""Length buckets: which lengths a batch may be padded to, the smallest that holds it, and the
length-sorted batches evaluation decodes in."""

import numpy as np
import pytest

from ct5x.errors import UserInputError
from ct5x.length_buckets import (
    BucketPair,
    LengthBuckets,
    batch_rows,
    check_buckets,
    feature_buckets,
    length_sorted_batches,
    smallest_fit,
    used_lengths,
)


def test_a_feature_is_padded_to_the_buckets_below_its_length_and_then_its_length():
    assert feature_buckets((64, 128, 256, 512), 200) == (64, 128, 200)
    assert feature_buckets((64, 128, 256, 512), 512) == (64, 128, 256, 512)
    assert feature_buckets((64, 128), 20) == (20,)
    assert feature_buckets(None, 128) == (128,)
    assert [smallest_fit(n, (64, 128, 200)) for n in (0, 64, 65, 200, 300)] == [64, 64, 128,
                                                                                200, 200]


def test_used_length_is_the_position_after_the_last_token():
    tokens = np.array([[5, 6, 1, 0, 0], [0, 0, 0, 0, 0], [7, 1, 0, 0, 0], [4, 4, 4, 4, 1]])
    np.testing.assert_array_equal(used_lengths(tokens), [3, 0, 2, 5])


@pytest.mark.parametrize("buckets", [(), (128, 64), (64, 64), (0, 64), (64, 1.5), "64", 64])
def test_buckets_must_be_ascending_positive_lengths(buckets):
    with pytest.raises(UserInputError, match="LENGTH_BUCKETS="):
        check_buckets(buckets)


def test_a_batch_fits_the_smallest_pair_and_is_cut_to_it():
    buckets = LengthBuckets.for_lengths((4, 8), {"inputs": 12, "targets": 6})
    assert (buckets.inputs, buckets.targets, buckets.full) == ((4, 8, 12), (4, 6),
                                                               BucketPair(12, 6))
    batch = {"encoder_input_tokens": np.array([[3, 3, 3, 3, 3, 1] + [0] * 6, [3, 1] + [0] * 10]),
             "decoder_target_tokens": np.array([[5, 1, 0, 0, 0, 0], [5, 5, 5, 1, 0, 0]])}
    batch["decoder_input_tokens"] = np.roll(batch["decoder_target_tokens"], 1, axis=1)
    pair = buckets.fit(batch)
    assert pair == BucketPair(8, 4)
    cut = pair.trim(batch)
    assert {key: value.shape for key, value in cut.items()} == {
        "encoder_input_tokens": (2, 8), "decoder_target_tokens": (2, 4),
        "decoder_input_tokens": (2, 4)}
    assert pair.holds(BucketPair(4, 4)) and not pair.holds(BucketPair(12, 4))
    fixed = LengthBuckets.for_lengths((4, 8), {"inputs": 12, "targets": 6}, fixed_targets=True)
    assert fixed.fit(batch) == BucketPair(8, 6)


def test_length_sorted_batches_cover_every_example_shortest_first():
    lengths = [5, 2, 9, 2, 7]
    found = length_sorted_batches(lengths, 2)
    assert [list(batch) for batch in found] == [[1, 3], [0, 4], [2]]


def test_a_short_last_batch_gets_the_fewest_multiples_that_hold_it():
    assert batch_rows(64, 64, 16) == 64
    assert batch_rows(32, 64, 16) == 32
    assert batch_rows(33, 64, 16) == 48
    assert batch_rows(1, 64, 16) == 16
    assert batch_rows(60, 64, 16) == 64
    assert batch_rows(5, 6, 4) == 6  # never more than the batch size


@pytest.mark.parametrize("needed, batch, multiple, expected", [
    (1, 16, 1, 1), (5, 16, 1, 5), (7, 16, 4, 8), (9, 16, 8, 16), (16, 16, 1, 16), (15, 16, 2, 16)])
def test_rows_are_rounded_up_to_a_multiple_of_the_devices(needed, batch, multiple, expected):
    assert batch_rows(needed, batch, multiple) == expected
