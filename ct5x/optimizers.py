"""Adafactor on optax in the two flavours the study meets, its schedules, and its state shardings.

- `hf`: transformers' `Adafactor(scale_parameter=False, relative_step=False, warmup_init=False)`,
  what the paper's Hugging Face runs used: second moments decayed by 1 - t^-0.8, factored for every
  matrix, update RMS clipped at 1.0, no parameter scaling, no momentum.
- `t5x`: T5X's defaults: the same decay, factored only where both dimensions reach 128, update
  clipping 1.0 and multiplication by the parameter's RMS (at least 1e-3).

The learning rate follows a schedule: constant (the paper's), linear warm-up to the rate, or T5X's
reciprocal square root decay (constant during warm-up, then rate * sqrt(warmup / step)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from ct5x.errors import UserInputError

FLAVOURS = ("hf", "t5x")
SCHEDULES = ("constant", "linear_warmup", "rsqrt_decay")


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """Which Adafactor and which learning-rate schedule (bound in gin/runs/finetune.gin)."""

    flavour: str = "hf"
    learning_rate: float = 1e-4
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_rate: float = 0.8
    clipping_threshold: float | None = 1.0
    epsilon: float = 1e-30
    # None: 1 for `hf` (every matrix factored), 128 for `t5x`.
    min_dim_size_to_factor: int | None = None
    weight_decay_rate: float | None = None

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise UserInputError(
                f"OptimizerSettings.flavour={self.flavour!r}: expected one of {', '.join(FLAVOURS)}"
            )
        if self.schedule not in SCHEDULES:
            raise UserInputError(
                f"OptimizerSettings.schedule={self.schedule!r}: expected one of "
                f"{', '.join(SCHEDULES)}"
            )
        if not self.learning_rate > 0:
            raise UserInputError(
                f"OptimizerSettings.learning_rate={self.learning_rate}: must be positive"
            )
        if self.warmup_steps < 0:
            raise UserInputError(
                f"OptimizerSettings.warmup_steps={self.warmup_steps}: must be zero or more"
            )
        if self.schedule == "rsqrt_decay" and self.warmup_steps < 1:
            raise UserInputError("OptimizerSettings.schedule='rsqrt_decay' needs warmup_steps >= 1")


def make_schedule(settings: OptimizerSettings) -> optax.Schedule:
    """Learning rate as a function of the (0-based) step count."""
    rate, warmup = settings.learning_rate, settings.warmup_steps
    if settings.schedule == "constant":
        return optax.constant_schedule(rate)
    if settings.schedule == "linear_warmup":
        if warmup == 0:
            return optax.constant_schedule(rate)
        return optax.join_schedules(
            [optax.linear_schedule(rate / warmup, rate, warmup - 1), optax.constant_schedule(rate)],
            [warmup],
        )

    def rsqrt_decay(count: jax.Array) -> jax.Array:
        step = jnp.maximum(count + 1, warmup).astype(jnp.float32)
        return rate * jnp.sqrt(warmup / step)

    return rsqrt_decay


def make_optimizer(settings: OptimizerSettings) -> optax.GradientTransformation:
    """Adafactor of the chosen flavour; optax applies the schedule to the step count."""
    min_dim = settings.min_dim_size_to_factor
    if min_dim is None:
        min_dim = 1 if settings.flavour == "hf" else 128
    return optax.adafactor(
        learning_rate=make_schedule(settings),
        min_dim_size_to_factor=min_dim,
        decay_rate=settings.decay_rate,
        clipping_threshold=settings.clipping_threshold,
        multiply_by_parameter_scale=settings.flavour == "t5x",
        eps=settings.epsilon,
        weight_decay_rate=settings.weight_decay_rate,
    )


def _leaf_spec(leaf_shape: tuple[int, ...], param_shape: tuple[int, ...],
               param_spec: PartitionSpec) -> PartitionSpec:
    """The spec of one optimizer-state leaf that belongs to a parameter.

    Full-shape moments share the parameter's spec; a factored moment (one axis averaged away)
    keeps the specs of the axes it kept; anything else (placeholders) is replicated.
    """
    axes = tuple(param_spec) + (None,) * (len(param_shape) - len(param_spec))
    if leaf_shape == param_shape:
        return PartitionSpec(*axes)
    if len(leaf_shape) == len(param_shape) - 1:
        for dropped in range(len(param_shape)):
            if param_shape[:dropped] + param_shape[dropped + 1:] == leaf_shape:
                return PartitionSpec(*(axes[:dropped] + axes[dropped + 1:]))
    return PartitionSpec()


def state_shardings(state_shapes: Any, params_shapes: Any, params_shardings: Any) -> Any:
    """`NamedSharding`s for an optimizer state, derived from the parameters' shardings.

    optax keeps per-parameter state in trees shaped like the parameters (Adafactor: `v_row`,
    `v_col`, `v`); each such tree is sharded leaf by leaf after its parameter, which covers the
    factored moments that optax cannot shard by itself. Counters are replicated.
    """
    params_def = jax.tree.structure(params_shapes)
    mesh = jax.tree.leaves(params_shardings)[0].mesh
    replicated = NamedSharding(mesh, PartitionSpec())

    def is_param_tree(node: Any) -> bool:
        return jax.tree.structure(node) == params_def

    def shard(node: Any) -> Any:
        if not is_param_tree(node):
            return replicated
        return jax.tree.map(
            lambda leaf, param, sharding: NamedSharding(
                mesh, _leaf_spec(tuple(leaf.shape), tuple(param.shape), sharding.spec)
            ),
            node, params_shapes, params_shardings,
        )

    return jax.tree.map(shard, state_shapes, is_leaf=is_param_tree)
