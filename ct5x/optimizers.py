"""The optimizers the study meets, on optax: Adafactor in two flavours, AdamW, their schedules,
global gradient-norm clipping, and the shardings of their states.

- `hf`: transformers' `Adafactor(scale_parameter=False, relative_step=False, warmup_init=False)`,
  what the paper's Hugging Face runs used: second moments decayed by 1 - t^-0.8, factored for every
  matrix, update RMS clipped at 1.0, no parameter scaling, no momentum.
- `t5x`: T5X's defaults: the same decay, factored only where both dimensions reach 128, update
  clipping 1.0 and multiplication by the parameter's RMS (at least 1e-3).
- `adamw`: what transformers 4.22's Trainer runs when no optimizer is named (its own AdamW:
  betas 0.9/0.999, epsilon 1e-8 added before the bias correction, weight decay 0), as the study's
  NCBI runs did by accident.

`max_grad_norm` clips the global gradient norm before the optimizer sees the gradients, as the
Trainer's `max_grad_norm=1.0` does (norm + 1e-6 in the denominator, as torch's
`clip_grad_norm_`); under the `t5x` flavour it follows T5X's `global_norm_clip_threshold`.

Schedules take the number of updates already made (0 for the first). `constant`, `linear_warmup`
and `rsqrt_decay` are T5X's `create_learning_rate_scheduler` with factors `constant`,
`constant * linear_warmup` and `constant * rsqrt_normalized_decay` (so LEARNING_RATE is the rate
at the end of warm-up), floored at its `min_learning_rate` 1e-8; `linear_decay` is transformers'
`get_linear_schedule_with_warmup` (linear warm-up, then linear decay to 0 at the last step).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from ct5x.errors import UserInputError

FLAVOURS = ("hf", "t5x", "adamw")
SCHEDULES = ("constant", "linear_warmup", "rsqrt_decay", "linear_decay")
# T5X's create_learning_rate_scheduler never goes below this.
T5X_MIN_LEARNING_RATE = 1e-8
# torch.nn.utils.clip_grad_norm_ divides max_norm by (norm + this).
TORCH_CLIP_EPSILON = 1e-6


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """Which optimizer, schedule and clipping (bound in gin/runs/finetune.gin)."""

    flavour: str = "hf"
    learning_rate: float = 1e-4
    schedule: str = "constant"
    warmup_steps: int = 0
    # Global gradient-norm clipping before the optimizer (None: off); the Trainer's default 1.0.
    max_grad_norm: float | None = 1.0
    # Adafactor.
    decay_rate: float = 0.8
    clipping_threshold: float | None = 1.0
    epsilon: float = 1e-30
    # None: 1 for `hf` (every matrix factored), 128 for `t5x`.
    min_dim_size_to_factor: int | None = None
    # Adafactor's (T5X, optax) or AdamW's decoupled weight decay; None: none.
    weight_decay_rate: float | None = None
    # AdamW: transformers 4.22's TrainingArguments defaults.
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8

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
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise UserInputError(
                f"MAX_GRAD_NORM={self.max_grad_norm}: must be positive, or None for no clipping"
            )


def make_schedule(settings: OptimizerSettings, total_steps: int | None = None) -> optax.Schedule:
    """Learning rate as a function of the number of updates made; `total_steps` (the run's
    training steps) is needed by `linear_decay` only."""
    rate, warmup = settings.learning_rate, settings.warmup_steps
    if settings.schedule == "linear_decay":
        if total_steps is None:
            raise UserInputError("LR_SCHEDULE='linear_decay' needs the run's number of steps")

        def linear_decay(count: jax.Array) -> jax.Array:
            step = jnp.asarray(count, jnp.float32)
            warming = step / max(1, warmup)
            decaying = jnp.maximum(0.0, (total_steps - step) / max(1, total_steps - warmup))
            return rate * jnp.where(step < warmup, warming, decaying)

        return linear_decay

    def t5x_schedule(count: jax.Array) -> jax.Array:
        step = jnp.asarray(count, jnp.float32)
        value = jnp.asarray(rate, jnp.float32)
        if settings.schedule == "linear_warmup" and warmup > 0:
            value = value * jnp.minimum(1.0, step / warmup)
        elif settings.schedule == "rsqrt_decay":
            value = value * jnp.sqrt(warmup / jnp.maximum(step, warmup))
        return jnp.maximum(value, T5X_MIN_LEARNING_RATE)

    return t5x_schedule


def clip_global_norm(inner: optax.GradientTransformation, max_norm: float, epsilon: float
                     ) -> optax.GradientTransformation:
    """`inner` on gradients scaled by min(1, max_norm / (global norm + epsilon)).

    Written as a wrapper rather than `optax.chain(optax.clip_by_global_norm, ...)` because optax
    adds no epsilon (torch adds 1e-6), and so that the state is exactly `inner`'s: a checkpoint
    does not change layout with the setting.
    """

    def update(grads, state, params=None):
        scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(grads) + epsilon))
        grads = jax.tree.map(lambda g: (g * scale).astype(g.dtype), grads)
        return inner.update(grads, state, params)

    return optax.GradientTransformation(inner.init, update)


def transformers_adamw(learning_rate: optax.Schedule, b1: float, b2: float, eps: float,
                       weight_decay: float | None = None) -> optax.GradientTransformation:
    """transformers 4.22's `AdamW` (the Trainer's default `adamw_hf`), by hand because optax's
    Adam adds epsilon after the bias correction (torch's form) and this one before:
    p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), then p <- p - lr * wd * p.
    The state is optax's `ScaleByAdamState` (count, mu, nu)."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update(grads, state, params=None):
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, grads)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        rate = learning_rate(state.count)
        step_size = rate * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        updates = jax.tree.map(lambda m, v: -step_size * m / (jnp.sqrt(v) + eps), mu, nu)
        if weight_decay:
            if params is None:
                raise ValueError("AdamW with weight decay needs the parameters")
            # Decay applied to the parameter after the Adam step, as transformers' AdamW does.
            updates = jax.tree.map(lambda u, p: u - rate * weight_decay * (p + u), updates, params)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def make_optimizer(settings: OptimizerSettings, total_steps: int | None = None
                   ) -> optax.GradientTransformation:
    """The chosen optimizer under its schedule, after global-norm clipping when set."""
    schedule = make_schedule(settings, total_steps)
    if settings.flavour == "adamw":
        optimizer = transformers_adamw(schedule, settings.adam_beta1, settings.adam_beta2,
                                       settings.adam_epsilon, settings.weight_decay_rate)
    else:
        min_dim = settings.min_dim_size_to_factor
        if min_dim is None:
            min_dim = 1 if settings.flavour == "hf" else 128
        optimizer = optax.adafactor(
            learning_rate=schedule,
            min_dim_size_to_factor=min_dim,
            decay_rate=settings.decay_rate,
            clipping_threshold=settings.clipping_threshold,
            multiply_by_parameter_scale=settings.flavour == "t5x",
            eps=settings.epsilon,
            weight_decay_rate=settings.weight_decay_rate,
        )
    if settings.max_grad_norm is None:
        return optimizer
    epsilon = 0.0 if settings.flavour == "t5x" else TORCH_CLIP_EPSILON
    return clip_global_norm(optimizer, settings.max_grad_norm, epsilon)


def _delete(spec: tuple, axis: int) -> PartitionSpec:
    return PartitionSpec(*(spec[:axis] + spec[axis + 1:]))


def _factored_specs(state: optax.FactoredState, params_shapes: Any, params_shardings: Any,
                    replicated: PartitionSpec) -> optax.FactoredState:
    """Specs of Adafactor's moments, from the axes optax averaged for each parameter.

    optax factors a parameter over its two largest axes in `np.argsort(shape)` order, d1 then
    d0: `v_row` is the mean over d0 and `v_col` the mean over d1, so each keeps the specs of the
    other axes. Matching shapes instead would confuse the two for square kernels. A parameter
    left unfactored has placeholders there (replicated) and a full-shape `v`.
    """

    def specs(v_row, v_col, v, param, sharding):
        shape = tuple(param.shape)
        axes = tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))
        full = PartitionSpec(*axes) if tuple(v.shape) == shape else replicated
        if len(shape) >= 2:
            d1, d0 = (int(axis) for axis in np.argsort(shape)[-2:])
            if (tuple(v_row.shape) == shape[:d0] + shape[d0 + 1:]
                    and tuple(v_col.shape) == shape[:d1] + shape[d1 + 1:]):
                return _delete(axes, d0), _delete(axes, d1), full
        return replicated, replicated, full

    def pick(index: int) -> Any:
        return jax.tree.map(lambda *leaves: specs(*leaves)[index], state.v_row, state.v_col,
                            state.v, params_shapes, params_shardings)

    return optax.FactoredState(count=replicated, v_row=pick(0), v_col=pick(1), v=pick(2))


def state_shardings(state_shapes: Any, params_shapes: Any, params_shardings: Any) -> Any:
    """`NamedSharding`s for an optimizer state, derived from the parameters' shardings.

    Adafactor's factored moments follow the axes they kept (`_factored_specs`); other trees
    shaped like the parameters (AdamW's `mu`, `nu`) take the parameters' shardings; counters and
    placeholders are replicated.
    """
    params_def = jax.tree.structure(params_shapes)
    mesh = jax.tree.leaves(params_shardings)[0].mesh
    replicated = PartitionSpec()

    def is_param_tree(node: Any) -> bool:
        return jax.tree.structure(node) == params_def

    def specs(node: Any) -> Any:
        if isinstance(node, optax.FactoredState):
            return _factored_specs(node, params_shapes, params_shardings, replicated)
        if is_param_tree(node):
            return jax.tree.map(
                lambda leaf, param, sharding: sharding.spec
                if tuple(leaf.shape) == tuple(param.shape) else replicated,
                node, params_shapes, params_shardings,
            )
        return replicated

    def is_node(node: Any) -> bool:
        return isinstance(node, optax.FactoredState) or is_param_tree(node)

    spec_tree = jax.tree.map(specs, state_shapes, is_leaf=is_node)
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), spec_tree)
