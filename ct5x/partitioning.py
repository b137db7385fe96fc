"""Logical axis names -> device mesh, T5X style: one table says where every axis lives.

The network names every parameter and activation axis ("embed", "mlp", "heads", "vocab", ...);
`standard_logical_axis_rules` maps those names onto a 2-D ("data", "model") mesh, and gin may bind
a different table. With one device everything is replicated and the rules are no-ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ct5x.errors import UserInputError

LogicalRules = Sequence[tuple[str, str | None]]


def standard_logical_axis_rules(
    activation_partitioning_dims: int = 1, parameter_partitioning_dims: int = 1
) -> LogicalRules:
    """T5X's default table: batch over "data"; vocab, mlp, heads and joined_kv over "model".

    Two dims additionally shard "embed" over "data" (activations and/or parameters), for models
    whose parameters do not fit on one device (T5X's 2-D sharding).
    """
    if activation_partitioning_dims not in (1, 2) or parameter_partitioning_dims not in (1, 2):
        raise UserInputError("activation/parameter_partitioning_dims must be 1 or 2")
    rules: list[tuple[str, str | None]] = [
        ("batch", "data"),
        ("vocab", "model"),
        ("mlp", "model"),
        ("heads", "model"),
        ("joined_kv", "model"),
        ("kv", None),
        ("length", None),
        ("relpos_buckets", None),
    ]
    if activation_partitioning_dims == 2 or parameter_partitioning_dims == 2:
        rules.append(("embed", "data"))
    rules.append(("embed", None))
    return rules


def make_mesh(num_partitions: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A ("data", "model") mesh: `num_partitions` devices per model replica, the rest data-parallel."""
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
