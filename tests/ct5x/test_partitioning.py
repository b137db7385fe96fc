"""Logical axes onto a simulated 8-device mesh: sharded results equal unsharded ones."""

import os
import subprocess
import sys
import textwrap

import pytest

from ct5x.errors import UserInputError
from ct5x.partitioning import make_mesh, standard_logical_axis_rules

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from jax.sharding import PartitionSpec
    from ct5x.gin_utils import build_model
    from ct5x.partitioning import (
        data_sharding, logical_to_mesh_shardings, make_mesh, standard_logical_axis_rules)

    assert jax.device_count() == 8
    model = build_model(["models/t5_1_1/tiny.gin"], ["DROPOUT_RATE = 0.0"])
    params = model.init_params(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    targets = rng.integers(2, 500, (8, 6)).astype(np.int32)
    batch = {
        "encoder_input_tokens": rng.integers(2, 500, (8, 10)).astype(np.int32),
        "decoder_input_tokens": np.concatenate([np.zeros((8, 1), np.int32), targets[:, :-1]], 1),
        "decoder_target_tokens": targets,
    }
    expected = model.loss_fn(params, batch, None)[0]

    mesh = make_mesh(num_partitions=2)
    rules = standard_logical_axis_rules()
    shardings = logical_to_mesh_shardings(model.params_logical_axes(), mesh, rules)
    sharded_params = jax.device_put(params, shardings)
    sharded_batch = jax.device_put(batch, data_sharding(mesh))
    wi = sharded_params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
    assert wi.sharding.spec == PartitionSpec(None, "model"), wi.sharding.spec
    embedding = sharded_params["token_embedder"]["embedding"]
    assert embedding.sharding.spec == PartitionSpec("model", None), embedding.sharding.spec
    with jax.set_mesh(mesh):
        import flax.linen as nn
        with nn.logical_axis_rules(rules):
            loss = jax.jit(lambda p, b: model.loss_fn(p, b, None)[0])(sharded_params, sharded_batch)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    print("sharded loss ok", float(loss))
    """
)


def test_sharded_loss_equals_single_device_loss():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded loss ok" in result.stdout


def test_mesh_rejects_a_partition_count_that_does_not_divide_the_devices():
    with pytest.raises(UserInputError, match="num_partitions=3"):
        make_mesh(num_partitions=3, devices=[object()] * 8)


def test_two_dimensional_rules_shard_embed_over_data():
    rules = dict(standard_logical_axis_rules(parameter_partitioning_dims=2)[::-1])
    assert rules["embed"] == "data"
    assert dict(standard_logical_axis_rules()[::-1])["embed"] is None
