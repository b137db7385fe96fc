"""The partitioned train step and the evaluation loop, jitted with explicit shardings.

Parameters and the whole optimizer state are sharded by the logical axis rules over a
("data", "model") mesh, batches over "data". Every jitted call runs inside the mesh and the rules,
so the network's activation constraints take effect. Dropout randomness is a function of
(seed, step) alone, which makes a resumed run repeat the uninterrupted one exactly.

`train_steps` runs up to STEPS_PER_EXECUTION steps as one program (a loop over stacked batches),
with the same updates as one step at a time. XLA:CPU allocates a program's scratch memory afresh
at every execution and the kernel zeroes each page on first touch, about a tenth of a small
model's step; one execution for several steps pays that once. The number of steps is an argument
of the program, not part of its shape, so the shorter groups before an evaluation or a checkpoint
run the same compiled program.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ct5x import optimizers, partitioning
from ct5x.errors import UserInputError
from ct5x.models import DecodingOptions, EncoderDecoderModel

Batch = dict[str, np.ndarray]
# What every training step reports: float32 scalars.
STEP_METRICS = ("loss", "weight_sum", "grad_norm")


class TrainState(flax.struct.PyTreeNode):
    """What a step changes: the step count, the parameters and the optimizer state."""

    step: jax.Array
    params: Any
    opt_state: Any


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


class Trainer:
    """Owns the mesh, the shardings and the compiled train, loss and decoding functions."""

    def __init__(self, model: EncoderDecoderModel, optimizer: optax.GradientTransformation,
                 mesh: Mesh, rules: partitioning.LogicalRules, seed: int,
                 num_microbatches: int = 1, learning_rate: optax.Schedule | None = None,
                 steps_per_execution: int = 1, microbatch_means: bool = False):
        if num_microbatches < 1:
            raise UserInputError(f"NUM_MICROBATCHES={num_microbatches}: must be at least 1")
        if steps_per_execution < 1:
            raise UserInputError(
                f"STEPS_PER_EXECUTION={steps_per_execution}: must be at least 1"
            )
        self.model, self.optimizer, self.mesh, self.rules = model, optimizer, mesh, rules
        self.seed, self.num_microbatches = seed, num_microbatches
        # True: the mean of each microbatch's own normalised loss, as transformers' Trainer
        # accumulates gradients (and DDP averages devices); False: the whole batch's loss.
        self.microbatch_means = microbatch_means
        self.steps_per_execution = steps_per_execution
        # For logging only: the optimizer applies its own schedule.
        self.learning_rate = learning_rate or optax.constant_schedule(float("nan"))
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.batch_sharding = partitioning.data_sharding(mesh)
        self.params_shardings = partitioning.logical_to_mesh_shardings(
            model.params_logical_axes(), mesh, rules
        )
        self.params_shapes = jax.eval_shape(model.init_params, jax.random.PRNGKey(0))
        opt_shapes = jax.eval_shape(optimizer.init, self.params_shapes)
        self.state_shardings = TrainState(
            step=self.replicated,
            params=self.params_shardings,
            opt_state=optimizers.state_shardings(opt_shapes, self.params_shapes,
                                                 self.params_shardings),
        )
        self.state_shapes = TrainState(
            step=jax.ShapeDtypeStruct((), jnp.int32), params=self.params_shapes,
            opt_state=opt_shapes,
        )
        self._train_step = jax.jit(
            self._step, in_shardings=(self.state_shardings, self.batch_sharding),
            out_shardings=(self.state_shardings, self.replicated), donate_argnums=0,
        )
        # [steps, batch, ...]: every step's rows sharded over "data" as one step's are.
        self.stacked_batch_sharding = NamedSharding(
            mesh, PartitionSpec(None, *self.batch_sharding.spec)
        )
        self._train_steps = jax.jit(
            self._steps,
            in_shardings=(self.state_shardings, self.stacked_batch_sharding, self.replicated),
            out_shardings=(self.state_shardings, self.replicated), donate_argnums=0,
        )
        self._score = jax.jit(model.score_batch, in_shardings=(self.params_shardings,
                                                               self.batch_sharding),
                              out_shardings=self.replicated)
        self._predict = jax.jit(model.predict_batch, static_argnames="options",
                                out_shardings=self.replicated)

    def active(self):
        """The mesh and the axis rules, so activation constraints apply while tracing."""
        return partitioning.mesh_and_rules(self.mesh, self.rules)

    # ---- state -------------------------------------------------------------------------------

    def create_state(self, params: Any | None) -> TrainState:
        """A step-0 state from given (host) parameters, or freshly initialised ones."""
        def init(params):
            return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=self.optimizer.init(params))

        if params is None:
            params = self.host_initial_params()
        with self.active():
            params = jax.device_put(params, self.params_shardings)
            return jax.jit(init, out_shardings=self.state_shardings)(params)

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

    def state_to_tree(self, state: TrainState) -> dict:
        """T5X's saved layout: {"target": params, "state": {"step", "param_states"}}."""
        return {
            "target": state.params,
            "state": {"step": state.step,
                      "param_states": serialization.to_state_dict(state.opt_state)},
        }

    def abstract_tree(self) -> dict:
        """The saved layout as ShapeDtypeStructs carrying this run's shardings."""
        def spec(shape, sharding):
            return jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding)

        abstract = jax.tree.map(spec, self.state_shapes, self.state_shardings)
        return self.state_to_tree(abstract)

    def tree_to_state(self, tree: dict) -> TrainState:
        opt_state = serialization.from_state_dict(self.state_shapes.opt_state,
                                                  tree["state"]["param_states"])
        return TrainState(step=tree["state"]["step"], params=tree["target"], opt_state=opt_state)

    # ---- training ----------------------------------------------------------------------------

    def _gradients(self, params: Any, batch: dict, rng: jax.Array):
        grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
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

    def global_batch(self, host_batch: Batch, sharding: NamedSharding | None = None
                     ) -> dict[str, jax.Array]:
        """This host's rows -> one global array per feature, sharded over "data"."""
        return {
            key: jax.make_array_from_process_local_data(sharding or self.batch_sharding, value)
            for key, value in host_batch.items()
        }

    def _check_rows(self, host_batch: Batch) -> None:
        data_shards = self.mesh.shape["data"] * self.num_microbatches
        rows = len(host_batch["encoder_input_tokens"]) * jax.process_count()
        if rows % data_shards:
            raise UserInputError(
                f"BATCH_SIZE={rows} does not split into {self.num_microbatches} microbatches "
                f"over {self.mesh.shape['data']} data-parallel devices"
            )

    def train_step(self, state: TrainState, host_batch: Batch) -> tuple[TrainState, dict]:
        with self.active():
            return self._train_step(*self._step_arguments(state, host_batch))

    def _step_arguments(self, state: TrainState, host_batch: Batch) -> tuple:
        """The single-step program's arguments: the state and the checked, sharded batch."""
        self._check_rows(host_batch)
        return state, self.global_batch(host_batch)

    def train_steps(self, state: TrainState, host_batches: list[Batch]
                    ) -> tuple[TrainState, dict]:
        """1 to STEPS_PER_EXECUTION consecutive steps in one execution of one program (whatever
        their number). Each metric comes back on the host as [len(host_batches)]: one transfer
        per execution, which waits for it (the caller reads every step's loss anyway)."""
        with self.active():
            state, metrics = self._train_steps(*self._steps_arguments(state, host_batches))
        return state, {name: values[:len(host_batches)]
                       for name, values in jax.device_get(metrics).items()}

    def _steps_arguments(self, state: TrainState, host_batches: list[Batch]) -> tuple:
        """The loop program's arguments: the batches stacked into STEPS_PER_EXECUTION slots
        (the unused ones repeat the last batch and are not run) and their number."""
        if not 1 <= len(host_batches) <= self.steps_per_execution:
            raise ValueError(f"{len(host_batches)} batches for 1 to {self.steps_per_execution} "
                             "steps per execution")
        for host_batch in host_batches:
            self._check_rows(host_batch)
        slots = host_batches + host_batches[-1:] * (self.steps_per_execution - len(host_batches))
        stacked = {key: np.stack([batch[key] for batch in slots]) for key in host_batches[0]}
        return (state, self.global_batch(stacked, self.stacked_batch_sharding),
                np.int32(len(host_batches)))

    def lower_train(self, state: TrainState, host_batches: list[Batch]) -> jax.stages.Lowered:
        """The program that trains on these batches, lowered for inspection (its HLO, or XLA's
        memory analysis once compiled): `train_step`'s with one step per execution, else
        `train_steps`'."""
        with self.active():
            if self.steps_per_execution == 1:
                if len(host_batches) != 1:
                    raise ValueError("one batch per execution: STEPS_PER_EXECUTION is 1")
                return self._train_step.lower(*self._step_arguments(state, host_batches[0]))
            return self._train_steps.lower(*self._steps_arguments(state, host_batches))

    # ---- evaluation --------------------------------------------------------------------------

    def _host_rows(self, batch: Batch) -> Batch:
        """This host's slice of a global batch that every host holds whole."""
        hosts, host = jax.process_count(), jax.process_index()
        size = len(batch["encoder_input_tokens"]) // hosts
        return {key: value[host * size:(host + 1) * size] for key, value in batch.items()}

    def score(self, params: Any, batch: Batch) -> np.ndarray:
        """Per-example target log-likelihood of a global batch every host holds."""
        with self.active():
            scores = self._score(params, self.global_batch(self._host_rows(batch)))
        return np.asarray(scores)

    def predict(self, params: Any, batch: Batch, options: DecodingOptions) -> np.ndarray:
        """Decoded tokens of a global batch every host holds."""
        with self.active():
            inputs = {"encoder_input_tokens": batch["encoder_input_tokens"]}
            tokens = self._predict(params, self.global_batch(self._host_rows(inputs)),
                                   options=options)
        return np.asarray(tokens)
