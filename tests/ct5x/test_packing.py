"""PACK_BATCHES: a step's examples packed into few rows give the unpacked step (loss, gradients,
dropout masks per example), and the rows hold every example once, within the row lengths."""

import functools
import itertools

import jax
import numpy as np
import pytest

from ct5x import partitioning
from ct5x.config import T5Config
from ct5x.length_buckets import BucketPair, LengthBuckets
from ct5x.models import EncoderDecoderModel, LossOptions
from ct5x.optimizers import OptimizerSettings, make_optimizer
from ct5x.packing import (
    BatchPacker,
    cheapest_row,
    execution_length,
    first_fit,
    pack_split,
    plan_row_counts,
)
from ct5x.trainer import Trainer

CONFIG = T5Config(vocab_size=40, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=24,
                  num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.3)
ROW = BucketPair(24, 16)


def _unpacked(examples: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """`examples` rows of unequal lengths at 24/16, as the training stream builds them."""
    rng = np.random.default_rng(seed)
    inputs = np.zeros((examples, 24), np.int32)
    targets = np.zeros((examples, 16), np.int32)
    for row in range(examples):
        used = rng.integers(2, 24)
        inputs[row] = np.where(np.arange(24) < used, rng.integers(3, 40, size=24), 0)
        used = rng.integers(2, 16)
        targets[row] = np.where(np.arange(16) < used, rng.integers(3, 40, size=16), 0)
    decoder_inputs = np.zeros_like(targets)
    decoder_inputs[:, 1:] = targets[:, :-1]
    return {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
            "decoder_input_tokens": decoder_inputs,
            "decoder_loss_weights": (targets > 0).astype(np.int32)}


def _packed(batch, multiple: int = 1, row: BucketPair = ROW) -> dict[str, np.ndarray]:
    packer = BatchPacker(row, len(batch["encoder_input_tokens"]), multiple)
    return packer.pack(batch, *packer.plan(batch))


def test_rows_hold_every_example_once_within_the_row_lengths():
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(1, 25, size=40), rng.integers(1, 17, size=40)
    rows = first_fit(inputs, targets, ROW)
    assert sorted(i for row in rows for i in row) == list(range(40))
    assert all(sum(inputs[row]) <= 24 and sum(targets[row]) <= 16 for row in rows)
    # First fit, longest first, never needs more than twice the rows the tokens need.
    assert len(rows) <= 2 * max(-(-inputs.sum() // 24), -(-targets.sum() // 16))


def test_the_cheapest_row_pair_wins_and_ties_go_to_the_first():
    """Two steps of 8 examples, each 10 input and 6 target tokens, at a row's positions each:
    16 + 8 and 16 + 16 hold one example a row (8 rows: 192 and 256 positions a step), 32 + 16
    three inputs and two targets (4 rows: 192), 32 + 24 three and four (3 rows: 168)."""
    steps = [(np.full(8, 10), np.full(8, 6))] * 2

    def positions(inputs, targets):
        return inputs + targets

    pairs = [BucketPair(16, 8), BucketPair(16, 16), BucketPair(32, 16), BucketPair(32, 24)]
    assert cheapest_row(steps, pairs, positions, 8) == BucketPair(32, 24)
    assert cheapest_row(steps, pairs[:3], positions, 8) == BucketPair(16, 8)
    assert cheapest_row(steps, pairs[2::-1], positions, 8) == BucketPair(32, 16)
    # Rounded to 4 devices, 16 + 8's 8 rows stay 8 and 32 + 24's 3 become 4 (224 positions).
    assert cheapest_row(steps, [pairs[3], pairs[0]], positions, 8, 4) == BucketPair(16, 8)


def _plan_cost(needed, counts, program_cost):
    return program_cost * len(counts) + sum(min(c for c in counts if c >= n) for n in needed)


def test_the_planned_row_counts_build_the_fewest_rows_with_each_program_priced():
    """Against every plan that holds the largest need (brute force), for random runs and prices;
    on the fold subset's needs, a cheap program plans every need and a dear one a single count."""
    rng = np.random.default_rng(0)
    for _ in range(60):
        needed = list(rng.integers(1, 12, size=rng.integers(1, 40)))
        cost = float(rng.choice([0, 0.5, 3, 10, 64]))
        found = plan_row_counts(needed, cost)
        values = sorted(set(needed))
        best = min(_plan_cost(needed, (*subset, values[-1]), cost)
                   for size in range(len(values))
                   for subset in itertools.combinations(values[:-1], size))
        assert max(needed) in found and set(found) <= set(values)
        assert _plan_cost(needed, found, cost) == pytest.approx(best)
    subset = [5] * 2 + [6] * 13 + [7] * 16 + [8]
    assert plan_row_counts(subset, 0) == (5, 6, 7, 8)
    assert plan_row_counts(subset, 64) == (8,)
    assert plan_row_counts([4] * 360 + [5] * 257 + [6] * 10 + [3] * 7, 64) == (4, 5, 6)


def test_an_execution_takes_the_steps_that_build_the_fewest_rows():
    """Against every split into executions (brute force), each execution built at its largest
    count and costing one more row."""
    rng = np.random.default_rng(1)
    for _ in range(60):
        counts = list(rng.integers(1, 9, size=rng.integers(1, 8)))
        overhead = float(rng.choice([0, 1, 2.5]))

        def cost(split, counts=counts, overhead=overhead):
            bounds = [0, *itertools.accumulate(split)]
            return sum(max(counts[a:b]) * (b - a) + overhead
                       for a, b in itertools.pairwise(bounds))

        splits = [split for size in range(1, len(counts) + 1)
                  for split in itertools.product(range(1, len(counts) + 1), repeat=size)
                  if sum(split) == len(counts)]
        best = min(cost(split) for split in splits)
        taken = execution_length(counts, overhead)
        assert min(cost(split) for split in splits if split[0] == taken) == pytest.approx(best)
    assert execution_length([6, 6, 6, 6]) == 4
    assert execution_length([4, 6, 6, 6]) == 1  # building the 4 at 6 costs more than a new one


def test_packed_rows_lay_out_each_example_with_its_own_positions_and_decoder_inputs():
    batch = _unpacked()
    packed = _packed(batch)
    assert len(packed["encoder_input_tokens"]) < len(batch["encoder_input_tokens"])
    _assert_every_example_once(batch, packed)


def _assert_every_example_once(batch: dict[str, np.ndarray], packed: dict[str, np.ndarray]):
    """Each example of `batch` is in one row of `packed`, whole, with its own positions and
    decoder inputs."""
    for example in range(len(batch["encoder_input_tokens"])):
        for side, tokens in (("encoder", "encoder_input_tokens"),
                             ("decoder", "decoder_target_tokens")):
            where = packed[f"{side}_segment_ids"] == example + 1
            assert where.any(axis=1).sum() == 1  # one row holds the whole example
            own = batch[tokens][example]
            np.testing.assert_array_equal(packed[tokens][where], own[own > 0])
            np.testing.assert_array_equal(packed[f"{side}_positions"][where],
                                          np.arange((own > 0).sum()))
        where = packed["decoder_segment_ids"] == example + 1
        own = batch["decoder_input_tokens"][example][:where.sum()]
        np.testing.assert_array_equal(packed["decoder_input_tokens"][where], own)
    np.testing.assert_array_equal(packed["decoder_loss_weights"],
                                  packed["decoder_target_tokens"] > 0)


def test_a_split_packed_for_scoring_keeps_every_example_and_its_log_likelihood():
    """`pack_split` lays a whole split into as few rows as a multiple of the scoring rows, within
    the feature lengths, and the rows' scores sum to the unpacked rows' (the validation loss's
    numerator)."""
    batch = _unpacked(examples=20, seed=1)  # cut to at most 12 input and 8 target tokens:
    batch["encoder_input_tokens"] *= np.arange(24) < 12
    for key in ("decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"):
        batch[key] *= np.arange(16) < 8
    buckets = LengthBuckets.for_lengths((16,), {"inputs": 24, "targets": 16})
    packed = pack_split(batch, buckets, 4, functools.partial(CONFIG.train_step_flops, 1))
    rows = len(packed["encoder_input_tokens"])
    assert rows % 4 == 0 and rows < 20
    # Rows of 24 + 24 would cost less (8 rows), but the targets' feature length is 16.
    assert packed["decoder_target_tokens"].shape[1] == 16
    _assert_every_example_once(batch, packed)
    model = EncoderDecoderModel(CONFIG)
    params = model.init_params(jax.random.key(0))
    np.testing.assert_allclose(float(np.sum(model.score_batch(params, packed))),
                               float(np.sum(model.score_batch(params, batch))), rtol=1e-6)


@functools.cache
def _trainer(packed_examples: int | None) -> Trainer:
    model = EncoderDecoderModel(CONFIG,
                                LossOptions(loss_normalizing_factor="NUM_REAL_TARGET_TOKENS"))
    return Trainer(model, make_optimizer(OptimizerSettings(learning_rate=1e-2)),
                   partitioning.Partitioner(1, devices=jax.devices()[:1]), seed=5,
                   packed_examples=packed_examples)


def _steps(trainer: Trainer, batches: list) -> tuple[dict, list[float]]:
    params = EncoderDecoderModel(CONFIG).init_params(jax.random.key(0))
    state, losses = trainer.create_state(jax.tree.map(np.asarray, params)), []
    for batch in batches:
        state, metrics = trainer.train(state, [batch])
        losses.append(float(metrics.fetch()["loss"][0]))
    return jax.tree.map(np.asarray, state.params), losses


@pytest.mark.parametrize("row", [ROW, BucketPair(24, 40)])
def test_packed_steps_with_dropout_repeat_the_unpacked_steps(row):
    """Three steps at dropout 0.3: the same losses and parameters packed as unpacked, because
    every example draws the masks its own row draws; also in target rows longer than the
    targets' feature length (16), which the row choice may plan. Without them (`packed_examples`
    None: one mask per packed row, shared by its examples) the losses differ, so the check can
    fail."""
    batches = [_unpacked(seed=seed) for seed in range(3)]
    expected_params, expected = _steps(_trainer(None), batches)
    params, found = _steps(_trainer(8), [_packed(b, row=row) for b in batches])
    np.testing.assert_allclose(found, expected, rtol=1e-5)
    differences = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), params,
                                               expected_params))
    assert max(differences) <= 1e-5
    _, shared_masks = _steps(_trainer(None), [_packed(b, row=row) for b in batches])
    assert not np.allclose(shared_masks, expected, rtol=1e-3)


@pytest.mark.parametrize("changes", [{"scan_layers": True}, {"remat_policy": "full"}])
def test_packed_dropout_is_the_unpacked_one_when_the_layers_are_scanned_or_rematerialised(
        changes):
    model = EncoderDecoderModel(CONFIG.replace(**changes),
                                LossOptions(loss_normalizing_factor="NUM_REAL_TARGET_TOKENS"))
    params = model.init_params(jax.random.key(0))
    batch = _unpacked(seed=4)
    rng = jax.random.key(9)
    expected = model.loss_fn(params, batch, rng)[0]
    found = model.loss_fn(params, _packed(batch), rng, packed_examples=8)[0]
    np.testing.assert_allclose(float(found), float(expected), rtol=1e-5)
