"""Logical axes onto a mesh: T5X's rule table, and sharded results equal to unsharded ones on a
simulated 8-device mesh."""

import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import pytest

from ct5x.errors import UserInputError
from ct5x.partitioning import make_mesh, standard_logical_axis_rules

# t5x/partitioning.py `standard_logical_axis_rules`, per (activation, parameter) partitioning dims.
T5X_COMMON = [("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
              ("kv", None), ("joined_kv", "model")]
T5X_REPLICATED = [("relpos_buckets", None), ("abspos_buckets", None), ("length", None),
                  ("layers", None), ("stack", None), ("mlp_activations", None)]
T5X_TABLES = {
    (1, 1): [("batch", "data"), ("vocab", "model"), ("embed", None), ("mlp", "model"),
             ("heads", "model"), ("kv", None), ("joined_kv", "model")],
    (2, 1): [*T5X_COMMON, ("embed", "model")],
    (1, 2): [*T5X_COMMON, ("embed", "data")],
    (2, 2): [*T5X_COMMON, ("embed", "model"), ("embed", "data")],
}


@pytest.mark.parametrize("dims", sorted(T5X_TABLES))
def test_rules_are_t5x_table(dims):
    assert list(standard_logical_axis_rules(*dims)) == T5X_TABLES[dims] + T5X_REPLICATED
    extra = [("expert", "data")]
    assert list(standard_logical_axis_rules(*dims, additional_rules=extra))[-1] == extra[0]


@pytest.mark.parametrize(
    "dims, activation, kernel",
    [
        ((1, 1), ("data", None, None), (None, "model")),
        ((2, 1), ("data", None, "model"), (None, "model")),
        ((1, 2), ("data", None, None), ("data", "model")),
        ((2, 2), ("data", None, "model"), ("data", "model")),
    ],
)
def test_embed_never_takes_the_batch_axis(dims, activation, kernel):
    """[batch, length, embed] activations keep "data" for the batch; "embed" goes to "model" under
    2-D activation partitioning; an [embed, mlp] kernel uses "data" only under 2-D parameters."""
    rules = standard_logical_axis_rules(*dims)
    assert tuple(nn.logical_to_mesh_axes(("batch", "length", "embed"), rules)) == activation
    assert tuple(nn.logical_to_mesh_axes(("embed", "mlp"), rules)) == kernel


def test_bad_partitioning_dims_name_the_settings():
    with pytest.raises(UserInputError, match="activation_partitioning_dims=3"):
        standard_logical_axis_rules(3, 1)


def test_mesh_rejects_a_partition_count_that_does_not_divide_the_devices():
    with pytest.raises(UserInputError, match="num_partitions=3"):
        make_mesh(num_partitions=3, devices=[object()] * 8)


SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from ct5x.config import T5Config
    from ct5x.models import EncoderDecoderModel
    from ct5x.partitioning import (data_sharding, logical_to_mesh_shardings, make_mesh,
                                   mesh_and_rules, standard_logical_axis_rules)

    assert jax.device_count() == 8
    model = EncoderDecoderModel(T5Config(
        vocab_size=512, emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_encoder_layers=2,
        num_decoder_layers=2, dropout_rate=0.0))
    params = model.init_params(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    targets = rng.integers(2, 500, (8, 6)).astype(np.int32)
    batch = {
        "encoder_input_tokens": rng.integers(2, 500, (8, 10)).astype(np.int32),
        "decoder_input_tokens": np.concatenate([np.zeros((8, 1), np.int32), targets[:, :-1]], 1),
        "decoder_target_tokens": targets,
    }
    expected = float(model.loss_fn(params, batch, None)[0])
    mesh = make_mesh(num_partitions=2)  # (data 4, model 2)
    # dims -> (shard shape of an [embed 32, mlp 64] kernel, constraint on [batch, length, embed])
    cases = {(1, 1): ((32, 32), '[{"data"}, {}, {}]>'),
             (2, 2): ((8, 32), '[{"data"}, {}, {"model"}]>')}
    for dims, (kernel_shard, embed_constraint) in cases.items():
        rules = standard_logical_axis_rules(*dims)
        shardings = logical_to_mesh_shardings(model.params_logical_axes(), mesh, rules)
        sharded_params = jax.device_put(params, shardings)
        wi = sharded_params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
        assert wi.addressable_shards[0].data.shape == kernel_shard, (dims, wi.sharding)
        sharded_batch = jax.device_put(batch, data_sharding(mesh))
        # A fresh jit per table: jit's trace cache does not key on the axis-rules context.
        loss_fn = jax.jit(lambda p, b: model.loss_fn(p, b, None)[0])
        with mesh_and_rules(mesh, rules):
            program = loss_fn.lower(sharded_params, sharded_batch).as_text()
            loss = float(loss_fn(sharded_params, sharded_batch))
        constraints = [line for line in program.splitlines() if "sharding_constraint" in line]
        assert any(embed_constraint in line and "x32x" in line for line in constraints), dims
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
        print("sharded loss ok", dims, loss)
    """
)


def test_sharded_loss_equals_single_device_loss_for_1d_and_2d_rules():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("sharded loss ok") == 2
