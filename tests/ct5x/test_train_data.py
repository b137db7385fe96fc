"""The training data stream: SeqIO's features, epoch-by-epoch shuffles, and batch k as a pure
function of (seed, k) so that a resumed run reads the batches an uninterrupted one would."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from ct5x.data_pipeline import DataSettings, TrainingStream, convert, pad_batches
from ct5x.errors import UserInputError
from ct5x.length_buckets import BucketPair, LengthBuckets, used_lengths

LENGTHS = {"inputs": 12, "targets": 7}


def _examples(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        inputs = rng.integers(3, 50, size=rng.integers(2, 12)).astype(np.int32)
        targets = rng.integers(3, 50, size=rng.integers(1, 7)).astype(np.int32)
        examples.append({"inputs": np.append(inputs, 1), "targets": np.append(targets, 1)})
    return examples


def _settings(**changes) -> DataSettings:
    return DataSettings(**{"task_name": "unused", "feature_lengths": LENGTHS, "batch_size": 4,
                           "seed": 7, **changes})


def test_unpacked_features_equal_seqio_converter():
    examples = _examples(9)
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(examples),
        output_signature={"inputs": tf.TensorSpec([None], tf.int32),
                          "targets": tf.TensorSpec([None], tf.int32)})
    expected = list(seqio.EncDecFeatureConverter(pack=False)(dataset, LENGTHS)
                    .as_numpy_iterator())
    found = convert(examples, LENGTHS, pack=False)
    assert set(found) == set(expected[0])
    for key in found:
        np.testing.assert_array_equal(found[key], np.stack([row[key] for row in expected]))


def test_stream_covers_each_epoch_once_in_a_new_order():
    examples = _examples(10)
    stream = TrainingStream(_settings(), examples)
    # 3 epochs of 10 examples = 7.5 batches of 4: batches straddle epoch boundaries.
    rows = np.concatenate([stream.batch(step)["encoder_input_tokens"] for step in range(7)])
    unpacked = convert(examples, LENGTHS, pack=False)["encoder_input_tokens"]
    index = {row.tobytes(): i for i, row in enumerate(unpacked)}
    order = [index[row.tobytes()] for row in rows]
    assert sorted(order[:10]) == sorted(order[10:20]) == list(range(10))
    assert order[:10] != order[10:20]
    assert order[:10] == list(stream.epoch_order(0)) and order[10:20] == list(stream.epoch_order(1))
    assert stream.epoch_of_step(5) == pytest.approx(2.0)


def test_batch_k_is_the_same_in_a_fresh_stream_and_depends_on_the_seed():
    examples = _examples(10)
    first, resumed = TrainingStream(_settings(), examples), TrainingStream(_settings(), examples)
    for step in (0, 1, 6):
        first.batch(step)
    for key, value in first.batch(9).items():
        np.testing.assert_array_equal(resumed.batch(9)[key], value)
    other = TrainingStream(_settings(seed=8), examples)
    assert not np.array_equal(other.batch(0)["encoder_input_tokens"],
                              first.batch(0)["encoder_input_tokens"])


def test_packed_stream_is_deterministic_and_keeps_every_example():
    examples = _examples(12)
    roomy = {"inputs": 40, "targets": 20}
    stream = TrainingStream(_settings(pack=True, feature_lengths=roomy), examples)
    epoch = stream.epoch_rows(0)
    assert "encoder_segment_ids" in epoch
    segments = sum(len(set(row[row > 0])) for row in epoch["decoder_segment_ids"])
    assert segments == 12
    assert stream.rows_per_epoch(0) < 12
    fresh = TrainingStream(_settings(pack=True, feature_lengths=roomy), examples)
    step = stream.rows_per_epoch(0) // 4 + 1  # a batch in the second epoch or later
    for key, value in stream.batch(step).items():
        np.testing.assert_array_equal(fresh.batch(step)[key], value)


def test_pad_batches_pads_the_last_batch_with_empty_rows():
    features = convert(_examples(5), LENGTHS, pack=False)
    batches = pad_batches(features, 4)
    assert [real for _, real in batches] == [4, 1]
    last, _ = batches[-1]
    assert last["encoder_input_tokens"].shape == (4, 12)
    assert not last["decoder_loss_weights"][1:].any()


def test_batch_must_split_into_the_data_shards():
    with pytest.raises(UserInputError, match="BATCH_SIZE=6 does not split into 4 data shards"):
        _settings(batch_size=6, num_shards=4)
    assert _settings(batch_size=8, num_shards=4, shard_index=1).host_batch_size == 2


def test_data_shards_of_a_batch_are_its_rows_in_order():
    """Shard i of batch k is rows i*B/n .. (i+1)*B/n of the one-shard stream's batch k (each
    process reads the whole split), whatever the number of shards."""
    examples = _examples(10)
    whole = TrainingStream(_settings(), examples)
    shards = [TrainingStream(_settings(num_shards=2, shard_index=i), examples) for i in (0, 1)]
    for step in (0, 2, 5):  # batch 2 straddles the first epoch's end
        for key, value in whole.batch(step).items():
            np.testing.assert_array_equal(
                np.concatenate([shard.batch(step)[key] for shard in shards]), value)
        assert shards[1].epoch_of_step(step) == whole.epoch_of_step(step)


def test_an_execution_shares_the_bucket_of_its_first_batch_and_keeps_every_token():
    """Batches are cut to the first batch's bucket pair while they fit it; the one that does not
    starts the next execution. Every process finds the pair from the whole global batch."""
    rng = np.random.default_rng(0)
    examples = [{"inputs": np.append(rng.integers(3, 50, rng.choice([2, 2, 2, 10])), 1),
                 "targets": np.append(rng.integers(3, 50, rng.choice([2, 2, 5])), 1)}
                for _ in range(40)]
    buckets = LengthBuckets.for_lengths((4, 8), LENGTHS)
    stream = TrainingStream(_settings(buckets=buckets), examples)
    fixed = TrainingStream(_settings(), examples)
    pairs = [stream.bucket(step) for step in range(10)]
    assert len(set(pairs)) > 2
    step, executions = 0, 0
    while step < 10:
        batches = stream.execution(step, min(4, 10 - step))
        executions += 1
        assert 1 <= len(batches) <= 4
        for offset, batch in enumerate(batches):
            assert pairs[step].holds(pairs[step + offset])
            whole = fixed.batch(step + offset)
            for key, value in batch.items():
                width = value.shape[1]
                assert width == (pairs[step].inputs if key.startswith("encoder_")
                                 else pairs[step].targets)
                np.testing.assert_array_equal(value, whole[key][:, :width])
                assert not whole[key][:, width:].any()
        if len(batches) < min(4, 10 - step):
            assert not pairs[step].holds(pairs[step + len(batches)])
        step += len(batches)
    assert executions > 3  # some execution ended at a batch that needs a larger pair
    assert [b["encoder_input_tokens"].shape for b in fixed.execution(0, 4)] == [(4, 12)] * 4
    shard = TrainingStream(_settings(buckets=buckets, num_shards=2, shard_index=1), examples)
    assert [shard.bucket(step) for step in range(10)] == pairs


def test_packed_executions_hold_each_batch_s_examples_split_over_the_data_shards():
    """PACK_BATCHES: batch k's examples (the unpacked stream's) packed into rows of the split's
    longest pair, as many as the execution's batches need; each of two data shards gets its half
    of the rows, and the shards hold every example of the batch once. With the run's row counts
    planned at a high price per program, every execution has the run's largest need."""
    examples = _examples(40, seed=3)  # at most 12 + 7 tokens
    lengths = {"inputs": 24, "targets": 16}
    buckets = LengthBuckets.for_lengths((14, 20), lengths)
    plain = TrainingStream(_settings(batch_size=8, feature_lengths=lengths), examples)
    shards = [TrainingStream(_settings(batch_size=8, feature_lengths=lengths, buckets=buckets,
                                       pack_batches=True, row_multiple=2, num_shards=2,
                                       shard_index=i), examples)
              for i in (0, 1)]
    assert shards[0].packer.row.inputs == 14 and shards[0].packer.row.targets == 14
    step, row_counts = 0, []
    while step < 10:
        executions = [shard.execution(step, 3) for shard in shards]
        assert len(executions[0]) == len(executions[1])
        for offset, halves in enumerate(zip(*executions)):
            batch = {key: np.concatenate([half[key] for half in halves]) for key in halves[0]}
            rows = len(batch["encoder_input_tokens"])
            assert rows % 2 == 0 and rows <= 8
            row_counts.append(rows)
            whole = plain.batch(step + offset)
            for example in range(8):
                where = batch["encoder_segment_ids"] == example + 1
                own = whole["encoder_input_tokens"][example]
                np.testing.assert_array_equal(batch["encoder_input_tokens"][where], own[own > 0])
                where = batch["decoder_segment_ids"] == example + 1
                own = whole["decoder_target_tokens"][example]
                np.testing.assert_array_equal(batch["decoder_target_tokens"][where],
                                              own[own > 0])
            assert batch["encoder_segment_ids"].max() == 8
        step += len(executions[0])
    assert min(row_counts) < 8
    for shard in shards:
        shard.plan_packing(10, program_cost=1000.0)
    batches = [plain.batch(step) for step in range(10)]
    needs = [shards[0].packer.needed_rows(used_lengths(batch["encoder_input_tokens"]),
                                          used_lengths(batch["decoder_target_tokens"]))
             for batch in batches]
    assert shards[1].packer.row == shards[0].packer.row
    assert shards[0].packer.counts == (max(needs),)
    assert {len(batch["encoder_input_tokens"]) for batch in shards[1].execution(0, 3)} == {
        max(needs) // 2}


def test_a_short_feature_gets_rows_past_its_length_and_every_example_stays_whole():
    """Targets short beside their inputs (as NCBI-disease at 512/64, where one long input sets
    rows of 192 input positions for inputs of 46 tokens on average): rows of the smallest pair
    hold one target each, so the run plans its rows from the longer feature's buckets, fewer a
    step, and each packed batch still holds each of its examples once, whole."""
    rng = np.random.default_rng(5)
    examples = [{"inputs": np.append(rng.integers(3, 50, size=rng.integers(3, 7)), 1),
                 "targets": np.append(rng.integers(3, 50, size=rng.integers(2, 4)), 1)}
                for _ in range(48)]
    examples[0]["inputs"] = np.append(rng.integers(3, 50, size=15), 1)
    lengths = {"inputs": 24, "targets": 4}
    settings = _settings(batch_size=8, feature_lengths=lengths, pack_batches=True,
                         buckets=LengthBuckets.for_lengths((4, 8, 16, 24), lengths))
    stream = TrainingStream(settings, examples)
    assert stream.packer.row == BucketPair(16, 4)  # the smallest pair: a row per example
    stream.plan_packing(6, program_cost=0.0)
    assert stream.packer.row.targets > lengths["targets"]
    plain = TrainingStream(_settings(batch_size=8, feature_lengths=lengths), examples)
    built = 0
    for step in range(6):
        batch, = stream.execution(step, 1)
        built += len(batch["encoder_input_tokens"])
        whole = plain.batch(step)
        for example in range(8):
            for side, feature in (("encoder_", "encoder_input_tokens"),
                                  ("decoder_", "decoder_target_tokens")):
                own = whole[feature][example]
                where = batch[f"{side}segment_ids"] == example + 1
                np.testing.assert_array_equal(batch[feature][where], own[own > 0])
    assert built < 0.6 * 6 * 8  # 25 rows, against the smallest pair's 48 (one per example)
