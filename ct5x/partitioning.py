"""The Partitioner, T5X's roles: mesh, logical axis rules, data layout, host-local <-> global
arrays, and jit with shardings.

The network names every parameter and activation axis ("embed", "mlp", "heads", "vocab", ...);
`standard_logical_axis_rules` maps those names onto a 2-D ("data", "model") mesh, and gin may bind
a different table. With one device everything is replicated and the rules are no-ops.

Data layout follows the mesh, as T5X's `get_data_layout`: a process's devices must sit in one
contiguous, aligned block of rows of the "data" axis; the block's index is the process's data
shard, and processes whose devices share a block (a model axis that spans processes) read the same
rows of every batch. The mesh puts each process's devices next to each other (host-major), so a
model-parallel group lies inside one process or spans whole processes, and a mesh that cannot give
every process one block is refused with one line.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ct5x.compile_ahead import AheadOfTime
from ct5x.errors import UserInputError

LogicalRules = Sequence[tuple[str, str | None]]
HostBatch = Mapping[str, np.ndarray]

# Where "embed" goes for each (activation_partitioning_dims, parameter_partitioning_dims).
EMBED_RULES: dict[tuple[int, int], tuple[tuple[str, str | None], ...]] = {
    (1, 1): (("embed", None),),
    (2, 1): (("embed", "model"),),
    (1, 2): (("embed", "data"),),
    (2, 2): (("embed", "model"), ("embed", "data")),
}
# Axes that are never sharded (the names T5X's table lists, some unused by ct5x's network).
REPLICATED_AXES: tuple[tuple[str, None], ...] = tuple(
    (name, None)
    for name in ("relpos_buckets", "abspos_buckets", "length", "layers", "stack", "mlp_activations")
)


def standard_logical_axis_rules(
    activation_partitioning_dims: int = 1,
    parameter_partitioning_dims: int = 1,
    additional_rules: LogicalRules | None = None,
) -> LogicalRules:
    """T5X's default table, rule for rule: batch over "data"; vocab, mlp, heads and joined_kv
    over "model"; "embed" replicated unless a partitioning dim is 2.

    Rules are a priority list: an axis takes the first rule whose mesh axis its array has not
    used yet. 2-D activation partitioning shards "embed" over "model" (activations [batch,
    length, embed] then use both mesh axes; kernels keep "model" for their other axis); 2-D
    parameter partitioning shards "embed" over "data" (parameters then use both mesh axes;
    activations keep "data" for "batch", so the clash leaves their "embed" replicated).
    `additional_rules` are appended, as in T5X.
    """
    dims = (activation_partitioning_dims, parameter_partitioning_dims)
    if dims not in EMBED_RULES:
        raise UserInputError(
            f"activation_partitioning_dims={activation_partitioning_dims}, "
            f"parameter_partitioning_dims={parameter_partitioning_dims}: each must be 1 or 2"
        )
    rules: list[tuple[str, str | None]] = [
        ("batch", "data"),
        ("vocab", "model"),
        ("mlp", "model"),
        ("heads", "model"),
        ("kv", None),
        ("joined_kv", "model"),
    ]
    if dims == (1, 1):
        rules[2:2] = EMBED_RULES[dims]  # T5X lists the replicated "embed" third
    else:
        rules += EMBED_RULES[dims]
    return [*rules, *REPLICATED_AXES, *(additional_rules or ())]


@contextlib.contextmanager
def mesh_and_rules(mesh: Mesh, rules: LogicalRules) -> Iterator[None]:
    """Makes `mesh` and `rules` current, so the network's activation constraints take effect
    in what is traced (and jitted) inside: enter it around the jitted call, as T5X's
    partitioner does. jit does not key its trace cache on the rules: jit a function afresh for
    each rules table it runs under."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def _host_major(device: Any) -> tuple:
    """Sort key: the process first, then the device's place on the chip torus (TPU) or its id."""
    coords = tuple(getattr(device, "coords", ()))
    return (device.process_index, coords, getattr(device, "core_on_chip", 0), device.id)


def device_grid(num_partitions: int, devices: Sequence[Any]) -> np.ndarray:
    """Devices as a [data, model] array: `num_partitions` consecutive devices per model replica,
    each process's devices consecutive (host-major), so a model replica lies inside one process
    or spans whole processes."""
    if num_partitions < 1 or len(devices) % num_partitions:
        raise UserInputError(
            f"NUM_PARTITIONS={num_partitions} does not divide the {len(devices)} devices"
        )
    ordered = np.empty(len(devices), dtype=object)
    ordered[:] = sorted(devices, key=_host_major)
    return ordered.reshape(len(devices) // num_partitions, num_partitions)


def make_mesh(num_partitions: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A ("data", "model") mesh: `num_partitions` devices per model replica, the rest
    data-parallel."""
    grid = device_grid(num_partitions, list(jax.devices() if devices is None else devices))
    return Mesh(grid, ("data", "model"))


@dataclasses.dataclass(frozen=True)
class DataShard:
    """Where one process's devices sit on the "data" axis: which of `num_shards` equal blocks of
    rows, and its place among the processes whose devices share that block."""

    shard_id: int
    num_shards: int
    replica_id: int


def data_shards(grid: np.ndarray) -> dict[int, DataShard]:
    """Every process's data shard in a [data, model] device grid; one line if a process's
    devices are not one contiguous, aligned block of rows the same size as the others'."""
    rows: dict[int, set[int]] = collections.defaultdict(set)
    for (row, _), device in np.ndenumerate(grid):
        rows[device.process_index].add(row)
    size = min(len(held) for held in rows.values())
    for process, held in sorted(rows.items()):
        first = min(held)
        if len(held) != size or held != set(range(first, first + size)) or first % size:
            raise UserInputError(
                f"mesh {grid.shape[0]} x {grid.shape[1]} (data x model) over "
                f"{len(rows)} processes: process {process}'s devices are not one contiguous "
                f"block of the data axis (rows {sorted(held)}); choose NUM_PARTITIONS dividing, "
                "or a multiple of, the devices of one process"
            )
    shards, sharing = {}, collections.defaultdict(list)
    for process in sorted(rows):
        shard_id = min(rows[process]) // size
        shards[process] = DataShard(shard_id, grid.shape[0] // size, len(sharing[shard_id]))
        sharing[shard_id].append(process)
    return shards


@dataclasses.dataclass(frozen=True)
class DataLayout:
    """T5X's DataLayout: this process reads rows `shard_rows` of every global batch of
    `batch_size`, the same rows as every other process of its model-parallel group."""

    batch_size: int
    shard_id: int
    num_shards: int
    is_first_host_in_replica_set: bool

    @property
    def shard_size(self) -> int:
        return self.batch_size // self.num_shards

    @property
    def shard_rows(self) -> slice:
        return slice(self.shard_id * self.shard_size, (self.shard_id + 1) * self.shard_size)


def data_layout(grid: np.ndarray, process_index: int, batch_size: int,
                name: str = "BATCH_SIZE") -> DataLayout:
    """The layout of `batch_size` rows for one process of a [data, model] device grid."""
    return _layout(grid.shape, data_shards(grid)[process_index], batch_size, name)


def _layout(mesh_shape: tuple[int, int], shard: DataShard, batch_size: int, name: str
            ) -> DataLayout:
    data, model = mesh_shape
    if batch_size < 1 or batch_size % data:
        raise UserInputError(f"{name}={batch_size} does not split over the {data} data-parallel "
                             f"devices of the mesh ({data} x {model}, data x model)")
    return DataLayout(batch_size, shard.shard_id, shard.num_shards, shard.replica_id == 0)


class PartitionedFunction(AheadOfTime):
    """A jitted function that runs, lowers and compiles ahead inside its mesh and axis rules."""

    def __init__(self, jitted: Any, mesh: Mesh, rules: LogicalRules):
        super().__init__(jitted, lambda: mesh_and_rules(mesh, rules))


class Partitioner:
    """The mesh and the axis rules of a run, and everything that follows from them: shardings,
    this process's data layout, global arrays from host rows, and partitioned functions."""

    def __init__(self, num_partitions: int = 1, logical_axis_rules: LogicalRules | None = None,
                 devices: Sequence[Any] | None = None):
        self.mesh = make_mesh(num_partitions, devices)
        self.logical_axis_rules = list(logical_axis_rules or standard_logical_axis_rules())
        # Checked for every process now: a mesh no process can read data for fails at start.
        self.data_shard = data_shards(self.mesh.devices)[jax.process_index()]
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        # Batches split along their leading axis over "data", replicated over "model".
        self.data_sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        # [steps, batch, ...]: every step's rows sharded as one step's are.
        self.stacked_data_sharding = NamedSharding(self.mesh, PartitionSpec(None, "data"))

    def get_data_layout(self, batch_size: int, name: str = "BATCH_SIZE") -> DataLayout:
        """This process's rows of every batch of `batch_size` rows (`name` is the setting that
        gave the size, for the message when it does not split over the mesh)."""
        return _layout(self.mesh.devices.shape, self.data_shard, batch_size, name)

    def logical_to_mesh_sharding(self, logical_specs: Any) -> Any:
        """A tree of logical `PartitionSpec`s -> the matching tree of `NamedSharding`s."""
        return jax.tree.map(
            lambda spec: NamedSharding(self.mesh,
                                       nn.logical_to_mesh_axes(spec, self.logical_axis_rules)),
            logical_specs,
            is_leaf=lambda x: isinstance(x, PartitionSpec),
        )

    def active(self):
        """The mesh and the axis rules, so activation constraints apply while tracing."""
        return mesh_and_rules(self.mesh, self.logical_axis_rules)

    def partition(self, fn: Callable, in_shardings: Any = None, out_shardings: Any = None,
                  static_argnames: Sequence[str] = (), donate_argnums: Sequence[int] = ()
                  ) -> PartitionedFunction:
        """`fn` jitted with these shardings, called inside the mesh and the rules."""
        jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                         static_argnames=static_argnames, donate_argnums=donate_argnums)
        return PartitionedFunction(jitted, self.mesh, self.logical_axis_rules)

    def place(self, tree: Any, shardings: Any) -> Any:
        """A tree of host arrays that every process holds whole (and the same) -> global arrays
        placed by `shardings`; each process copies only the pieces its devices hold."""
        if jax.process_count() == 1:
            return jax.device_put(tree, shardings)
        return jax.tree.map(
            lambda value, sharding: jax.make_array_from_callback(
                np.shape(value), sharding, lambda index: np.asarray(value)[index]),
            tree, shardings)

    def global_rows(self, host_rows: int) -> int:
        """Rows of the global batch whose data shard has `host_rows` rows."""
        return host_rows * self.data_shard.num_shards

    def host_to_global(self, host_batch: HostBatch, stacked: bool = False
                       ) -> dict[str, jax.Array]:
        """This process's data shard of a batch ([rows, ...], or [steps, rows, ...] when
        `stacked`) -> one global array per feature, split over "data"."""
        axis = 1 if stacked else 0
        sharding = self.stacked_data_sharding if stacked else self.data_sharding
        arrays = {}
        for key, value in host_batch.items():
            shape = list(np.shape(value))
            shape[axis] = self.global_rows(shape[axis])
            arrays[key] = jax.make_array_from_process_local_data(sharding, value, tuple(shape))
        return arrays

    def host_rows(self, batch: HostBatch) -> dict[str, np.ndarray]:
        """This process's data shard of a global batch that every process holds whole."""
        rows = len(next(iter(batch.values())))
        layout = self.get_data_layout(rows, "EVAL_BATCH_SIZE")
        return {key: value[layout.shard_rows] for key, value in batch.items()}
