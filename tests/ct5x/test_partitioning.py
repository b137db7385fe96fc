"""Logical axes onto a mesh: T5X's rule table, the data layout of multi-host meshes (TPU v4-32, two
8-GPU nodes) with fake devices, and sharded results equal to unsharded ones on a simulated 8-device
mesh."""

import dataclasses
import subprocess
import sys
import textwrap

import flax.linen as nn
import numpy as np
import pytest
from training_run import subprocess_env

from ct5x.errors import UserInputError
from ct5x.partitioning import data_layout, device_grid, make_mesh, standard_logical_axis_rules

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
    with pytest.raises(UserInputError, match="NUM_PARTITIONS=3 does not divide the 8 devices"):
        make_mesh(num_partitions=3, devices=[object()] * 8)


@dataclasses.dataclass(frozen=True)
class FakeDevice:
    """What the mesh and the layout read of a device."""

    id: int
    process_index: int
    coords: tuple[int, ...] = ()
    core_on_chip: int = 0


def tpu_v4_32() -> list[FakeDevice]:
    """16 chips on a 2x2x4 torus, 4 hosts of 2x2x1 chips (one z plane each), ids not grouped by
    host."""
    return [FakeDevice(id=(7 * (x + 2 * y + 4 * z)) % 16, process_index=z, coords=(x, y, z))
            for z in range(4) for y in range(2) for x in range(2)]


def _layouts(devices, num_partitions, batch_size=32):
    grid = device_grid(num_partitions, devices)
    processes = sorted({device.process_index for device in devices})
    return grid, {p: data_layout(grid, p, batch_size) for p in processes}


def _processes_per_row(grid):
    return [len({device.process_index for device in row}) for row in grid]


@pytest.mark.parametrize("num_partitions, shards, hosts_per_replica", [
    (1, 4, 1), (2, 4, 1), (4, 4, 1), (8, 2, 2), (16, 1, 4)])
def test_tpu_v4_32_data_layout(num_partitions, shards, hosts_per_replica):
    """Each host's chips are one block of the data axis; a model replica spanning hosts makes
    them read the same rows."""
    grid, layouts = _layouts(tpu_v4_32(), num_partitions)
    assert grid.shape == (16 // num_partitions, num_partitions)
    assert set(_processes_per_row(grid)) == {hosts_per_replica}
    assert {layout.num_shards for layout in layouts.values()} == {shards}
    for host, layout in layouts.items():
        assert layout.shard_id == host // hosts_per_replica
        assert layout.is_first_host_in_replica_set == (host % hosts_per_replica == 0)
        size = 32 // shards
        assert layout.shard_rows == slice(layout.shard_id * size, (layout.shard_id + 1) * size)
    if num_partitions == 2:  # a pair of neighbouring chips of one host: same x, y differs by 1
        pairs = [sorted(device.coords for device in row) for row in grid]
        assert all(a[0] == b[0] and a[2] == b[2] and b[1] - a[1] == 1 for a, b in pairs)


@pytest.mark.parametrize("per_process, num_partitions, shards, processes_per_replica", [
    (8, 1, 2, 1), (8, 8, 2, 1), (8, 16, 1, 2),  # one process per node (8 GPUs each)
    (1, 1, 16, 1), (1, 2, 8, 2), (1, 8, 2, 8),  # one process per GPU (SLURM's default)
])
def test_two_8_gpu_nodes_data_layout(per_process, num_partitions, shards,
                                     processes_per_replica):
    devices = [FakeDevice(id=i, process_index=i // per_process) for i in range(16)]
    grid, layouts = _layouts(devices, num_partitions)
    assert set(_processes_per_row(grid)) == {processes_per_replica}
    for process, layout in layouts.items():
        assert layout.num_shards == shards
        assert layout.shard_id == process * shards // len(layouts)


def test_a_process_split_over_the_data_axis_is_refused_with_one_line():
    """3 devices per process in model groups of 2: rows [p0 p0] [p0 p1] [p1 p1], so process 1's
    block starts inside process 0's."""
    devices = [FakeDevice(id=i, process_index=i // 3) for i in range(6)]
    with pytest.raises(UserInputError) as error:
        data_layout(device_grid(2, devices), 0, 6)
    message = str(error.value)
    assert "\n" not in message and "process 1's devices are not one contiguous block" in message
    assert "rows [1, 2]" in message


def test_batch_must_split_over_the_data_axis():
    devices = [FakeDevice(id=i, process_index=i // 4) for i in range(8)]
    with pytest.raises(UserInputError, match="EVAL_BATCH_SIZE=6 does not split over the 4 "):
        data_layout(device_grid(2, devices), 1, 6, "EVAL_BATCH_SIZE")
    assert np.all(np.asarray([data_layout(device_grid(2, devices), 1, 8).shard_id]) == 1)


SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from ct5x.config import T5Config
    from ct5x.models import EncoderDecoderModel
    from ct5x.partitioning import Partitioner, standard_logical_axis_rules

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
    # dims -> (shard shape of an [embed 32, mlp 64] kernel, constraint on [batch, length, embed])
    cases = {(1, 1): ((32, 32), '[{"data"}, {}, {}]>'),
             (2, 2): ((8, 32), '[{"data"}, {}, {"model"}]>')}
    for dims, (kernel_shard, embed_constraint) in cases.items():
        partitioner = Partitioner(2, standard_logical_axis_rules(*dims))  # (data 4, model 2)
        shardings = partitioner.logical_to_mesh_sharding(model.params_logical_axes())
        sharded_params = partitioner.place(params, shardings)
        wi = sharded_params["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
        assert wi.addressable_shards[0].data.shape == kernel_shard, (dims, wi.sharding)
        sharded_batch = partitioner.host_to_global(batch)
        # A fresh jit per table: jit's trace cache does not key on the axis-rules context.
        loss_fn = partitioner.partition(lambda p, b: model.loss_fn(p, b, None)[0])
        program = loss_fn.lower(sharded_params, sharded_batch).as_text()
        loss = float(loss_fn(sharded_params, sharded_batch))
        constraints = [line for line in program.splitlines() if "sharding_constraint" in line]
        assert any(embed_constraint in line and "x32x" in line for line in constraints), dims
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
        print("sharded loss ok", dims, loss)
    """
)


def test_sharded_loss_equals_single_device_loss_for_1d_and_2d_rules():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=subprocess_env(devices=8), capture_output=True,
        text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("sharded loss ok") == 2
