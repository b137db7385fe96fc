"""The T5 encoder-decoder as a Flax module whose parameter tree is T5X's.

`Transformer` has three entry points that the model wrapper (`ct5x.models`) composes: `encode`,
`decode` (teacher-forced, for the loss and scoring) and, for cached autoregressive decoding,
`precompute_cross_attention` once per input and `decode_step` once per generated token.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ct5x.config import T5Config
from ct5x.layers import (
    MASK_VALUE,
    Dense,
    Embed,
    LayerNorm,
    MlpBlock,
    MultiHeadAttention,
    RelativePositionBiases,
)

Cache = dict[str, dict[str, jax.Array]]


def _dtype(config: T5Config) -> jnp.dtype:
    return jnp.dtype(config.dtype)


def attention_mask_bias(key_mask: jax.Array, same_segment: jax.Array | None = None) -> jax.Array:
    """[batch, k_len] keep-mask (and optional [batch, q_len, k_len]) -> bias [batch, 1, q|1, k_len]."""
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


class EncoderLayer(nn.Module):
    config: T5Config

    def setup(self) -> None:
        c, dtype = self.config, _dtype(self.config)
        self.pre_attention_layer_norm = LayerNorm(c.layer_norm_epsilon, dtype)
        self.attention = _attention(c)
        self.pre_mlp_layer_norm = LayerNorm(c.layer_norm_epsilon, dtype)
        self.mlp = MlpBlock(c.mlp_dim, c.mlp_activations, c.dropout_rate, dtype)
        self.dropout = nn.Dropout(c.dropout_rate)

    def __call__(self, x: jax.Array, bias: jax.Array, deterministic: bool) -> jax.Array:
        y = self.pre_attention_layer_norm(x)
        y = self.attention(y, *self.attention.project_kv(y), bias, deterministic)
        x = x + self.dropout(y, deterministic=deterministic)
        y = self.mlp(self.pre_mlp_layer_norm(x), deterministic)
        x = x + self.dropout(y, deterministic=deterministic)
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class Encoder(nn.Module):
    config: T5Config
    shared_embedding: Embed

    def setup(self) -> None:
        c = self.config
        self.relpos_bias = _relpos(c)
        self.layers = [EncoderLayer(c, name=f"layers_{i}") for i in range(c.num_encoder_layers)]
        self.encoder_norm = LayerNorm(c.layer_norm_epsilon, _dtype(c))
        self.dropout = nn.Dropout(c.dropout_rate)

    def __call__(
        self, tokens: jax.Array, segment_ids: jax.Array | None, deterministic: bool
    ) -> jax.Array:
        """[batch, length] token ids (0 = padding) -> [batch, length, embed]."""
        x = self.dropout(self.shared_embedding(tokens), deterministic=deterministic)
        positions = jnp.arange(tokens.shape[1])
        bias = self.relpos_bias(positions, positions, bidirectional=True)
        bias = bias + attention_mask_bias(tokens > 0, _same_segment(segment_ids, segment_ids))
        for layer in self.layers:
            x = layer(x, bias, deterministic)
        x = self.dropout(self.encoder_norm(x), deterministic=deterministic)
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


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
        self.dropout = nn.Dropout(c.dropout_rate)

    def __call__(
        self,
        x: jax.Array,
        self_kv: tuple[jax.Array, jax.Array] | None,
        self_bias: jax.Array,
        cross_kv: tuple[jax.Array, jax.Array],
        cross_bias: jax.Array,
        deterministic: bool,
    ) -> jax.Array:
        """`self_kv` None attends to `x` itself; otherwise to the given (cached) keys and values."""
        y = self.pre_self_attention_layer_norm(x)
        key, value = self.self_attention.project_kv(y) if self_kv is None else self_kv
        y = self.self_attention(y, key, value, self_bias, deterministic)
        x = x + self.dropout(y, deterministic=deterministic)
        y = self.pre_cross_attention_layer_norm(x)
        y = self.encoder_decoder_attention(y, *cross_kv, cross_bias, deterministic)
        x = x + self.dropout(y, deterministic=deterministic)
        y = self.mlp(self.pre_mlp_layer_norm(x), deterministic)
        x = x + self.dropout(y, deterministic=deterministic)
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))

    def step_self_kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Key and value of the new token(s), to be written into the cache."""
        return self.self_attention.project_kv(self.pre_self_attention_layer_norm(x))


class Decoder(nn.Module):
    config: T5Config
    shared_embedding: Embed

    def setup(self) -> None:
        c = self.config
        self.relpos_bias = _relpos(c)
        self.layers = [DecoderLayer(c, name=f"layers_{i}") for i in range(c.num_decoder_layers)]
        self.decoder_norm = LayerNorm(c.layer_norm_epsilon, _dtype(c))
        self.dropout = nn.Dropout(c.dropout_rate)
        if not c.logits_via_embedding:
            self.logits_dense = Dense(c.vocab_size, ("embed", "vocab"), 1.0, _dtype(c))

    def _logits(self, x: jax.Array, deterministic: bool) -> jax.Array:
        x = self.dropout(self.decoder_norm(x), deterministic=deterministic)
        if self.config.logits_via_embedding:
            logits = self.shared_embedding.attend(x) / jnp.sqrt(x.shape[-1]).astype(x.dtype)
        else:
            logits = self.logits_dense(x)
        return nn.with_logical_constraint(logits.astype(jnp.float32), ("batch", "length", "vocab"))

    def cross_kv(self, encoded: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        return [layer.encoder_decoder_attention.project_kv(encoded) for layer in self.layers]

    def __call__(
        self,
        encoded: jax.Array,
        encoder_mask: jax.Array,
        decoder_input_tokens: jax.Array,
        encoder_segment_ids: jax.Array | None,
        decoder_segment_ids: jax.Array | None,
        deterministic: bool,
    ) -> jax.Array:
        """Teacher-forced pass: [batch, target_length] inputs -> float32 logits [.., vocab]."""
        length = decoder_input_tokens.shape[1]
        x = self.dropout(self.shared_embedding(decoder_input_tokens), deterministic=deterministic)
        positions = jnp.arange(length)
        causal = positions[None, :, None] >= positions[None, None, :]
        same = _same_segment(decoder_segment_ids, decoder_segment_ids)
        causal = causal if same is None else jnp.logical_and(causal, same)
        self_bias = self.relpos_bias(positions, positions, bidirectional=False)
        self_bias = self_bias + jnp.where(causal[:, None], 0.0, MASK_VALUE)
        cross_bias = attention_mask_bias(
            encoder_mask, _same_segment(decoder_segment_ids, encoder_segment_ids)
        )
        for layer, kv in zip(self.layers, self.cross_kv(encoded)):
            x = layer(x, None, self_bias, kv, cross_bias, deterministic)
        return self._logits(x, deterministic)

    def decode_step(
        self,
        tokens: jax.Array,
        position: jax.Array,
        cache: Cache,
        cross_kv: list[tuple[jax.Array, jax.Array]],
        encoder_mask: jax.Array,
    ) -> tuple[jax.Array, Cache]:
        """One token per row at `position`: [rows] ids -> logits [rows, vocab] and the new cache."""
        x = self.shared_embedding(tokens[:, None])
        max_length = next(iter(cache.values()))["key"].shape[2]
        key_positions = jnp.arange(max_length)
        self_bias = self.relpos_bias(position[None], key_positions, bidirectional=False)
        self_bias = self_bias + jnp.where(key_positions <= position, 0.0, MASK_VALUE)
        cross_bias = attention_mask_bias(encoder_mask)
        new_cache = {}
        for i, (layer, kv) in enumerate(zip(self.layers, cross_kv)):
            entry = cache[f"layers_{i}"]
            key, value = layer.step_self_kv(x)
            key = jax.lax.dynamic_update_slice_in_dim(entry["key"], key, position, axis=2)
            value = jax.lax.dynamic_update_slice_in_dim(entry["value"], value, position, axis=2)
            new_cache[f"layers_{i}"] = {"key": key, "value": value}
            x = layer(x, (key, value), self_bias, kv, cross_bias, deterministic=True)
        return self._logits(x, deterministic=True)[:, 0], new_cache


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
    ) -> jax.Array:
        return self.encoder(encoder_input_tokens, encoder_segment_ids, not enable_dropout)

    def decode(
        self,
        encoded: jax.Array,
        encoder_input_tokens: jax.Array,
        decoder_input_tokens: jax.Array,
        encoder_segment_ids: jax.Array | None = None,
        decoder_segment_ids: jax.Array | None = None,
        enable_dropout: bool = False,
    ) -> jax.Array:
        return self.decoder(
            encoded,
            encoder_input_tokens > 0,
            decoder_input_tokens,
            encoder_segment_ids,
            decoder_segment_ids,
            not enable_dropout,
        )

    def __call__(
        self,
        encoder_input_tokens: jax.Array,
        decoder_input_tokens: jax.Array,
        encoder_segment_ids: jax.Array | None = None,
        decoder_segment_ids: jax.Array | None = None,
        enable_dropout: bool = False,
    ) -> jax.Array:
        """[batch, in_len], [batch, out_len] -> float32 logits [batch, out_len, vocab]."""
        encoded = self.encode(encoder_input_tokens, encoder_segment_ids, enable_dropout)
        return self.decode(
            encoded,
            encoder_input_tokens,
            decoder_input_tokens,
            encoder_segment_ids,
            decoder_segment_ids,
            enable_dropout,
        )

    def precompute_cross_attention(self, encoded: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        """Every decoder layer's cross-attention keys and values, computed once per input."""
        return self.decoder.cross_kv(encoded)

    def decode_step(
        self,
        tokens: jax.Array,
        position: jax.Array,
        cache: Cache,
        cross_kv: list[tuple[jax.Array, jax.Array]],
        encoder_mask: jax.Array,
    ) -> tuple[jax.Array, Cache]:
        return self.decoder.decode_step(tokens, position, cache, cross_kv, encoder_mask)

    def init_cache(self, rows: int, max_length: int) -> Cache:
        """Zeroed self-attention keys and values, [rows, heads, max_length, kv] per layer."""
        c = self.config
        shape = (rows, c.num_heads, max_length, c.head_dim)
        zeros = jnp.zeros(shape, _dtype(c))
        return {f"layers_{i}": {"key": zeros, "value": zeros} for i in range(c.num_decoder_layers)}
