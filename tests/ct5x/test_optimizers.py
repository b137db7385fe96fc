"""The optimizers against their references: transformers' Adafactor and torch's AdamW after
`clip_grad_norm_`, T5X's Adafactor and schedules written out in float64 numpy here, transformers
4.22's AdamW step written out here; and the shardings of the optimizer state."""

import math

import jax
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from ct5x.errors import UserInputError
from ct5x.optimizers import (
    OptimizerSettings,
    make_optimizer,
    make_schedule,
    state_shardings,
    transformers_adamw,
)

SHAPES = {"kernel": (6, 5), "wide": (3, 200), "scale": (7,), "stack": (2, 4, 3)}
# T5X's heuristic factoring needs rank <= 2; two matrices reach its 128 threshold.
T5X_SHAPES = {"kernel": (130, 140), "square": (128, 128), "small": (6, 5), "scale": (7,)}


def _params_and_grads(seed: int, steps: int, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
    grads = [
        {name: rng.normal(scale=0.1 * (step + 1), size=shape).astype(np.float32)
         for name, shape in shapes.items()}
        for step in range(steps)
    ]
    return params, grads


def _global_norm(grad) -> float:
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grad.values()))


def _run(optimizer, params, grads):
    """Parameters after each update."""
    state, current, trajectory = optimizer.init(params), params, []
    update = jax.jit(optimizer.update)
    for grad in grads:
        updates, state = update(grad, state, current)
        current = optax.apply_updates(current, updates)
        trajectory.append(jax.tree.map(np.asarray, current))
    return trajectory


def _torch_trajectory(params, grads, make_torch_optimizer, max_grad_norm=None, schedule=None):
    import torch

    tensors = {name: torch.nn.Parameter(torch.tensor(value)) for name, value in params.items()}
    optimizer = make_torch_optimizer(list(tensors.values()))
    scheduler = schedule(optimizer) if schedule else None
    trajectory = []
    for grad in grads:
        for name, tensor in tensors.items():
            tensor.grad = torch.tensor(grad[name])
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(tensors.values()), max_grad_norm)
        optimizer.step()
        if scheduler:
            scheduler.step()
        trajectory.append({name: t.detach().numpy().copy() for name, t in tensors.items()})
    return trajectory


def _assert_trajectories(found, expected, atol):
    for step, (got, want) in enumerate(zip(found, expected, strict=True)):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=0,
                                       err_msg=f"{name} after step {step + 1}")


@pytest.mark.parametrize("max_grad_norm", [None, 1.0])
def test_hf_flavour_matches_transformers_adafactor_after_clip_grad_norm(max_grad_norm):
    from transformers.optimization import Adafactor

    params, grads = _params_and_grads(seed=0, steps=6)
    assert min(_global_norm(grad) for grad in grads) > 2  # clipping acts at every step
    expected = _torch_trajectory(
        params, grads, lambda tensors: Adafactor(tensors, lr=1e-2, scale_parameter=False,
                                                 relative_step=False, warmup_init=False),
        max_grad_norm=max_grad_norm)
    optimizer = make_optimizer(OptimizerSettings(flavour="hf", learning_rate=1e-2,
                                                 max_grad_norm=max_grad_norm))
    _assert_trajectories(_run(optimizer, params, grads), expected, atol=1e-6)


@pytest.mark.parametrize("warmup", [0, 2])
def test_adamw_flavour_matches_torch_adamw_with_the_linear_schedule(warmup):
    """The study's NCBI optimizer: the Trainer clips, steps AdamW, then steps the schedule.

    torch adds epsilon after the bias correction and transformers 4.22 (the study's) before it
    (the next test); with epsilon 0 they are one algorithm, so this compares all the rest:
    clipping, moments, bias correction and schedule."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    total = 8
    params, grads = _params_and_grads(seed=2, steps=6)
    expected = _torch_trajectory(
        params, grads,
        lambda tensors: torch.optim.AdamW(tensors, lr=1e-2, betas=(0.9, 0.999), eps=0.0,
                                          weight_decay=0.0),
        max_grad_norm=1.0,
        schedule=lambda opt: get_linear_schedule_with_warmup(opt, warmup, total))
    settings = OptimizerSettings(flavour="adamw", learning_rate=1e-2, schedule="linear_decay",
                                 warmup_steps=warmup, adam_epsilon=0.0)
    _assert_trajectories(_run(make_optimizer(settings, total), params, grads), expected,
                         atol=1e-6)


def _transformers_4_22_adamw(params, grads, lr, b1, b2, eps, weight_decay):
    """transformers 4.22 `AdamW.step` per parameter, in float64."""
    current = {name: value.astype(np.float64) for name, value in params.items()}
    m = {name: np.zeros_like(value) for name, value in current.items()}
    v = {name: np.zeros_like(value) for name, value in current.items()}
    trajectory = []
    for step, grad in enumerate(grads, start=1):
        for name, param in list(current.items()):
            g = grad[name].astype(np.float64)
            m[name] = b1 * m[name] + (1 - b1) * g
            v[name] = b2 * v[name] + (1 - b2) * g * g
            denom = np.sqrt(v[name]) + eps
            step_size = lr * math.sqrt(1 - b2**step) / (1 - b1**step)
            stepped = param - step_size * m[name] / denom
            current[name] = stepped - lr * weight_decay * stepped
        trajectory.append(dict(current))
    return trajectory


def test_adamw_adds_epsilon_before_the_bias_correction_as_transformers_4_22():
    """A large epsilon tells transformers' AdamW from torch's (which ct5x must not follow)."""
    import torch

    params, grads = _params_and_grads(seed=3, steps=5)
    grads = [{name: g * 1e-2 for name, g in grad.items()} for grad in grads]
    hyper = {"lr": 1e-2, "b1": 0.9, "b2": 0.999, "eps": 1e-3, "weight_decay": 0.1}
    expected = _transformers_4_22_adamw(params, grads, **hyper)
    optimizer = transformers_adamw(optax.constant_schedule(hyper["lr"]), hyper["b1"],
                                   hyper["b2"], hyper["eps"], hyper["weight_decay"])
    found = _run(optimizer, params, grads)
    _assert_trajectories(found, expected, atol=2e-6)
    torch_form = _torch_trajectory(
        params, grads, lambda tensors: torch.optim.AdamW(
            tensors, lr=hyper["lr"], betas=(hyper["b1"], hyper["b2"]), eps=hyper["eps"],
            weight_decay=hyper["weight_decay"]))
    gap = max(float(np.max(np.abs(torch_form[-1][n] - expected[-1][n]))) for n in params)
    assert gap > 1e-4


def _t5x_adafactor(params, grads, learning_rates, max_grad_norm):
    """T5X's `Adafactor.apply_gradient` with its defaults (heuristic factoring over the two
    largest axes when both reach 128, decay 1 - (step + 1)^-0.8, epsilons 1e-30 and 1e-3, update
    clipping 1.0, parameter scaling, no momentum) and `global_norm_clip_threshold`, in float64."""
    current = {name: value.astype(np.float64) for name, value in params.items()}
    state = {}
    for name, value in current.items():
        dims = np.argsort(value.shape)
        if value.ndim >= 2 and value.shape[dims[-2]] >= 128:
            d1, d0 = int(dims[-2]), int(dims[-1])
            state[name] = {"dims": (d1, d0), "v_row": np.zeros(np.delete(value.shape, d0)),
                           "v_col": np.zeros(np.delete(value.shape, d1))}
        else:
            state[name] = {"dims": None, "v": np.zeros(value.shape)}
    trajectory = []
    for step, grad in enumerate(grads):
        grad = {name: g.astype(np.float64) for name, g in grad.items()}
        norm = math.sqrt(sum(np.sum(g * g) for g in grad.values()))
        scale = max_grad_norm * min(1.0 / max_grad_norm, 1.0 / norm)
        decay = 1.0 - (step + 1.0) ** -0.8
        for name, param in current.items():
            g, s = grad[name] * scale, state[name]
            update_scale = learning_rates[step] * max(np.sqrt(np.mean(param * param)), 1e-3)
            grad_sqr = g * g + 1e-30
            if s["dims"] is not None:
                d1, d0 = s["dims"]
                s["v_row"] = decay * s["v_row"] + (1 - decay) * np.mean(grad_sqr, axis=d0)
                s["v_col"] = decay * s["v_col"] + (1 - decay) * np.mean(grad_sqr, axis=d1)
                reduced_d1 = d1 - 1 if d1 > d0 else d1
                row_col_mean = np.mean(s["v_row"], axis=reduced_d1, keepdims=True)
                row_factor = (s["v_row"] / row_col_mean) ** -0.5
                col_factor = s["v_col"] ** -0.5
                y = g * np.expand_dims(row_factor, d0) * np.expand_dims(col_factor, d1)
            else:
                s["v"] = decay * s["v"] + (1 - decay) * grad_sqr
                y = g * s["v"] ** -0.5
            y = y / max(1.0, np.sqrt(np.mean(y * y)) / 1.0)
            current[name] = param - update_scale * y
        trajectory.append(dict(current))
    return trajectory


def test_t5x_flavour_is_t5x_adafactor_in_float64():
    params, grads = _params_and_grads(seed=1, steps=6, shapes=T5X_SHAPES)
    settings = OptimizerSettings(flavour="t5x", learning_rate=0.05, schedule="rsqrt_decay",
                                 warmup_steps=3, max_grad_norm=1.0)
    rates = [_t5x_learning_rate(step, "constant * rsqrt_normalized_decay", 0.05, 3)
             for step in range(6)]
    expected = _t5x_adafactor(params, grads, rates, max_grad_norm=1.0)
    found = _run(make_optimizer(settings), params, grads)
    _assert_trajectories(found, expected, atol=3e-6)
    # The updates themselves, not only the parameters they move, agree to float32 precision.
    for name in params:
        moved = expected[-1][name] - params[name]
        np.testing.assert_allclose(found[-1][name] - params[name], moved, rtol=2e-3,
                                   atol=1e-4 * float(np.max(np.abs(moved))))


def _t5x_learning_rate(step, factors, base, warmup, min_learning_rate=1e-8):
    """T5X's `create_learning_rate_scheduler` step function, in float64."""
    value = 1.0
    for name in (factor.strip() for factor in factors.split("*")):
        if name == "constant":
            value *= base
        elif name == "linear_warmup":
            value *= min(1.0, step / warmup)
        elif name == "rsqrt_normalized_decay":
            value *= math.sqrt(warmup) / math.sqrt(max(step, warmup))
    return max(value, min_learning_rate)


@pytest.mark.parametrize("schedule, factors, warmup", [
    ("constant", "constant", 0),
    ("linear_warmup", "constant * linear_warmup", 4),
    ("rsqrt_decay", "constant * rsqrt_normalized_decay", 3),
])
def test_t5x_schedules_match_t5x_step_for_step(schedule, factors, warmup):
    rate = make_schedule(OptimizerSettings(learning_rate=0.3, schedule=schedule,
                                           warmup_steps=warmup))
    expected = [_t5x_learning_rate(step, factors, 0.3, warmup) for step in range(12)]
    np.testing.assert_allclose([float(rate(step)) for step in range(12)], expected, rtol=1e-6)


def test_linear_decay_is_transformers_linear_schedule():
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    scheduler = get_linear_schedule_with_warmup(optimizer, 3, 10)
    expected = []
    for _ in range(12):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    rate = make_schedule(OptimizerSettings(learning_rate=0.3, schedule="linear_decay",
                                           warmup_steps=3), total_steps=10)
    np.testing.assert_allclose([float(rate(step)) for step in range(12)], expected, atol=1e-7)


def test_bad_settings_name_the_setting():
    with pytest.raises(UserInputError, match="flavour"):
        OptimizerSettings(flavour="adam")
    with pytest.raises(UserInputError, match="rsqrt_decay"):
        OptimizerSettings(schedule="rsqrt_decay")
    with pytest.raises(UserInputError, match="MAX_GRAD_NORM"):
        OptimizerSettings(max_grad_norm=0.0)
    with pytest.raises(UserInputError, match="linear_decay"):
        make_optimizer(OptimizerSettings(schedule="linear_decay"))


def _averaged_axis(moment: np.ndarray, grad_sqr: np.ndarray) -> int:
    """The axis whose mean of `grad_sqr` is `moment` (the first update decays nothing)."""
    axes = [axis for axis in range(grad_sqr.ndim)
            if moment.shape == tuple(np.delete(grad_sqr.shape, axis))
            and np.allclose(moment, np.mean(grad_sqr, axis=axis), rtol=1e-5)]
    assert len(axes) == 1, axes
    return axes[0]


def test_factored_moments_are_sharded_by_the_axis_optax_averaged():
    """A square kernel's two moments keep different axes; optax's own statistics say which."""
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    shapes = {"square": (8, 8), "kernel": (4, 6), "tall": (6, 4), "stack": (3, 5, 5),
              "scale": (6,)}
    specs = {"square": PartitionSpec("data", "model"), "kernel": PartitionSpec("data", "model"),
             "tall": PartitionSpec("model", "data"),
             "stack": PartitionSpec(None, "data", "model"), "scale": PartitionSpec("model")}
    rng = np.random.default_rng(0)
    params = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    grads = {name: rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
             for name, shape in shapes.items()}
    optimizer = make_optimizer(OptimizerSettings(flavour="hf", max_grad_norm=None))
    _, state = optimizer.update(grads, optimizer.init(params), params)
    factored = state[0]
    shardings = state_shardings(jax.eval_shape(optimizer.init, params), params,
                                {name: NamedSharding(mesh, spec) for name, spec in specs.items()})
    for name, shape in shapes.items():
        axes = tuple(specs[name]) + (None,) * (len(shape) - len(specs[name]))
        if len(shape) == 1:
            assert shardings[0].v[name].spec == specs[name]
            assert shardings[0].v_row[name].spec == PartitionSpec()
            continue
        grad_sqr = np.square(grads[name].astype(np.float64)) + 1e-30
        for moment in ("v_row", "v_col"):
            axis = _averaged_axis(np.asarray(getattr(factored, moment)[name]), grad_sqr)
            kept = PartitionSpec(*(axes[:axis] + axes[axis + 1:]))
            assert getattr(shardings[0], moment)[name].spec == kept, (name, moment)
        assert shardings[0].v[name].spec == PartitionSpec()  # a placeholder
    assert shardings[0].v_row["square"].spec == PartitionSpec("data")
    assert shardings[0].v_col["square"].spec == PartitionSpec("model")
    assert shardings[0].count.spec == PartitionSpec()


def test_adamw_moments_follow_the_parameters():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    params = {"kernel": np.zeros((4, 6), np.float32), "scale": np.zeros((6,), np.float32)}
    specs = {"kernel": PartitionSpec("data", "model"), "scale": PartitionSpec("model")}
    optimizer = make_optimizer(OptimizerSettings(flavour="adamw", schedule="linear_decay"), 10)
    shardings = state_shardings(jax.eval_shape(optimizer.init, params), params,
                                {name: NamedSharding(mesh, spec) for name, spec in specs.items()})
    for moments in (shardings.mu, shardings.nu):
        assert {name: s.spec for name, s in moments.items()} == specs
    assert shardings.count.spec == PartitionSpec()
