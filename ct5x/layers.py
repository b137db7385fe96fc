"""The building blocks of the T5 network, with T5X's parameter names and logical axis names.

Every parameter is created through `nn.with_logical_partitioning`, so `nn.get_partition_spec` on
the initialised variables gives the logical axes that `ct5x.partitioning` maps to a device mesh.
Parameters are float32; computation runs in the configured activation dtype.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

# T5X's default mask value: large enough to zero a softmax weight, small enough to stay finite.
MASK_VALUE = -1e10


def _init(stddev: float, axes: tuple[str, ...]) -> nn.initializers.Initializer:
    return nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)


class LayerNorm(nn.Module):
    """T5's RMS norm: scale only, no mean subtraction, statistics in float32."""

    epsilon: float = 1e-6
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (x.shape[-1],)
        )
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
        return (normed * scale).astype(self.dtype)


class Embed(nn.Module):
    """The shared token embedding; `attend` gives tied logits for t5_1_0."""

    num_embeddings: int
    features: int
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.embedding = self.param(
            "embedding", _init(1.0, ("vocab", "embed")), (self.num_embeddings, self.features)
        )

    def __call__(self, token_ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding, token_ids, axis=0).astype(self.dtype)

    def attend(self, query: jax.Array) -> jax.Array:
        # [batch, length, embed] x [vocab, embed] -> [batch, length, vocab]
        return jnp.einsum("...e,ve->...v", query, self.embedding.astype(self.dtype))


class Dense(nn.Module):
    """A bias-free projection whose kernel is stored 2-D (in, out), as T5X stores it."""

    features: int
    kernel_axes: tuple[str, str]
    init_stddev: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            _init(self.init_stddev / math.sqrt(x.shape[-1]), self.kernel_axes),
            (x.shape[-1], self.features),
        )
        return jnp.einsum("...i,io->...o", x, kernel.astype(self.dtype))


def relative_position_bucket(
    relative_position: jax.Array, bidirectional: bool, num_buckets: int, max_distance: int
) -> jax.Array:
    """Maps key_position - query_position to T5's buckets: exact when near, logarithmic when far."""
    bucket = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative_position > 0).astype(jnp.int32) * num_buckets
        distance = jnp.abs(relative_position)
    else:
        distance = jnp.maximum(-relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # Computed in float32 and truncated toward zero, as Mesh TensorFlow and transformers do.
    log_ratio = jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact) / math.log(
        max_distance / max_exact
    )
    if_large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
    if_large = jnp.minimum(if_large, num_buckets - 1)
    return bucket + jnp.where(is_small, distance, if_large)


class RelativePositionBiases(nn.Module):
    """One bias table per stack, shared by all its layers: [heads, buckets]."""

    num_buckets: int
    max_distance: int
    num_heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self, query_positions: jax.Array, key_positions: jax.Array, bidirectional: bool
    ) -> jax.Array:
        """[q_len] and [k_len] absolute positions -> bias [1, heads, q_len, k_len]."""
        rel_embedding = self.param(
            "rel_embedding",
            _init(1.0, ("heads", "relpos_buckets")),
            (self.num_heads, self.num_buckets),
        )
        relative = key_positions[None, :] - query_positions[:, None]
        buckets = relative_position_bucket(
            relative, bidirectional, self.num_buckets, self.max_distance
        )
        # [heads, buckets] gathered to [heads, q_len, k_len]
        bias = jnp.take(rel_embedding, buckets, axis=1)
        return bias[None].astype(self.dtype)


class MultiHeadAttention(nn.Module):
    """T5 attention: no 1/sqrt(head_dim) (folded into the query init), softmax in float32."""

    num_heads: int
    head_dim: int
    emb_dim: int
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        joined = self.num_heads * self.head_dim
        self.query = Dense(joined, ("embed", "joined_kv"), self.head_dim**-0.5, self.dtype)
        self.key = Dense(joined, ("embed", "joined_kv"), 1.0, self.dtype)
        self.value = Dense(joined, ("embed", "joined_kv"), 1.0, self.dtype)
        self.out = Dense(self.emb_dim, ("joined_kv", "embed"), 1.0, self.dtype)
        self.dropout = nn.Dropout(self.dropout_rate)

    def _split_heads(self, projected: jax.Array) -> jax.Array:
        projected = projected.reshape(*projected.shape[:-1], self.num_heads, self.head_dim)
        return nn.with_logical_constraint(projected, ("batch", "length", "heads", "kv"))

    def project_kv(self, inputs_kv: jax.Array) -> tuple[jax.Array, jax.Array]:
        """[batch, length, embed] -> key and value [batch, heads, length, kv].

        Heads come before length so that cached keys and values are already in the layout the
        attention products read: decoding then never transposes them once per step.
        """

        def heads_first(projected: jax.Array) -> jax.Array:
            projected = jnp.swapaxes(self._split_heads(projected), 1, 2)
            return nn.with_logical_constraint(projected, ("batch", "heads", "length", "kv"))

        return heads_first(self.key(inputs_kv)), heads_first(self.value(inputs_kv))

    def __call__(
        self,
        inputs_q: jax.Array,
        key: jax.Array,
        value: jax.Array,
        bias: jax.Array | None,
        deterministic: bool,
    ) -> jax.Array:
        """Attends [batch, q_len, embed] queries to [batch, heads, k_len, kv] keys and values.

        `bias` broadcasts to [batch, heads, q_len, k_len]: relative positions plus the mask.
        """
        query = self._split_heads(self.query(inputs_q))
        logits = jnp.einsum("bqhd,bhkd->bhqk", query, key).astype(jnp.float32)
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        weights = self.dropout(weights, deterministic=deterministic)
        context = jnp.einsum("bhqk,bhkd->bqhd", weights, value)
        context = context.reshape(*context.shape[:2], self.num_heads * self.head_dim)
        return nn.with_logical_constraint(self.out(context), ("batch", "length", "embed"))


class MlpBlock(nn.Module):
    """t5_1_0: relu(x wi) wo. t5_1_1: (gelu_tanh(x wi_0) * (x wi_1)) wo."""

    mlp_dim: int
    activations: tuple[str, ...]
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        names = ["wi"] if len(self.activations) == 1 else [f"wi_{i}" for i in range(len(self.activations))]
        hidden = None
        for name, activation in zip(names, self.activations):
            branch = Dense(self.mlp_dim, ("embed", "mlp"), 1.0, self.dtype, name=name)(x)
            if activation == "relu":
                branch = jax.nn.relu(branch)
            elif activation == "gelu":
                branch = jax.nn.gelu(branch, approximate=True)
            hidden = branch if hidden is None else hidden * branch
        hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
        hidden = nn.Dropout(self.dropout_rate)(hidden, deterministic=deterministic)
        out = Dense(x.shape[-1], ("mlp", "embed"), 1.0, self.dtype, name="wo")(hidden)
        return nn.with_logical_constraint(out, ("batch", "length", "embed"))
