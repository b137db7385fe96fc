"""The model around the network: loss, teacher-forced scoring and cached decoding.

As in T5X, a trainer calls `loss_fn`, and an evaluator calls `score_batch` and `predict_batch`;
all three take the batches that SeqIO's `EncDecFeatureConverter` produces (plain numpy or jax
arrays: encoder_input_tokens, decoder_input_tokens, decoder_target_tokens, decoder_loss_weights,
and the segment ids when packed).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ct5x import decoding, losses
from ct5x.config import T5Config
from ct5x.errors import UserInputError
from ct5x.network import Transformer, grow_cache

Params = Mapping[str, Any]
Batch = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DecodingOptions:
    """How `predict_batch` searches; the defaults reproduce transformers' `generate`."""

    num_beams: int = 1
    max_decode_length: int = 64
    # "hf": transformers' beam scoring (length_penalty exponent, default 1.0); "hf_4.22": the
    # same as transformers 4.22 (the study's) ran it, the start token counted at max length;
    # "t5x": T5X's brevity penalty ((5 + length) / 6) ** alpha, default alpha 0.6.
    length_penalty_style: str = "hf"
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise UserInputError(f"--beams={self.num_beams}: must be at least 1")
        if self.max_decode_length < 1:
            raise UserInputError(
                f"--max-decode-length={self.max_decode_length}: must be at least 1"
            )
        if self.length_penalty_style not in decoding.LENGTH_PENALTY_STYLES:
            raise UserInputError(
                f"--length-penalty-style={self.length_penalty_style!r}: expected one of "
                f"{', '.join(decoding.LENGTH_PENALTY_STYLES)}"
            )


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """T5X's loss settings and defaults (gin/runs/finetune.gin binds the paper's: z-loss 0,
    NUM_REAL_TARGET_TOKENS).

    `loss_on_padding` counts every target position, padding included, as a target (the pad id):
    the study's FLAN Stigma runs padded their labels with the pad id instead of -100, so the
    Trainer's loss averaged over every position up to the padded length.
    """

    z_loss: float = 1e-4
    label_smoothing: float = 0.0
    loss_normalizing_factor: str | float = "NONE"
    loss_on_padding: bool = False

    @property
    def counts_padding(self) -> bool:
        """Whether the loss changes with how far the targets are padded: every position counted
        as a target, or a divisor of batch x target length. Such batches keep their targets at
        the full length (no length bucket, no packing)."""
        return self.loss_on_padding or self.loss_normalizing_factor == "NUM_TOTAL_TARGET_TOKENS"


class EncoderDecoderModel:
    """Loss, scoring and decoding for one `T5Config`; stateless.

    Every method is a plain traceable function: the caller jits it with the shardings it wants
    (`jax.jit(model.predict_batch, static_argnames="options")`), inside its mesh and axis rules.
    """

    def __init__(self, config: T5Config, loss_options: LossOptions = LossOptions()):
        self.config = config
        self.loss_options = loss_options
        self.module = Transformer(config)

    def _dummy_inputs(self, batch_size: int, input_length: int, target_length: int):
        return (
            jnp.ones((batch_size, input_length), jnp.int32),
            jnp.ones((batch_size, target_length), jnp.int32),
        )

    def init_params(self, rng: jax.Array, input_length: int = 8, target_length: int = 8) -> Params:
        """Freshly initialised float32 parameters (T5X's tree, unboxed)."""
        variables = self.module.init(rng, *self._dummy_inputs(1, input_length, target_length))
        return nn.unbox(variables["params"])

    @functools.cached_property
    def params_shapes(self) -> Params:
        """The parameters' shapes and dtypes (`jax.ShapeDtypeStruct`s), traced once per model:
        the shape check of a checkpoint, the disk-space check and the trainer share them."""
        return jax.eval_shape(self.init_params, jax.random.PRNGKey(0))

    def params_logical_axes(self) -> Params:
        """The logical axis names of every parameter, as a tree of `PartitionSpec`s."""
        boxed = jax.eval_shape(
            lambda: self.module.init(jax.random.PRNGKey(0), *self._dummy_inputs(1, 2, 2))
        )
        return nn.get_partition_spec(boxed["params"])

    def logits(self, params: Params, batch: Batch, dropout_rng: jax.Array | None = None,
               packed_examples: int | None = None):
        """Teacher-forced float32 logits [batch, target_length, vocab]; `packed_examples`: the
        batch is `ct5x.packing`'s rows of that many examples."""
        rngs = None if dropout_rng is None else {"dropout": dropout_rng}
        return self.module.apply(
            {"params": params},
            batch["encoder_input_tokens"],
            batch["decoder_input_tokens"],
            batch.get("encoder_segment_ids"),
            batch.get("decoder_segment_ids"),
            enable_dropout=dropout_rng is not None,
            encoder_positions=batch.get("encoder_positions"),
            decoder_positions=batch.get("decoder_positions"),
            packed_examples=packed_examples,
            rngs=rngs,
        )

    def loss_fn(
        self, params: Params, batch: Batch, dropout_rng: jax.Array | None,
        packed_examples: int | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar loss for a gradient step, and its parts for logging."""
        logits = self.logits(params, batch, dropout_rng, packed_examples)
        targets = batch["decoder_target_tokens"]
        weights = batch.get("decoder_loss_weights")
        options = self.loss_options
        if options.loss_on_padding:
            weights = jnp.ones_like(targets)
        elif weights is None:
            weights = targets > 0
        loss, parts = losses.weighted_loss(
            logits,
            targets,
            weights,
            options.z_loss,
            options.label_smoothing,
            options.loss_normalizing_factor,
            segment_ids=batch.get("decoder_segment_ids"),
        )
        correct = jnp.sum((jnp.argmax(logits, -1) == targets) * weights)
        return loss, {**parts, "loss": loss, "correct_tokens": correct}

    def score_batch(self, params: Params, batch: Batch) -> jax.Array:
        """Per-row log-likelihood of the targets: the sum over target tokens, EOS included (over
        every example of a packed row)."""
        targets = batch["decoder_target_tokens"]
        weights = batch.get("decoder_loss_weights")
        if weights is None:
            weights = targets > 0
        token_scores = losses.token_log_likelihood(self.logits(params, batch), targets)
        return jnp.sum(token_scores * weights, axis=-1)

    def predict_batch(
        self, params: Params, batch: Batch, options: DecodingOptions = DecodingOptions()
    ) -> jax.Array:
        """Decoded tokens [batch, max_decode_length], padding after EOS."""
        return self.predict_batch_with_aux(params, batch, options)[0]

    def predict_batch_with_aux(
        self, params: Params, batch: Batch, options: DecodingOptions = DecodingOptions()
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Decoded tokens and {"scores": [batch] float32}, as T5X's `predict_batch_with_aux`.

        The score is the sum of the token log-probabilities (EOS included) for greedy decoding,
        and the returned beam's final score under the length-penalty style for beam search.
        Encoding, the cross-attention projections and the whole search trace into one program:
        jit this (`options` static) and it compiles once per batch shape.
        """
        encoder_tokens = batch["encoder_input_tokens"]
        batch_size = encoder_tokens.shape[0]
        variables = {"params": params}
        encoded = self.module.apply(variables, encoder_tokens, method=Transformer.encode)
        keys_transposed = options.num_beams > 1
        cross_kv = self.module.apply(
            variables, encoded, keys_transposed, method=Transformer.precompute_cross_attention
        )
        # One row of cross-attention keys and values per example, also under beam search: the
        # decoder attends each example's beams to them together (no per-beam copies).
        encoder_mask = encoder_tokens > 0

        def tokens_to_logits(tokens, step, cache):
            return self.module.apply(
                variables, tokens, step, cache, cross_kv, encoder_mask,
                method=Transformer.decode_step,
            )

        first_length = decoding.cache_lengths(options.max_decode_length)[0]
        cache = self.module.apply(variables, batch_size, first_length,
                                  method=Transformer.init_cache)
        common = {
            "batch_size": batch_size,
            "max_decode_length": options.max_decode_length,
            "decoder_start_id": self.config.decoder_start_id,
            "eos_id": self.config.eos_id,
            "pad_id": self.config.pad_id,
            "grow_cache": grow_cache,
        }
        if options.num_beams == 1:
            tokens, scores = decoding.greedy_search(tokens_to_logits, cache, **common)
        else:
            tokens, scores = decoding.beam_search(
                tokens_to_logits,
                cache,
                num_beams=options.num_beams,
                length_penalty_style=options.length_penalty_style,
                alpha=options.alpha,
                **common,
            )
        return tokens, {"scores": scores}
