"""Logical axis names -> device mesh, T5X style: one table says where every axis lives.

The network names every parameter and activation axis ("embed", "mlp", "heads", "vocab", ...);
`standard_logical_axis_rules` maps those names onto a 2-D ("data", "model") mesh, and gin may bind
a different table. With one device everything is replicated and the rules are no-ops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ct5x.errors import UserInputError

LogicalRules = Sequence[tuple[str, str | None]]

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


def make_mesh(num_partitions: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A ("data", "model") mesh: `num_partitions` devices per model replica, the rest
    data-parallel."""
    devices = list(jax.devices() if devices is None else devices)
    if num_partitions < 1 or len(devices) % num_partitions:
        raise UserInputError(
            f"num_partitions={num_partitions} does not divide the {len(devices)} devices"
        )
    grid = np.asarray(devices).reshape(len(devices) // num_partitions, num_partitions)
    return Mesh(grid, ("data", "model"))


def logical_to_mesh_shardings(
    logical_specs: Any, mesh: Mesh, rules: LogicalRules
) -> Any:
    """A tree of logical `PartitionSpec`s -> the matching tree of `NamedSharding`s on `mesh`."""
    return jax.tree.map(
        lambda spec: NamedSharding(mesh, nn.logical_to_mesh_axes(spec, rules)),
        logical_specs,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Batches split along their leading axis over "data", replicated over "model"."""
    return NamedSharding(mesh, PartitionSpec("data"))
