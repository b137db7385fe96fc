"""The building blocks of the T5 network, with T5X's parameter names and logical axis names.

Every parameter is created through `nn.with_logical_partitioning`, so `nn.get_partition_spec` on
the initialised variables gives the logical axes that `ct5x.partitioning` maps to a device mesh.
Parameters are float32; computation runs in the configured activation dtype, except the attention
logits, the softmax and the output logits, which are float32 whatever that dtype (T5X's output
logits, and its attention with `float32_attention_logits=True`; its default keeps them bfloat16).

Dense layers multiply 2-D [rows, features] matrices: with a 3-D activation the weight gradient
contracts two axes, and XLA:CPU then copies the activation gradient into a transposed layout in
every backward pass. Dropout masks are T5X's: broadcast along the length axis for hidden
activations and over the queries for attention weights. Each block takes its dropout key as an
argument (None = no dropout) so that a layer draws the same masks however the stack runs it.
"""

from __future__ import annotations

import math

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

# T5X's default mask value: large enough to zero a softmax weight, small enough to stay finite.
MASK_VALUE = -1e10
# Dropout on [batch, length, features] activations: one mask per row, shared along the length.
HIDDEN_BROADCAST_DIMS = (-2,)
# Dropout on [batch, heads, queries, keys] attention weights: shared by every query.
ATTENTION_BROADCAST_DIMS = (-2,)


def _init(stddev: float, axes: tuple[str, ...]) -> nn.initializers.Initializer:
    return nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)


@flax.struct.dataclass
class PackedRows:
    """Where each position of packed rows (`ct5x.packing`) comes from: its example's index in
    the step's batch and its position in that example, so that dropout draws each example the
    masks its own row gets unpacked."""

    examples: jax.Array  # [rows, length]; padding says 0, and is masked anyway
    positions: jax.Array  # [rows, length]
    count: int = flax.struct.field(pytree_node=False)  # examples in the step's batch

    @classmethod
    def of(cls, segment_ids: jax.Array | None, positions: jax.Array | None,
           examples: int | None) -> PackedRows | None:
        """The rows of a batch packed by `ct5x.packing` (segment id = example index + 1), or
        None for any other batch."""
        if examples is None or segment_ids is None or positions is None:
            return None
        return cls(jnp.maximum(segment_ids - 1, 0), positions, examples)


@flax.struct.dataclass
class PackedKey:
    """A dropout key for packed rows: `rows` describe the stack's own positions, `cross_rows`
    the encoder's (the keys of the decoder's cross-attention)."""

    key: jax.Array
    rows: PackedRows
    cross_rows: PackedRows | None = None

    def cross(self) -> PackedKey:
        return PackedKey(self.key, self.cross_rows)


DropoutKey = jax.Array | PackedKey | None


def split_key(key: DropoutKey, count: int) -> list[DropoutKey]:
    """`count` independent dropout keys from one key; all None when dropout is off."""
    if key is None:
        return [None] * count
    if isinstance(key, PackedKey):
        return [PackedKey(k, key.rows, key.cross_rows) for k in jax.random.split(key.key, count)]
    return list(jax.random.split(key, count))


def cross_key(key: DropoutKey) -> DropoutKey:
    """The key for cross-attention weights, whose keys are the encoder's positions."""
    return key.cross() if isinstance(key, PackedKey) else key


def _drawn_keep(key: jax.Array, keep_prob: float, mask_shape: list[int]) -> jax.Array:
    """Bernoulli keep-bits of `mask_shape`, drawn with the last axis first: under JAX's
    (default) partitionable threefry, element i of a longer last axis then gets the same bit as
    in a shorter one, so attention weights over keys padded to another length bucket keep the
    real keys' masks. Returned in the drawn layout [last, *others]."""
    return jax.random.bernoulli(key, keep_prob, [mask_shape[-1], *mask_shape[:-1]])


def _packed_keep(shape: tuple[int, ...], keep_prob: float, key: PackedKey) -> jax.Array:
    """The keep mask of packed [rows, length, features] activations or [rows, heads, queries,
    keys] attention weights: for each position, the bits its example draws unpacked (one mask
    per example shared along its length; per example, head and key for attention weights)."""
    rows = key.rows
    if len(shape) == 3:
        per_example = _drawn_keep(key.key, keep_prob, [rows.count, 1, shape[-1]])[:, :, 0]
        return per_example.T[rows.examples]
    drawn = _drawn_keep(key.key, keep_prob, [rows.count, shape[1], 1, shape[-1]])
    return jnp.transpose(drawn[rows.positions, rows.examples], (0, 2, 3, 1))


def dropout(
    x: jax.Array, rate: float, key: DropoutKey, broadcast_dims: tuple[int, ...]
) -> jax.Array:
    """Inverted dropout (as `flax.linen.Dropout`) whose mask is shared along `broadcast_dims`.

    Identity when `key` is None or `rate` is 0. The key is an argument rather than a Flax RNG
    stream so that a layer draws the same masks whether it runs plainly, rematerialised or scanned.
    A `PackedKey` (packed rows; hidden activations or attention weights, as their broadcast
    dims say) gives every example the mask it gets in its own row.
    """
    if key is None or rate == 0.0:
        return x
    keep_prob = 1.0 - rate
    if isinstance(key, PackedKey):
        keep = _packed_keep(x.shape, keep_prob, key)
    else:
        mask_shape = [1 if axis in {d % x.ndim for d in broadcast_dims} else size
                      for axis, size in enumerate(x.shape)]
        keep = jnp.moveaxis(_drawn_keep(key, keep_prob, mask_shape), 0, -1)
    keep = jnp.broadcast_to(keep, x.shape)
    return jax.lax.select(keep, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros_like(x))


def matmul_2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """[..., in] x [in, out] -> [..., out] as one [rows, in] x [in, out] product."""
    rows = x.reshape(-1, x.shape[-1])
    return jnp.dot(rows, kernel).reshape(*x.shape[:-1], kernel.shape[-1])


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
        mean_square = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        normed = x32 * jax.lax.rsqrt(mean_square + self.epsilon)
        return (normed * scale).astype(self.dtype)


class Embed(nn.Module):
    """The shared token embedding; `attend` gives tied logits (t5_1_0), always in float32."""

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
        """[..., embed] -> float32 [..., vocab] against the embedding table."""
        return matmul_2d(query.astype(jnp.float32), self.embedding.T)


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
        return matmul_2d(x.astype(self.dtype), kernel.astype(self.dtype))


def _first_distance_of_each_log_bucket(
    max_exact: int, num_log_buckets: int, max_distance: int
) -> list[int]:
    """Smallest distance d whose bucket is max_exact + k, for k = 1 .. num_log_buckets - 1.

    T5 puts distance d >= max_exact in bucket max_exact + floor(n * log(d / max_exact) /
    log(max_distance / max_exact)) with n = num_log_buckets, i.e. the largest k with
    d**n * max_exact**k >= max_distance**k * max_exact**n: compared here in exact integers.
    """
    firsts = []
    for k in range(1, num_log_buckets):
        guess = max_exact * (max_distance / max_exact) ** (k / num_log_buckets)
        d = max(max_exact, int(guess) - 2)
        while d**num_log_buckets * max_exact**k < max_distance**k * max_exact**num_log_buckets:
            d += 1
        firsts.append(d)
    return firsts


def relative_position_bucket(
    relative_position: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """Maps key_position - query_position (static integers) to T5's buckets, exactly.

    Near distances get a bucket each, far ones logarithmic buckets. Computed in numpy with exact
    integer comparisons: the float32 logarithm that Mesh TensorFlow and transformers evaluate lands
    exactly on bucket boundaries (distances 16, 32 and 64 for 32 buckets over 128), where one ulp of
    a device's log would move a distance into the neighbouring bucket.
    """
    relative = np.asarray(relative_position, dtype=np.int64)
    bucket = np.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        bucket += (relative > 0) * num_buckets
        distance = np.abs(relative)
    else:
        distance = np.maximum(-relative, 0)
    max_exact = num_buckets // 2
    firsts = _first_distance_of_each_log_bucket(max_exact, num_buckets - max_exact, max_distance)
    if_large = max_exact + np.searchsorted(np.asarray(firsts, np.int64), distance, side="right")
    if_large = np.minimum(if_large, num_buckets - 1)
    return (bucket + np.where(distance < max_exact, distance, if_large)).astype(np.int32)


class RelativePositionBiases(nn.Module):
    """One bias table per stack, shared by all its layers: [heads, buckets]."""

    num_buckets: int
    max_distance: int
    num_heads: int
    dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.rel_embedding = self.param(
            "rel_embedding",
            _init(1.0, ("heads", "relpos_buckets")),
            (self.num_heads, self.num_buckets),
        )

    def _gather(self, buckets: np.ndarray | jax.Array) -> jax.Array:
        # [heads, buckets] gathered to [heads, *buckets.shape]
        return jnp.take(self.rel_embedding, buckets, axis=1).astype(self.dtype)

    def __call__(self, query_length: int, key_length: int, bidirectional: bool) -> jax.Array:
        """Bias [1, heads, query_length, key_length] for positions 0.. on both sides."""
        relative = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]
        buckets = relative_position_bucket(
            relative, bidirectional, self.num_buckets, self.max_distance
        )
        return self._gather(buckets)[None]

    def at_position(self, position: jax.Array, key_length: int) -> jax.Array:
        """Causal bias [1, heads, 1, key_length] of the query at a traced `position`."""
        # Every relative position a query in [0, key_length) can see, from -(key_length - 1) up.
        relative = np.arange(-(key_length - 1), key_length)
        table = self._gather(
            relative_position_bucket(relative, False, self.num_buckets, self.max_distance)
        )
        row = jax.lax.dynamic_slice_in_dim(table, key_length - 1 - position, key_length, axis=1)
        return row[None, :, None, :]


@flax.struct.dataclass
class KeyValue:
    """Projected keys and values, [batch, heads, length, kv] each, as `project_kv` makes them.

    With `keys_transposed` the keys are [batch, heads, kv, length]: the layout in which a few
    queries per example (beams) read precomputed cross-attention keys fastest on XLA:CPU. The
    flag is static, so the attention product is chosen while tracing.
    """

    key: jax.Array
    value: jax.Array
    keys_transposed: bool = flax.struct.field(pytree_node=False, default=False)


class MultiHeadAttention(nn.Module):
    """T5 attention: no 1/sqrt(head_dim) (folded into the query init), float32 logits and
    softmax."""

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

    def _split_heads(self, projected: jax.Array) -> jax.Array:
        projected = projected.reshape(*projected.shape[:-1], self.num_heads, self.head_dim)
        return nn.with_logical_constraint(projected, ("batch", "length", "heads", "kv"))

    def project_kv(self, inputs_kv: jax.Array, keys_transposed: bool = False) -> KeyValue:
        """[batch, length, embed] -> key and value [batch, heads, length, kv] (the key
        [batch, heads, kv, length] with `keys_transposed`).

        Heads come before length so that cached keys and values are already in the layout the
        attention products read: decoding then never transposes them once per step.
        """

        def heads_first(projected: jax.Array) -> jax.Array:
            projected = jnp.swapaxes(self._split_heads(projected), 1, 2)
            return nn.with_logical_constraint(projected, ("batch", "heads", "length", "kv"))

        key = heads_first(self.key(inputs_kv))
        if keys_transposed:
            key = nn.with_logical_constraint(
                jnp.swapaxes(key, 2, 3), ("batch", "heads", "kv", "length")
            )
        return KeyValue(key, heads_first(self.value(inputs_kv)), keys_transposed)

    def __call__(
        self,
        inputs_q: jax.Array,
        key_value: KeyValue,
        bias: jax.Array | None,
        dropout_key: DropoutKey,
    ) -> jax.Array:
        """Attends [batch, q_len, embed] queries to `key_value` (`project_kv`'s layout).

        `bias` broadcasts to [batch, heads, q_len, k_len]: relative positions plus the mask.
        """
        query = self._split_heads(self.query(inputs_q))
        logits = jnp.einsum(
            "bqhd,bhdk->bhqk" if key_value.keys_transposed else "bqhd,bhkd->bhqk",
            query.astype(jnp.float32),
            key_value.key.astype(jnp.float32),
        )
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        weights = dropout(weights, self.dropout_rate, dropout_key, ATTENTION_BROADCAST_DIMS)
        # [b, h, q, d] then a transpose: XLA:CPU lowers the einsum straight to [b, q, h, d] as a
        # transposed batched dot, up to 10x slower alone for a few queries (beams) per example.
        context = jax.lax.dot_general(
            weights, key_value.value.astype(self.dtype), (((3,), (2,)), ((0, 1), (0, 1)))
        )
        context = jnp.swapaxes(context, 1, 2)
        context = context.reshape(*context.shape[:2], self.num_heads * self.head_dim)
        return nn.with_logical_constraint(self.out(context), ("batch", "length", "embed"))


class MlpBlock(nn.Module):
    """t5_1_0: relu(x wi) wo. t5_1_1: (gelu_tanh(x wi_0) * (x wi_1)) wo."""

    mlp_dim: int
    activations: tuple[str, ...]
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, dropout_key: DropoutKey) -> jax.Array:
        count = len(self.activations)
        names = ["wi"] if count == 1 else [f"wi_{i}" for i in range(count)]
        hidden = None
        for name, activation in zip(names, self.activations):
            branch = Dense(self.mlp_dim, ("embed", "mlp"), 1.0, self.dtype, name=name)(x)
            if activation == "relu":
                branch = jax.nn.relu(branch)
            elif activation == "gelu":
                branch = jax.nn.gelu(branch, approximate=True)
            hidden = branch if hidden is None else hidden * branch
        hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
        hidden = dropout(hidden, self.dropout_rate, dropout_key, HIDDEN_BROADCAST_DIMS)
        out = Dense(x.shape[-1], ("mlp", "embed"), 1.0, self.dtype, name="wo")(hidden)
        return nn.with_logical_constraint(out, ("batch", "length", "embed"))
