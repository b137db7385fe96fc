"""Adafactor flavours against transformers' Adafactor, schedules, and optimizer-state shardings."""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from ct5x.errors import UserInputError
from ct5x.optimizers import OptimizerSettings, make_optimizer, make_schedule, state_shardings

SHAPES = {"kernel": (6, 5), "wide": (3, 200), "scale": (7,), "stack": (2, 4, 3)}


def _params_and_grads(seed: int, steps: int):
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(size=shape).astype(np.float32) for name, shape in SHAPES.items()}
    grads = [
        {name: rng.normal(scale=0.1 * (step + 1), size=shape).astype(np.float32)
         for name, shape in SHAPES.items()}
        for step in range(steps)
    ]
    return params, grads


def _transformers_trajectory(params, grads, learning_rate):
    import torch
    from transformers.optimization import Adafactor

    tensors = {name: torch.nn.Parameter(torch.tensor(value)) for name, value in params.items()}
    optimizer = Adafactor(list(tensors.values()), lr=learning_rate, scale_parameter=False,
                          relative_step=False, warmup_init=False)
    trajectory = []
    for grad in grads:
        for name, tensor in tensors.items():
            tensor.grad = torch.tensor(grad[name])
        optimizer.step()
        trajectory.append({name: t.detach().numpy().copy() for name, t in tensors.items()})
    return trajectory


def test_hf_flavour_matches_transformers_adafactor():
    params, grads = _params_and_grads(seed=0, steps=6)
    expected = _transformers_trajectory(params, grads, learning_rate=1e-2)
    optimizer = make_optimizer(OptimizerSettings(flavour="hf", learning_rate=1e-2))
    state = optimizer.init(params)
    current = params
    for step, grad in enumerate(grads):
        updates, state = jax.jit(optimizer.update)(grad, state, current)
        current = optax.apply_updates(current, updates)
        for name in SHAPES:
            np.testing.assert_allclose(current[name], expected[step][name], atol=1e-6, rtol=0,
                                       err_msg=f"{name} after step {step + 1}")


def test_t5x_flavour_scales_by_parameter_rms():
    params, grads = _params_and_grads(seed=1, steps=1)
    hf = make_optimizer(OptimizerSettings(flavour="hf", learning_rate=1e-2,
                                          min_dim_size_to_factor=128))
    t5x = make_optimizer(OptimizerSettings(flavour="t5x", learning_rate=1e-2))
    hf_updates, _ = hf.update(grads[0], hf.init(params), params)
    t5x_updates, _ = t5x.update(grads[0], t5x.init(params), params)
    for name, value in params.items():
        scale = max(1e-3, float(np.sqrt(np.mean(np.square(value)))))
        np.testing.assert_allclose(t5x_updates[name], hf_updates[name] * scale, rtol=1e-5)


@pytest.mark.parametrize(
    "schedule, warmup, expected",
    [
        ("constant", 0, [1.0, 1.0, 1.0, 1.0, 1.0]),
        ("linear_warmup", 4, [0.25, 0.5, 0.75, 1.0, 1.0]),
        ("rsqrt_decay", 2, [1.0, 1.0, np.sqrt(2 / 3), np.sqrt(2 / 4), np.sqrt(2 / 5)]),
    ],
)
def test_schedules(schedule, warmup, expected):
    rate = make_schedule(OptimizerSettings(learning_rate=1.0, schedule=schedule,
                                           warmup_steps=warmup))
    np.testing.assert_allclose([float(rate(step)) for step in range(5)], expected, rtol=1e-6)


def test_bad_settings_name_the_setting():
    with pytest.raises(UserInputError, match="flavour"):
        OptimizerSettings(flavour="adam")
    with pytest.raises(UserInputError, match="rsqrt_decay"):
        OptimizerSettings(schedule="rsqrt_decay")


def test_state_shardings_follow_parameters_including_factored_moments():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    params = {"kernel": np.zeros((4, 6), np.float32), "scale": np.zeros((6,), np.float32)}
    specs = {"kernel": PartitionSpec("data", "model"), "scale": PartitionSpec("model")}
    param_shardings = {name: NamedSharding(mesh, spec) for name, spec in specs.items()}
    optimizer = make_optimizer(OptimizerSettings(flavour="hf"))
    shapes = jax.eval_shape(optimizer.init, params)
    shardings = state_shardings(shapes, params, param_shardings)
    factored = shardings[0]
    assert factored.v_row["kernel"].spec == PartitionSpec("data")  # [4]: the column axis averaged
    assert factored.v_col["kernel"].spec == PartitionSpec("model")  # [6]: the row axis averaged
    assert factored.v["scale"].spec == PartitionSpec("model")
    assert factored.v["kernel"].spec == PartitionSpec()  # a placeholder
    assert factored.count.spec == PartitionSpec()
