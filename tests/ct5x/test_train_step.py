"""The partitioned train step: gradient accumulation over microbatches equals one whole-batch step
whatever the loss-normalizing factor, packed or not, or averages the microbatches' own losses as
transformers' Trainer does. (Dropout as a function of (seed, step) is checked end to end
by the SIGKILL resume test in test_train.py.)"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from packed_batches import pack_examples

from ct5x import partitioning
from ct5x.config import T5Config
from ct5x.errors import UserInputError
from ct5x.models import EncoderDecoderModel, LossOptions
from ct5x.optimizers import OptimizerSettings, make_optimizer
from ct5x.trainer import Trainer, _non_empty_sequences

CONFIG = T5Config(vocab_size=40, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=24,
                  num_encoder_layers=1, num_decoder_layers=1, dropout_rate=0.0)


def _batch(rows: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = rng.integers(3, 40, size=(rows, 10)).astype(np.int32)
    targets = rng.integers(3, 40, size=(rows, 6)).astype(np.int32)
    for row in range(rows):  # unequal lengths, so the normalizers differ per microbatch
        inputs[row, 3 + 2 * row:] = 0
        targets[row, 2 + row:] = 0
    decoder_inputs = np.zeros_like(targets)
    decoder_inputs[:, 1:] = targets[:, :-1]
    return {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
            "decoder_input_tokens": decoder_inputs,
            "decoder_loss_weights": (targets > 0).astype(np.int32)}


def _packed_batch(rows: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows of two or three packed examples of unequal lengths."""
    rng = np.random.default_rng(seed)
    members = [[(rng.integers(3, 40, size=rng.integers(1, 4)),
                 rng.integers(3, 40, size=1 + (row + segment) % 3))
                for segment in range(1, 3 + row % 2)] for row in range(rows)]
    return pack_examples(members, 12, 9)


@functools.cache
def _one_device() -> partitioning.Partitioner:
    return partitioning.Partitioner(1, devices=jax.devices()[:1])


@functools.cache
def _trainer(factor: str, microbatches: int, config: T5Config = CONFIG,
             steps_per_execution: int = 1, microbatch_means: bool = False) -> Trainer:
    """Compiled once per setting for the whole module."""
    model = EncoderDecoderModel(config, LossOptions(loss_normalizing_factor=factor))
    return Trainer(model, make_optimizer(OptimizerSettings(learning_rate=1e-2)), _one_device(),
                   seed=3, num_microbatches=microbatches, steps_per_execution=steps_per_execution,
                   microbatch_means=microbatch_means)


def _one_step(trainer: Trainer, params, batch):
    state, metrics = trainer.train(trainer.create_state(params), [batch])
    return (jax.tree.map(np.asarray, state.params),
            {name: float(values[0]) for name, values in metrics.fetch().items()})


def _initial_params():
    return jax.tree.map(np.asarray, EncoderDecoderModel(CONFIG).init_params(jax.random.key(0)))


# NONE and NUM_TOTAL_TARGET_TOKENS only sum or average; these two weigh microbatches unequally,
# AVERAGE_PER_SEQUENCE by the sequences packed into each row.
@pytest.mark.parametrize("factor, packed", [("NUM_REAL_TARGET_TOKENS", False),
                                            ("AVERAGE_PER_SEQUENCE", True)])
def test_microbatches_give_the_whole_batch_step(factor, packed):
    params = _initial_params()
    batch = _packed_batch() if packed else _batch()
    whole_params, whole = _one_step(_trainer(factor, 1), params, batch)
    split_params, split = _one_step(_trainer(factor, 2), params, batch)
    assert split == pytest.approx(whole, rel=1e-5)  # loss, weight_sum and grad_norm
    for want, got in zip(jax.tree.leaves(whole_params), jax.tree.leaves(split_params)):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_microbatch_means_average_each_microbatch_loss_as_transformers_trainer():
    """The Trainer's gradient accumulation: each microbatch's per-token mean loss divided by the
    number of microbatches, its gradient accumulated; the optimizer then sees that sum."""
    factor, count = "NUM_REAL_TARGET_TOKENS", 2
    params, batch = _initial_params(), _batch()
    model = EncoderDecoderModel(CONFIG, LossOptions(loss_normalizing_factor=factor))
    # Each data shard keeps its rows in every microbatch: rows b * count + i form microbatch i.
    microbatches = [{key: value[i::count] for key, value in batch.items()} for i in range(count)]
    loss_and_grad = jax.jit(jax.value_and_grad(lambda p, m: model.loss_fn(p, m, None)[0]))
    losses, grads = zip(*(loss_and_grad(params, m) for m in microbatches))
    grad = jax.tree.map(lambda *g: sum(g) / count, *grads)
    optimizer = make_optimizer(OptimizerSettings(learning_rate=1e-2))
    updates, _ = jax.jit(optimizer.update)(grad, optimizer.init(params), params)
    expected = optax.apply_updates(params, updates)
    found_params, found = _one_step(_trainer(factor, count, microbatch_means=True), params, batch)
    assert found["loss"] == pytest.approx(float(np.mean(losses)), rel=1e-5)
    assert found["grad_norm"] == pytest.approx(float(optax.tree.norm(grad)), rel=1e-5)
    for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(found_params)):
        np.testing.assert_allclose(got, np.asarray(want), atol=1e-6)
    _, whole = _one_step(_trainer(factor, 1), params, batch)
    assert abs(whole["loss"] - found["loss"]) > 1e-4  # the microbatches' lengths differ


def test_non_empty_sequences_counts_packed_segments():
    unpacked = {"decoder_loss_weights": jnp.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]])}
    assert int(_non_empty_sequences(unpacked)) == 2
    packed = {"decoder_loss_weights": jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]]),
              "decoder_segment_ids": jnp.array([[1, 2, 2, 0], [1, 1, 0, 0]])}
    assert int(_non_empty_sequences(packed)) == 3


def test_fresh_state_is_the_seeded_initialisation_placed_by_the_rules():
    trainer = Trainer(EncoderDecoderModel(CONFIG), make_optimizer(OptimizerSettings()),
                      _one_device(), seed=7)
    state = trainer.create_state(None)
    expected = EncoderDecoderModel(CONFIG).init_params(jax.random.PRNGKey(7))
    for (path, value), want, sharding in zip(
            jax.tree_util.tree_leaves_with_path(state.params), jax.tree.leaves(expected),
            jax.tree.leaves(trainer.params_shardings)):
        # jit fuses the initialisers' scaling, so values agree to rounding, not bit for bit.
        np.testing.assert_allclose(np.asarray(value), np.asarray(want), rtol=1e-6, atol=1e-7,
                                   err_msg=str(path))
        assert value.sharding.is_equivalent_to(sharding, value.ndim), path
    assert int(state.step) == 0


def test_steps_in_one_execution_equal_steps_one_by_one():
    """Same parameters, optimizer state and per-step metrics as the one-step program, dropout
    included (it is keyed by the step count, which the loop carries); 3 steps and then 1 of 4
    slots run one program."""
    config = CONFIG.replace(dropout_rate=0.1)
    single = _trainer("NUM_REAL_TARGET_TOKENS", 2, config)
    trainer = _trainer("NUM_REAL_TARGET_TOKENS", 2, config, steps_per_execution=4)
    params = jax.tree.map(np.asarray, EncoderDecoderModel(config).init_params(jax.random.key(0)))
    batches = [_batch(seed=seed) for seed in range(4)]
    one_by_one, losses = single.create_state(params), []
    for batch in batches:
        one_by_one, metrics = single.train(one_by_one, [batch])
        losses.append(float(metrics.fetch()["loss"][0]))
    compiled = []

    def record_compile(event, _, fun_name="", **kwargs):
        if event.endswith("backend_compile_duration") and fun_name == "jit(_steps)":
            compiled.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(record_compile)
    try:
        together, first = trainer.train(trainer.create_state(params), batches[:3])
        together, last = trainer.train(together, batches[3:])
        first, last = first.fetch(), last.fetch()
    finally:
        jax.monitoring.unregister_event_duration_listener(record_compile)
    assert len(compiled) == 1
    assert int(together.step) == int(one_by_one.step) == 4
    assert first["loss"].shape == (3,) and last["loss"].shape == (1,)
    np.testing.assert_allclose([*np.asarray(first["loss"]), *np.asarray(last["loss"])], losses,
                               rtol=1e-5)
    assert len(set(losses)) == 4
    for want, got in zip(jax.tree.leaves(one_by_one), jax.tree.leaves(together)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="5 batches for 1 to 4"):
        trainer.train(together, [batches[0]] * 5)


def test_steps_per_execution_must_be_positive():
    with pytest.raises(UserInputError, match="STEPS_PER_EXECUTION=0"):
        Trainer(EncoderDecoderModel(CONFIG), make_optimizer(OptimizerSettings()), _one_device(),
                seed=0, steps_per_execution=0)


def test_lowered_train_programs_are_the_ones_the_steps_run():
    """One step per execution lowers the single step, more the loop over stacked batches; the
    compiled loop gives the state `train` gives, and bad batches fail as they do there."""
    params = jax.tree.map(np.asarray, EncoderDecoderModel(CONFIG).init_params(jax.random.key(0)))
    batches = [_batch(seed=seed) for seed in range(2)]
    rows = batches[0]["encoder_input_tokens"].shape
    single = _trainer("NUM_REAL_TARGET_TOKENS", 2)
    lowered = single.lower_train(single.create_state(params), batches[:1])
    assert lowered.args_info[0][1]["encoder_input_tokens"].shape == rows
    assert lowered.compile().memory_analysis().temp_size_in_bytes > 0
    trainer = _trainer("NUM_REAL_TARGET_TOKENS", 2, steps_per_execution=3)
    lowered = trainer.lower_train(trainer.create_state(params), batches)
    assert lowered.args_info[0][1]["encoder_input_tokens"].shape == (3, *rows)
    slots = batches + batches[-1:]
    stacked = trainer.partitioner.host_to_global(
        {key: np.stack([b[key] for b in slots]) for key in batches[0]}, stacked=True)
    with trainer.partitioner.active():
        from_lowered, _ = lowered.compile()(trainer.create_state(params), stacked, np.int32(2))
    stepped, _ = trainer.train(trainer.create_state(params), batches)
    assert int(from_lowered.step) == 2
    for want, got in zip(jax.tree.leaves(stepped), jax.tree.leaves(from_lowered)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    with pytest.raises(UserInputError, match="BATCH_SIZE=3"):
        trainer.lower_train(trainer.create_state(params), [_batch(rows=3)])
