"""The T5 encoder-decoder as a Flax module whose parameter tree is T5X's.

`Transformer` has three entry points that the model wrapper (`ct5x.models`) composes: `encode`,
`decode` (teacher-forced, for the loss and scoring) and, for cached autoregressive decoding,
`precompute_cross_attention` once per input and `decode_step` once per generated token.

The identical layers of a stack can run rematerialised and as one `lax.scan`
(`ct5x.layer_stack`); either way the stored parameters stay T5X's unscanned tree.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ct5x.config import T5Config
from ct5x.layer_stack import run_layers, stack_keys
from ct5x.layers import (
    HIDDEN_BROADCAST_DIMS,
    MASK_VALUE,
    Dense,
    DropoutKey,
    Embed,
    KeyValue,
    LayerNorm,
    MlpBlock,
    MultiHeadAttention,
    PackedRows,
    RelativePositionBiases,
    cross_key,
    dropout,
    split_key,
)

Cache = dict[str, dict[str, jax.Array]]
# Each cached key and value is [rows, heads, length, head_dim] (`Transformer.init_cache`).
CACHE_LENGTH_AXIS = 2


def _dtype(config: T5Config) -> jnp.dtype:
    return jnp.dtype(config.dtype)


def attention_mask_bias(key_mask: jax.Array, same_segment: jax.Array | None = None) -> jax.Array:
    """[batch, k_len] keep-mask (and optional [batch, q_len, k_len]) -> bias
    [batch, 1, q|1, k_len]."""
    keep = key_mask[:, None, None, :]
    if same_segment is not None:
        keep = jnp.logical_and(keep, same_segment[:, None, :, :])
    return jnp.where(keep, 0.0, MASK_VALUE).astype(jnp.float32)


def _same_segment(query_segments: jax.Array | None, key_segments: jax.Array | None):
    if query_segments is None or key_segments is None:
        return None
    return query_segments[:, :, None] == key_segments[:, None, :]


def _attention(config: T5Config) -> MultiHeadAttention:
    return MultiHeadAttention(
        config.num_heads, config.head_dim, config.emb_dim, config.dropout_rate, _dtype(config)
    )


def _relpos(config: T5Config) -> RelativePositionBiases:
    return RelativePositionBiases(
        config.relative_attention_num_buckets,
        config.relative_attention_max_distance,
        config.num_heads,
        _dtype(config),
    )


def _hidden_dropout(config: T5Config, x: jax.Array, key: DropoutKey) -> jax.Array:
    return dropout(x, config.dropout_rate, key, HIDDEN_BROADCAST_DIMS)


class EncoderLayer(nn.Module):
    config: T5Config

    def setup(self) -> None:
        c, dtype = self.config, _dtype(self.config)
        self.pre_attention_layer_norm = LayerNorm(c.layer_norm_epsilon, dtype)
        self.attention = _attention(c)
        self.pre_mlp_layer_norm = LayerNorm(c.layer_norm_epsilon, dtype)
        self.mlp = MlpBlock(c.mlp_dim, c.mlp_activations, c.dropout_rate, dtype)

    def __call__(self, x: jax.Array, bias: jax.Array, dropout_key: DropoutKey) -> jax.Array:
        keys = split_key(dropout_key, 4)
        y = self.pre_attention_layer_norm(x)
        y = self.attention(y, self.attention.project_kv(y), bias, keys[0])
        x = x + _hidden_dropout(self.config, y, keys[1])
        y = self.mlp(self.pre_mlp_layer_norm(x), keys[2])
        x = x + _hidden_dropout(self.config, y, keys[3])
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


def _attend_per_example(
    attention: MultiHeadAttention,
    queries: jax.Array,
    key_value: KeyValue,
    bias: jax.Array,
    dropout_key: DropoutKey,
) -> jax.Array:
    """Cross-attention when the decoder holds several rows (beams) per encoded example.

    Beam search decodes K rows per example, one token each, against keys and values of one row
    per example. Rather than copying those keys and values K times (and reading K times as many
    bytes every step), the K beams of an example attend as K queries of that one example:
    [b*K, 1, embed] -> [b, K, embed] -> back. Row b*K + k is beam k of example b.
    """
    rows, examples = queries.shape[0], key_value.key.shape[0]
    if rows == examples:
        return attention(queries, key_value, bias, dropout_key)
    beams = rows // examples
    per_example = queries.reshape(examples, beams * queries.shape[1], queries.shape[2])
    attended = attention(per_example, key_value, bias, dropout_key)
    return attended.reshape(queries.shape)


class DecoderLayer(nn.Module):
    config: T5Config

    def setup(self) -> None:
        c, dtype = self.config, _dtype(self.config)
        self.pre_self_attention_layer_norm = LayerNorm(c.layer_norm_epsilon, dtype)
        self.self_attention = _attention(c)
        self.pre_cross_attention_layer_norm = LayerNorm(c.layer_norm_epsilon, dtype)
        self.encoder_decoder_attention = _attention(c)
        self.pre_mlp_layer_norm = LayerNorm(c.layer_norm_epsilon, dtype)
        self.mlp = MlpBlock(c.mlp_dim, c.mlp_activations, c.dropout_rate, dtype)

    def __call__(
        self,
        x: jax.Array,
        self_bias: jax.Array,
        encoded: jax.Array | None,
        cross_bias: jax.Array,
        dropout_key: DropoutKey,
        self_kv: KeyValue | None = None,
        cross_kv: KeyValue | None = None,
    ) -> jax.Array:
        """`self_kv` None attends to `x` itself, `cross_kv` None projects `encoded`; otherwise
        the given (cached, precomputed) keys and values are used."""
        keys = split_key(dropout_key, 6)
        y = self.pre_self_attention_layer_norm(x)
        self_kv = self.self_attention.project_kv(y) if self_kv is None else self_kv
        y = self.self_attention(y, self_kv, self_bias, keys[0])
        x = x + _hidden_dropout(self.config, y, keys[1])
        y = self.pre_cross_attention_layer_norm(x)
        if cross_kv is None:
            cross_kv = self.encoder_decoder_attention.project_kv(encoded)
        y = _attend_per_example(self.encoder_decoder_attention, y, cross_kv, cross_bias,
                                cross_key(keys[2]))
        x = x + _hidden_dropout(self.config, y, keys[3])
        y = self.mlp(self.pre_mlp_layer_norm(x), keys[4])
        x = x + _hidden_dropout(self.config, y, keys[5])
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))

    def step_self_kv(self, x: jax.Array) -> KeyValue:
        """Key and value of the new token(s), to be written into the cache."""
        return self.self_attention.project_kv(self.pre_self_attention_layer_norm(x))


class Encoder(nn.Module):
    config: T5Config
    shared_embedding: Embed

    def setup(self) -> None:
        c = self.config
        self.relpos_bias = _relpos(c)
        self.layers = [EncoderLayer(c, name=f"layers_{i}") for i in range(c.num_encoder_layers)]
        self.encoder_norm = LayerNorm(c.layer_norm_epsilon, _dtype(c))

    def __call__(
        self, tokens: jax.Array, segment_ids: jax.Array | None, deterministic: bool,
        rows: PackedRows | None = None,
    ) -> jax.Array:
        """[batch, length] token ids (0 = padding) -> [batch, length, embed]."""
        keys = stack_keys(self, deterministic, len(self.layers), rows)
        x = _hidden_dropout(self.config, self.shared_embedding(tokens), keys[0])
        length = tokens.shape[1]
        bias = self.relpos_bias(length, length, bidirectional=True)
        bias = bias + attention_mask_bias(tokens > 0, _same_segment(segment_ids, segment_ids))
        x = run_layers(self, self.layers, x, (bias,), keys[1:-1])
        x = _hidden_dropout(self.config, self.encoder_norm(x), keys[-1])
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class Decoder(nn.Module):
    config: T5Config
    shared_embedding: Embed

    def setup(self) -> None:
        c = self.config
        self.relpos_bias = _relpos(c)
        self.layers = [DecoderLayer(c, name=f"layers_{i}") for i in range(c.num_decoder_layers)]
        self.decoder_norm = LayerNorm(c.layer_norm_epsilon, _dtype(c))
        if not c.logits_via_embedding:
            # float32 logits, as T5X computes them whatever the activation dtype.
            self.logits_dense = Dense(c.vocab_size, ("embed", "vocab"), 1.0, jnp.float32)

    def _logits(self, x: jax.Array, dropout_key: DropoutKey) -> jax.Array:
        x = _hidden_dropout(self.config, self.decoder_norm(x), dropout_key)
        if self.config.logits_via_embedding:
            logits = self.shared_embedding.attend(x) / jnp.sqrt(jnp.float32(x.shape[-1]))
        else:
            logits = self.logits_dense(x)
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))

    def cross_kv(self, encoded: jax.Array, keys_transposed: bool = False) -> list[KeyValue]:
        return [
            layer.encoder_decoder_attention.project_kv(encoded, keys_transposed)
            for layer in self.layers
        ]

    def __call__(
        self,
        encoded: jax.Array,
        encoder_mask: jax.Array,
        decoder_input_tokens: jax.Array,
        encoder_segment_ids: jax.Array | None,
        decoder_segment_ids: jax.Array | None,
        deterministic: bool,
        rows: PackedRows | None = None,
        encoder_rows: PackedRows | None = None,
    ) -> jax.Array:
        """Teacher-forced pass: [batch, target_length] inputs -> float32 logits [.., vocab]."""
        keys = stack_keys(self, deterministic, len(self.layers), rows, encoder_rows)
        length = decoder_input_tokens.shape[1]
        x = _hidden_dropout(self.config, self.shared_embedding(decoder_input_tokens), keys[0])
        positions = jnp.arange(length)
        causal = positions[None, :, None] >= positions[None, None, :]
        same = _same_segment(decoder_segment_ids, decoder_segment_ids)
        causal = causal if same is None else jnp.logical_and(causal, same)
        self_bias = self.relpos_bias(length, length, bidirectional=False)
        self_bias = self_bias + jnp.where(causal[:, None], 0.0, MASK_VALUE)
        cross_bias = attention_mask_bias(
            encoder_mask, _same_segment(decoder_segment_ids, encoder_segment_ids)
        )
        x = run_layers(self, self.layers, x, (self_bias, encoded, cross_bias), keys[1:-1])
        return self._logits(x, keys[-1])

    def decode_step(
        self,
        tokens: jax.Array,
        position: jax.Array,
        cache: Cache,
        cross_kv: list[KeyValue],
        encoder_mask: jax.Array,
    ) -> tuple[jax.Array, Cache]:
        """One token per row at `position`: [rows] ids -> logits [rows, vocab] and the new cache.

        `cross_kv` and `encoder_mask` hold one row per example; `rows` may be a multiple of that
        (beams, example-major), and each example's rows then attend to its keys together.
        """
        x = self.shared_embedding(tokens[:, None])
        max_length = next(iter(cache.values()))["key"].shape[CACHE_LENGTH_AXIS]
        self_bias = self.relpos_bias.at_position(position, max_length)
        self_bias = self_bias + jnp.where(jnp.arange(max_length) <= position, 0.0, MASK_VALUE)
        cross_bias = attention_mask_bias(encoder_mask)
        new_cache = {}
        for i, (layer, kv) in enumerate(zip(self.layers, cross_kv)):
            entry = cache[f"layers_{i}"]
            token_kv = layer.step_self_kv(x)
            written = {
                name: jax.lax.dynamic_update_slice_in_dim(entry[name], update, position,
                                                          axis=CACHE_LENGTH_AXIS)
                for name, update in (("key", token_kv.key), ("value", token_kv.value))
            }
            new_cache[f"layers_{i}"] = written
            x = layer(x, self_bias, None, cross_bias, None, KeyValue(**written), kv)
        return self._logits(x, None)[:, 0], new_cache


class Transformer(nn.Module):
    """T5X's `Transformer`: a shared `token_embedder`, an `encoder` and a `decoder`."""

    config: T5Config

    def setup(self) -> None:
        c = self.config
        self.token_embedder = Embed(c.vocab_size, c.emb_dim, _dtype(c))
        self.encoder = Encoder(c, self.token_embedder)
        self.decoder = Decoder(c, self.token_embedder)

    def encode(
        self,
        encoder_input_tokens: jax.Array,
        encoder_segment_ids: jax.Array | None = None,
        enable_dropout: bool = False,
        encoder_rows: PackedRows | None = None,
    ) -> jax.Array:
        return self.encoder(encoder_input_tokens, encoder_segment_ids, not enable_dropout,
                            encoder_rows)

    def decode(
        self,
        encoded: jax.Array,
        encoder_input_tokens: jax.Array,
        decoder_input_tokens: jax.Array,
        encoder_segment_ids: jax.Array | None = None,
        decoder_segment_ids: jax.Array | None = None,
        enable_dropout: bool = False,
        decoder_rows: PackedRows | None = None,
        encoder_rows: PackedRows | None = None,
    ) -> jax.Array:
        return self.decoder(
            encoded,
            encoder_input_tokens > 0,
            decoder_input_tokens,
            encoder_segment_ids,
            decoder_segment_ids,
            not enable_dropout,
            decoder_rows,
            encoder_rows,
        )

    def __call__(
        self,
        encoder_input_tokens: jax.Array,
        decoder_input_tokens: jax.Array,
        encoder_segment_ids: jax.Array | None = None,
        decoder_segment_ids: jax.Array | None = None,
        enable_dropout: bool = False,
        encoder_positions: jax.Array | None = None,
        decoder_positions: jax.Array | None = None,
        packed_examples: int | None = None,
    ) -> jax.Array:
        """[batch, in_len], [batch, out_len] -> float32 logits [batch, out_len, vocab].

        `packed_examples`: the rows hold that many examples packed by `ct5x.packing` (segment
        ids and positions given), whose dropout masks are each example's own.
        """
        encoder_rows = PackedRows.of(encoder_segment_ids, encoder_positions, packed_examples)
        decoder_rows = PackedRows.of(decoder_segment_ids, decoder_positions, packed_examples)
        encoded = self.encode(encoder_input_tokens, encoder_segment_ids, enable_dropout,
                              encoder_rows)
        return self.decode(
            encoded,
            encoder_input_tokens,
            decoder_input_tokens,
            encoder_segment_ids,
            decoder_segment_ids,
            enable_dropout,
            decoder_rows,
            encoder_rows,
        )

    def precompute_cross_attention(
        self, encoded: jax.Array, keys_transposed: bool = False
    ) -> list[KeyValue]:
        """Every decoder layer's cross-attention keys and values, computed once per input. Keys
        [batch, heads, kv, in_len] if `keys_transposed` (faster on XLA:CPU for several beams per
        example, 3-5% of a beam search; slower, 2-3%, for greedy), else [batch, heads, in_len,
        kv]."""
        return self.decoder.cross_kv(encoded, keys_transposed)

    def decode_step(
        self,
        tokens: jax.Array,
        position: jax.Array,
        cache: Cache,
        cross_kv: list[KeyValue],
        encoder_mask: jax.Array,
    ) -> tuple[jax.Array, Cache]:
        return self.decoder.decode_step(tokens, position, cache, cross_kv, encoder_mask)

    def init_cache(self, rows: int, max_length: int) -> Cache:
        """Zeroed self-attention keys and values, [rows, heads, max_length, kv] per layer."""
        c = self.config
        shape = (rows, c.num_heads, max_length, c.head_dim)
        zeros = jnp.zeros(shape, _dtype(c))
        return {f"layers_{i}": {"key": zeros, "value": zeros} for i in range(c.num_decoder_layers)}


def grow_cache(cache: Cache, max_length: int) -> Cache:
    """`cache` with zeroed positions appended up to `max_length` (`Transformer.init_cache`'s
    layout), for a search whose cache grows as it decodes (`ct5x.decoding.cache_lengths`)."""
    def grow(x: jax.Array) -> jax.Array:
        widths = [(0, 0)] * x.ndim
        widths[CACHE_LENGTH_AXIS] = (0, max_length - x.shape[CACHE_LENGTH_AXIS])
        return jnp.pad(x, widths)

    return jax.tree.map(grow, cache)
