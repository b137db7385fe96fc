"""How a stack of identical layers runs: plainly, rematerialised (`T5Config.remat_policy`) or as
one `lax.scan` (`T5Config.scan_layers`, for fast compilation of deep models), and the dropout keys
of its layers.

Either way the stored parameters stay T5X's unscanned tree (`layers_0`, `layers_1`, ...): the scan
stacks the layers' parameters inside the step, and the layers' dropout keys do not depend on how
the stack runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ct5x.config import T5Config
from ct5x.layers import DropoutKey, PackedKey, PackedRows, split_key

# The jax.checkpoint policy of each rematerialisation policy but "none" (ct5x.config's names).
CHECKPOINT_POLICIES = {
    # Recompute everything in the backward pass except the layer's inputs.
    "full": jax.checkpoint_policies.nothing_saveable,
    # T5X's "minimal": keep the dense layers' outputs, recompute the rest.
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def run_layers(
    stack: nn.Module,
    layers: Sequence[nn.Module],
    x: jax.Array,
    args: tuple,
    keys: Sequence[jax.Array | None],
) -> jax.Array:
    """Applies `layers` in order: plainly, rematerialised, or as one scan over stacked params.

    Rematerialised and scanned runs apply each layer as a pure function of its parameters, read
    from the stack's own (unscanned) parameter tree, so the checkpoint layout never changes.
    """
    c: T5Config = stack.config
    if stack.is_initializing() or (c.remat_policy == "none" and not c.scan_layers):
        for layer, key in zip(layers, keys):
            x = layer(x, *args, key)
        return x
    template = type(layers[0])(c, parent=None)
    params = [stack.variables["params"][layer.name] for layer in layers]

    def apply_layer(x: jax.Array, layer_params, key: jax.Array | None) -> jax.Array:
        return template.apply({"params": layer_params}, x, *args, key)

    if c.remat_policy != "none":
        apply_layer = jax.checkpoint(apply_layer, policy=CHECKPOINT_POLICIES[c.remat_policy])
    if not c.scan_layers:
        for layer_params, key in zip(params, keys):
            x = apply_layer(x, layer_params, key)
        return x
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *params)
    stacked_keys = None if keys[0] is None else jax.tree.map(lambda *k: jnp.stack(k), *keys)

    def body(x: jax.Array, scanned) -> tuple[jax.Array, None]:
        layer_params, key = scanned
        return apply_layer(x, layer_params, key), None

    x, _ = jax.lax.scan(body, x, (stacked, stacked_keys))
    return x


def stack_keys(stack: nn.Module, deterministic: bool, count: int, rows: PackedRows | None,
                cross_rows: PackedRows | None = None) -> list[DropoutKey]:
    """Dropout keys for the embedding, each layer and the final norm of one stack (for packed
    rows, keys that carry where each position comes from)."""
    key = None if deterministic else stack.make_rng("dropout")
    if key is not None and rows is not None:
        key = PackedKey(key, rows, cross_rows)
    return split_key(key, count + 2)
