"""The training step and the optimizer, and the loss and decoding calls evaluation needs.

The Partitioner gives the mesh, the shardings, the data layout and the jit; the Trainer says what
is computed. Parameters and the whole optimizer state are sharded by the logical axis rules,
batches over "data". Dropout randomness is a function of (seed, step) alone, which makes a resumed
run repeat the uninterrupted one exactly.

`train` runs 1 to STEPS_PER_EXECUTION steps in one execution. With more than one step per
execution the program is a loop over stacked batches, with the same updates as one step at a time:
XLA:CPU allocates a program's scratch memory afresh at every execution and the kernel zeroes each
page on first touch, about a tenth of a small model's step; one execution for several steps pays
that once. The number of steps is an argument of the program, not part of its shape, so the
shorter groups before an evaluation or a checkpoint run the same compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ct5x import optimizers
from ct5x.errors import UserInputError
from ct5x.models import DecodingOptions, EncoderDecoderModel
from ct5x.packing import Batch
from ct5x.partitioning import DataLayout, Partitioner
from ct5x.train_state import TrainState

# What every training step reports: float32 scalars.
STEP_METRICS = ("loss", "weight_sum", "grad_norm")


def _non_empty_sequences(batch: dict[str, jax.Array]) -> jax.Array:
    """Number of target sequences with loss weight (packed rows count their segments)."""
    weights = batch["decoder_loss_weights"] > 0
    segments = batch.get("decoder_segment_ids")
    if segments is None:
        return jnp.sum(jnp.any(weights, axis=-1))
    ids = jnp.arange(1, segments.shape[-1] + 1)
    present = jnp.any((segments[..., None] == ids) & weights[..., None], axis=-2)
    return jnp.sum(present)


def microbatch_weight(factor: str | float, microbatch: dict, batch: dict, count: int) -> jax.Array:
    """The share of one microbatch's normalised loss in the whole batch's normalised loss.

    Accumulating `weight * gradient` over microbatches gives exactly the whole batch's gradient
    for every loss-normalizing factor. (`Trainer(microbatch_means=True)` weighs each microbatch
    1 / count instead, as the study's Hugging Face Trainer did.)
    """
    if factor == "NUM_REAL_TARGET_TOKENS":
        # The loss divides by the sum of the weights (at least 1), so the shares use it too.
        tokens = jnp.sum(microbatch["decoder_loss_weights"])
        return jnp.maximum(tokens, 1) / jnp.maximum(jnp.sum(batch["decoder_loss_weights"]), 1)
    if factor == "NUM_TOTAL_TARGET_TOKENS":
        return jnp.asarray(1.0 / count)
    if factor == "AVERAGE_PER_SEQUENCE":
        return jnp.maximum(_non_empty_sequences(microbatch), 1) / jnp.maximum(
            _non_empty_sequences(batch), 1
        )
    return jnp.asarray(1.0)


def training_data_layout(partitioner: Partitioner, batch_size: int,
                         num_microbatches: int) -> DataLayout:
    """This process's data shard of every training batch of `batch_size` rows; one line if they
    do not split into NUM_MICROBATCHES microbatches over the data-parallel devices."""
    data = partitioner.mesh.shape["data"]
    if batch_size % (data * num_microbatches):
        raise UserInputError(
            f"BATCH_SIZE={batch_size} does not split into {num_microbatches} "
            f"microbatches over {data} data-parallel devices"
        )
    return partitioner.get_data_layout(batch_size)


@dataclasses.dataclass(frozen=True)
class ExecutionMetrics:
    """Every step's metrics of one execution, still on the devices ([slots] arrays; slots past
    `count` were not run). `fetch` brings them to the host in one transfer, which waits for the
    execution: the loop calls it once the next execution is on its way."""

    values: dict[str, jax.Array]
    count: int

    def fetch(self) -> dict[str, np.ndarray]:
        return {name: values[:self.count] for name, values in jax.device_get(self.values).items()}


class Trainer:
    """Keeps the training step and the optimizer; its Partitioner places and compiles them."""

    def __init__(self, model: EncoderDecoderModel, optimizer: optax.GradientTransformation,
                 partitioner: Partitioner, seed: int, num_microbatches: int = 1,
                 learning_rate: optax.Schedule | None = None, steps_per_execution: int = 1,
                 microbatch_means: bool = False, packed_examples: int | None = None):
        if num_microbatches < 1:
            raise UserInputError(f"NUM_MICROBATCHES={num_microbatches}: must be at least 1")
        if steps_per_execution < 1:
            raise UserInputError(
                f"STEPS_PER_EXECUTION={steps_per_execution}: must be at least 1"
            )
        self.model, self.optimizer, self.partitioner = model, optimizer, partitioner
        self.seed, self.num_microbatches = seed, num_microbatches
        # True: the mean of each microbatch's own normalised loss, as transformers' Trainer
        # accumulates gradients (and DDP averages devices); False: the whole batch's loss.
        self.microbatch_means = microbatch_means
        self.steps_per_execution = steps_per_execution
        # Training batches are `ct5x.packing`'s rows of this many examples (None: unpacked, or
        # SeqIO's packed stream). Packing keeps the step's examples whole, so not microbatches.
        if packed_examples is not None and num_microbatches != 1:
            raise ValueError("packed batches with several microbatches")
        self.packed_examples = packed_examples
        # For logging only: the optimizer applies its own schedule.
        self.learning_rate = learning_rate or optax.constant_schedule(float("nan"))
        self.params_shardings = partitioner.logical_to_mesh_sharding(model.params_logical_axes())
        self.params_shapes = model.params_shapes
        opt_shapes = jax.eval_shape(optimizer.init, self.params_shapes)
        replicated = partitioner.replicated
        self.state_shardings = TrainState(
            step=replicated,
            params=self.params_shardings,
            opt_state=optimizers.state_shardings(opt_shapes, self.params_shapes,
                                                 self.params_shardings),
        )
        self.state_shapes = TrainState(
            step=jax.ShapeDtypeStruct((), jnp.int32), params=self.params_shapes,
            opt_state=opt_shapes,
        )
        if steps_per_execution == 1:
            self._train = partitioner.partition(
                self._one_step, in_shardings=(self.state_shardings, partitioner.data_sharding),
                out_shardings=(self.state_shardings, replicated), donate_argnums=(0,))
        else:
            self._train = partitioner.partition(
                self._steps, in_shardings=(self.state_shardings,
                                           partitioner.stacked_data_sharding, replicated),
                out_shardings=(self.state_shardings, replicated), donate_argnums=(0,))
        self._score = partitioner.partition(
            model.score_batch, in_shardings=(self.params_shardings, partitioner.data_sharding),
            out_shardings=replicated)
        self._predict = partitioner.partition(model.predict_batch, static_argnames=("options",),
                                              out_shardings=replicated)

    # ---- state -------------------------------------------------------------------------------

    def create_state(self, params: Any | None) -> TrainState:
        """A step-0 state from given (host) parameters, or freshly initialised ones."""
        def init(params):
            return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=self.optimizer.init(params))

        if params is None:
            params = self.host_initial_params()
        params = self.partitioner.place(params, self.params_shardings)
        return self.partitioner.partition(init, out_shardings=self.state_shardings)(params)

    def host_initial_params(self) -> Any:
        """Fresh parameters from the run's seed, computed by the host's CPU.

        XLA:GPU compiles a whole network's initialisers (its unrolled random-number code) very
        slowly: the t5_1_1-base initialiser had not compiled after 190 s on an H200 (jax 0.11.2),
        and -large not after 429 s, where XLA:CPU takes seconds. Every host computes the same
        values from the seed; `create_state` then places them by the rules.
        """
        with jax.default_device(jax.local_devices(backend="cpu")[0]):
            initialise = jax.jit(self.model.init_params)
            return jax.device_get(initialise(jax.random.PRNGKey(self.seed)))

    # ---- training ----------------------------------------------------------------------------

    def _gradients(self, params: Any, batch: dict, rng: jax.Array):
        grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
        if self.packed_examples is not None:
            grad_fn = functools.partial(grad_fn, packed_examples=self.packed_examples)
        if self.num_microbatches == 1:
            (_, aux), grads = grad_fn(params, batch, rng)
            return grads, aux["loss"], aux["weight_sum"]
        count = self.num_microbatches
        factor = self.model.loss_options.loss_normalizing_factor
        # [batch // count, count, ...]: each data shard keeps its rows in every microbatch.
        split = jax.tree.map(
            lambda x: x.reshape(x.shape[0] // count, count, *x.shape[1:]), batch
        )

        def accumulate(carry, index):
            grads_sum, loss_sum, weight_sum = carry
            microbatch = jax.tree.map(lambda x: x[:, index], split)
            (_, aux), grads = grad_fn(params, microbatch, jax.random.fold_in(rng, index))
            share = (jnp.asarray(1.0 / count) if self.microbatch_means
                     else microbatch_weight(factor, microbatch, batch, count))
            grads_sum = jax.tree.map(lambda total, g: total + share * g, grads_sum, grads)
            return (grads_sum, loss_sum + share * aux["loss"],
                    weight_sum + aux["weight_sum"]), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (grads, loss, weights), _ = jax.lax.scan(
            accumulate, (zeros, jnp.zeros(()), jnp.zeros(())), jnp.arange(count)
        )
        return grads, loss, weights

    def _step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(jax.random.PRNGKey(self.seed), state.step)
        grads, loss, weight_sum = self._gradients(state.params, batch, rng)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(zip(STEP_METRICS, (loss, weight_sum, optax.tree.norm(grads))))
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    def _one_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        """`_step` with each metric as a [1] array, as `_steps` gives them."""
        state, metrics = self._step(state, batch)
        return state, {name: value[None] for name, value in metrics.items()}

    def _steps(self, state: TrainState, batches: dict, count: jax.Array
               ) -> tuple[TrainState, dict]:
        """`_step` over the first `count` of `batches`' [slots] leading axis; each metric comes
        back [slots], zero past `count`."""
        slots = len(next(iter(batches.values())))

        def one_step(index, carry):
            state, metrics = carry
            state, step_metrics = self._step(state, {k: v[index] for k, v in batches.items()})
            return state, {name: metrics[name].at[index].set(step_metrics[name])
                           for name in STEP_METRICS}

        metrics = {name: jnp.zeros(slots, jnp.float32) for name in STEP_METRICS}
        return jax.lax.fori_loop(0, count, one_step, (state, metrics))

    def data_layout(self, batch_size: int) -> DataLayout:
        return training_data_layout(self.partitioner, batch_size, self.num_microbatches)

    def _check_rows(self, host_batch: Batch) -> None:
        self.data_layout(self.partitioner.global_rows(len(host_batch["encoder_input_tokens"])))

    def train(self, state: TrainState, host_batches: list[Batch]
              ) -> tuple[TrainState, ExecutionMetrics]:
        """1 to STEPS_PER_EXECUTION consecutive steps, in one execution of one compiled program
        (whatever their number), on this process's data shard of each batch."""
        state, metrics = self._train(*self._arguments(state, host_batches))
        return state, ExecutionMetrics(metrics, len(host_batches))

    def compile_train_ahead(self, state: Any, host_batches: list[Batch]) -> None:
        """Starts compiling `train`'s program for batches of these shapes in the background;
        `state` may be abstract (`ct5x.compile_ahead.abstract`)."""
        self._train.compile_ahead(*self._arguments(state, host_batches))

    def lower_train(self, state: TrainState, host_batches: list[Batch]) -> jax.stages.Lowered:
        """The program `train` runs on these batches, lowered for inspection (its HLO, or XLA's
        memory analysis once compiled)."""
        return self._train.lower(*self._arguments(state, host_batches))

    def _arguments(self, state: TrainState, host_batches: list[Batch]) -> tuple:
        """The program's arguments: the state and the checked batch as global arrays; with
        several steps per execution, the batches stacked into STEPS_PER_EXECUTION slots (the
        unused ones repeat the last batch and are not run) and their number."""
        if not 1 <= len(host_batches) <= self.steps_per_execution:
            raise ValueError(f"{len(host_batches)} batches for 1 to {self.steps_per_execution} "
                             "steps per execution")
        for host_batch in host_batches:
            self._check_rows(host_batch)
        if self.steps_per_execution == 1:
            return state, self.partitioner.host_to_global(host_batches[0])
        slots = host_batches + host_batches[-1:] * (self.steps_per_execution - len(host_batches))
        stacked = {key: np.stack([batch[key] for batch in slots]) for key in host_batches[0]}
        return (state, self.partitioner.host_to_global(stacked, stacked=True),
                np.int32(len(host_batches)))

    # ---- evaluation --------------------------------------------------------------------------

    def _global(self, batch: Batch) -> dict[str, jax.Array]:
        return self.partitioner.host_to_global(self.partitioner.host_rows(batch))

    @staticmethod
    def _inputs(batch: Batch) -> Batch:
        return {"encoder_input_tokens": batch["encoder_input_tokens"]}

    def score(self, params: Any, batch: Batch) -> np.ndarray:
        """Each row's target log-likelihood (its examples' sum, packed) for a global batch every
        process holds."""
        return np.asarray(self._score(params, self._global(batch)))

    def predict(self, params: Any, batch: Batch, options: DecodingOptions) -> np.ndarray:
        """Decoded tokens of a global batch every process holds."""
        return np.asarray(self._predict(params, self._global(self._inputs(batch)),
                                        options=options))

    def compile_score_ahead(self, params: Any, batch: Batch) -> None:
        """Starts compiling `score`'s program for batches shaped as `batch` in the background;
        `params` may be abstract (`ct5x.compile_ahead.abstract`)."""
        self._score.compile_ahead(params, self._global(batch))

    def compile_predict_ahead(self, params: Any, batch: Batch, options: DecodingOptions) -> None:
        """Starts compiling `predict`'s program for batches shaped as `batch` in the background;
        `params` may be abstract."""
        self._predict.compile_ahead(params, self._global(self._inputs(batch)), options=options)
