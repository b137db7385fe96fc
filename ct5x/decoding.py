"""Greedy and beam search over a key/value-cached decoder, each a single `lax.while_loop`.

The search functions are pure and traceable; the caller jits them (around the model's
`predict_batch`), so that one decode is one XLA program whatever its length. `batch_size`,
`num_beams` and `max_decode_length` must be static (Python ints) under that jit.

Beam search offers three scoring conventions so that results can match either stack:

- "hf": what transformers 5.24 `generate(num_beams=K, max_new_tokens=N)` does with its defaults
  (`length_penalty=1.0`, `early_stopping=False`). A hypothesis ends when it emits EOS or reaches
  N tokens; its score is its summed log-probability divided by (generated length, EOS included)
  ** alpha. Only the best K of the 2K candidates of a step may end there. An example stops once
  its best live beam, scored as if it ended now, cannot beat its worst kept hypothesis.
  transformers runs greedy search for num_beams=1, and so does this style.
- "hf_4.22": what transformers 4.22 (the study's version) did with the same defaults. A
  hypothesis that emits EOS is scored as in "hf"; the beams still live at the last step are all
  finalised, each divided by its length counting the decoder start token (N + 1 for N generated
  tokens). An example stops once its best candidate of the step (EOS or not), scored at the
  step's length, cannot beat its worst kept hypothesis.
- "t5x": what T5X's `decoding.beam_search` does. Only EOS ends a hypothesis; its score is the
  log-probability divided by ((5 + length) / 6) ** alpha. Any of the 2K candidates may end. An
  example stops once its worst kept hypothesis beats its best live log-probability divided by
  the penalty at max_decode_length + 1 (T5X's bound). If no hypothesis ended, the best live
  sequence is returned with its raw log-probability.

Both run each example as if it were decoded alone: once an example has stopped its kept
hypotheses are frozen, so outputs do not depend on the batch they were decoded in. (T5X keeps
updating stopped examples while others run; for alpha >= 0 that can change nothing.)

A long search grows its self-attention cache while it runs (`cache_lengths`): the loop runs in
stages, each its own `while_loop` over a cache as long as that stage's last position needs, and
the cache is padded between stages, so that early steps do not read the many positions that are
not written yet. Those add exact zeros to the attention, so the results are a
full-length cache's up to the order of float sums.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ct5x.errors import UserInputError

PyTree = Any
# (last_tokens [N] int32, step scalar int32 (0 = decoder-start position), cache)
#   -> (logits [N, V], new cache); every cache leaf of rank >= 1 has a leading N axis.
TokensToLogits = Callable[[jax.Array, jax.Array, PyTree], tuple[jax.Array, PyTree]]
# (cache, length) -> the cache with zeroed positions appended up to `length`.
GrowCache = Callable[[PyTree, int], PyTree]

# Large finite negative score for masked candidates; finite so that sums never make NaN.
NEG_INF = np.float32(-1.0e9)
LENGTH_PENALTY_STYLES = ("hf", "hf_4.22", "t5x")
DEFAULT_ALPHA = {"hf": 1.0, "hf_4.22": 1.0, "t5x": 0.6}
# Searches of at least GROWN_CACHE_MIN_LENGTH tokens grow their self-attention cache in stages of
# about CACHE_STAGE_LENGTH positions (at least two). Every step reads its stage's whole cache, so
# a finer stage reads fewer unwritten positions; each stage compiles its own loop. On a 2-core CPU
# (t5_1_1-small, greedy, 64 rows, 512 tokens) the self-attention products read the cache at the
# machine's memory rate, 40 of a step's 101 ms of op time with 2 stages and 31 of 92 ms with 4;
# a decode took 41.5 s against 45.5 s (medians of 4 interleaved rounds, 4 stages faster in each)
# for +1.8 s of compilation. 8 stages (+6.4 s) were no surer. At 128 tokens one stage of 64 saved
# 3% for +1.2 s of compilation, so shorter searches keep one cache.
GROWN_CACHE_MIN_LENGTH = 256
CACHE_STAGE_LENGTH = 128


def cache_lengths(max_decode_length: int) -> list[int]:
    """The self-attention cache's length in each stage of a search that grows its cache (a
    caller that passes `grow_cache` allocates the initial cache at the first of these)."""
    if max_decode_length < GROWN_CACHE_MIN_LENGTH:
        return [max_decode_length]
    stages = max(2, max_decode_length // CACHE_STAGE_LENGTH)
    return [-(-max_decode_length * (stage + 1) // stages) for stage in range(stages)]


def _staged_loop(not_finished: Callable, body: Callable, state: NamedTuple,
                 max_decode_length: int, grow_cache: GrowCache | None) -> NamedTuple:
    """`while_loop(not_finished, body, state)`, run in cache stages when `grow_cache` is given:
    stage k ends when `state.step` reaches its cache length, then the cache grows."""
    if grow_cache is None:
        return jax.lax.while_loop(not_finished, body, state)
    for stage, length in enumerate(cache_lengths(max_decode_length)):
        if stage:
            state = state._replace(cache=grow_cache(state.cache, length))
        state = jax.lax.while_loop(
            lambda s, end=length: not_finished(s) & (s.step < end), body, state
        )
    return state


def _gather_rows(tree: PyTree, rows: jax.Array) -> PyTree:
    """Reorder every leaf of rank >= 1 along its leading axis by `rows` [N]."""
    return jax.tree_util.tree_map(lambda x: jnp.take(x, rows, axis=0) if jnp.ndim(x) else x, tree)


def first_argmax(x: jax.Array) -> jax.Array:
    """`jnp.argmax(x, axis=-1)` as int32 (first maximum, or first NaN), computed as a max and then
    the first index that holds it: two plain reductions that XLA:CPU vectorises, 3x faster than
    the variadic (value, index) reduction that argmax lowers to, over a 32k vocabulary."""
    size = x.shape[-1]
    best = jnp.max(x, axis=-1, keepdims=True)
    indices = jnp.arange(size, dtype=jnp.int32)
    return jnp.min(jnp.where((x == best) | jnp.isnan(x), indices, size), axis=-1)


def top_k_by_blocks(x: jax.Array, k: int, block: int = 128) -> tuple[jax.Array, jax.Array]:
    """`jax.lax.top_k(x, k)` for [rows, n] with small k and large n, ties to the lower index.

    XLA:CPU's TopK takes about 1.1 ms for 8 rows of 3 x 32128 beam candidates; this, 0.2 ms.
    The k best lie in the k blocks whose maxima are best (any other block's elements are beaten
    by k block maxima), so one vectorised max per block, a top-k over the block maxima and one
    over those k blocks, kept in index order so that ties resolve as top_k's do, give the same
    values and indices.
    """
    rows, size = x.shape
    if size < 4 * k * block:  # too few blocks for the two stages to pay
        return jax.lax.top_k(x, k)
    padding = -size % block  # -inf padding after every real element can never be chosen
    blocks = jnp.pad(x, ((0, 0), (0, padding)), constant_values=-jnp.inf).reshape(rows, -1, block)
    _, best_blocks = jax.lax.top_k(jnp.max(blocks, axis=-1), k)
    best_blocks = jnp.sort(best_blocks, axis=-1)
    candidates = jnp.take_along_axis(blocks, best_blocks[:, :, None], axis=1).reshape(rows, -1)
    values, positions = jax.lax.top_k(candidates, k)
    block_of = jnp.take_along_axis(best_blocks, positions // block, axis=1)
    return values, block_of * block + positions % block


def _check_lengths(batch_size: int, max_decode_length: int, num_beams: int = 1) -> None:
    for name, value in (("batch_size", batch_size), ("max_decode_length", max_decode_length),
                        ("num_beams", num_beams)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise UserInputError(
                f"decoding setting {name} must be a positive integer, got {value!r}"
            )


class _GreedyState(NamedTuple):
    step: jax.Array  # scalar int32: how many tokens have been generated
    last_tokens: jax.Array  # [batch] int32: token fed to the decoder at this step
    sequences: jax.Array  # [batch, max_decode_length] int32
    log_probs: jax.Array  # [batch] float32: summed log-probability up to and including EOS
    lengths: jax.Array  # [batch] int32: generated tokens up to and including EOS
    done: jax.Array  # [batch] bool: emitted EOS already
    cache: PyTree


def _greedy(
    tokens_to_logits: TokensToLogits,
    initial_cache: PyTree,
    batch_size: int,
    max_decode_length: int,
    decoder_start_id: int,
    eos_id: int,
    pad_id: int,
    grow_cache: GrowCache | None,
) -> _GreedyState:
    """Arg-max loop that also tracks each row's log-probability and length."""

    def not_finished(state: _GreedyState) -> jax.Array:
        return (state.step < max_decode_length) & ~jnp.all(state.done)

    def decode_one(state: _GreedyState) -> _GreedyState:
        logits, cache = tokens_to_logits(state.last_tokens, state.step, state.cache)
        logits = logits.astype(jnp.float32)  # [batch, vocab]
        tokens = first_argmax(logits)  # [batch]
        token_log_probs = jnp.take_along_axis(
            jax.nn.log_softmax(logits, axis=-1), tokens[:, None], axis=-1
        )[:, 0]
        live = ~state.done
        tokens = jnp.where(live, tokens, jnp.int32(pad_id))
        return _GreedyState(
            step=state.step + 1,
            last_tokens=tokens,
            sequences=state.sequences.at[:, state.step].set(tokens),
            log_probs=state.log_probs + jnp.where(live, token_log_probs, 0.0),
            lengths=state.lengths + live.astype(jnp.int32),
            done=state.done | (tokens == eos_id),
            cache=cache,
        )

    start = _GreedyState(
        step=jnp.int32(0),
        last_tokens=jnp.full((batch_size,), decoder_start_id, jnp.int32),
        sequences=jnp.full((batch_size, max_decode_length), pad_id, jnp.int32),
        log_probs=jnp.zeros((batch_size,), jnp.float32),
        lengths=jnp.zeros((batch_size,), jnp.int32),
        done=jnp.zeros((batch_size,), bool),
        cache=initial_cache,
    )
    return _staged_loop(not_finished, decode_one, start, max_decode_length, grow_cache)


def greedy_search(
    tokens_to_logits: TokensToLogits,
    initial_cache: PyTree,
    *,
    batch_size: int,
    max_decode_length: int,
    decoder_start_id: int,
    eos_id: int,
    pad_id: int = 0,
    grow_cache: GrowCache | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Arg-max decoding; returns the tokens [batch, max_decode_length] (pad_id after EOS) and
    each row's summed token log-probability [batch] (EOS included), as T5X's greedy decode does.
    With `grow_cache`, `initial_cache` holds `cache_lengths(max_decode_length)[0]` positions.

    Same as transformers `generate(num_beams=1, do_sample=False)` and T5X greedy (top-k 1):
    the loop ends when every row has emitted EOS or max_decode_length tokens exist.
    """
    _check_lengths(batch_size, max_decode_length)
    final = _greedy(
        tokens_to_logits, initial_cache, batch_size, max_decode_length, decoder_start_id,
        eos_id, pad_id, grow_cache,
    )
    return final.sequences, final.log_probs


class _BeamState(NamedTuple):
    step: jax.Array  # scalar int32: how many tokens the live beams hold
    live_tokens: jax.Array  # [batch * beams] int32: token each live beam feeds next
    live_seqs: jax.Array  # [batch, beams, length] int32, best beam first
    live_scores: jax.Array  # [batch, beams] float32 summed log-probabilities
    kept_seqs: jax.Array  # [batch, beams, length] int32: best ended hypotheses, best first
    kept_scores: jax.Array  # [batch, beams] float32 length-penalised scores
    kept_flags: jax.Array  # [batch, beams] bool: slot holds a real ended hypothesis
    searching: jax.Array  # [batch] bool: the example can still improve its kept set
    cache: PyTree  # leaves [batch * beams, ...]


def _penalty_table(style: str, alpha: float, max_decode_length: int) -> np.ndarray:
    """[max_decode_length + 2] float32 divisor for a hypothesis of each generated length."""
    lengths = np.arange(max_decode_length + 2, dtype=np.float64)
    if style.startswith("hf"):
        return (lengths**alpha).astype(np.float32)
    return (((5.0 + lengths) / 6.0) ** alpha).astype(np.float32)


def _keep_best(kept: tuple, ended: tuple) -> tuple:
    """The K best of kept and newly ended hypotheses: (scores [batch, K], sequences
    [batch, K, length], flags [batch, K]), from two such triples (the second may hold more)."""
    scores = jnp.concatenate([kept[0], ended[0]], axis=1)
    best_scores, pick = jax.lax.top_k(scores, kept[0].shape[1])
    seqs = jnp.take_along_axis(jnp.concatenate([kept[1], ended[1]], axis=1), pick[:, :, None],
                               axis=1)
    flags = jnp.take_along_axis(jnp.concatenate([kept[2], ended[2]], axis=1), pick, axis=1)
    return best_scores, seqs, flags


def beam_search(
    tokens_to_logits: TokensToLogits,
    initial_cache: PyTree,
    *,
    batch_size: int,
    num_beams: int,
    max_decode_length: int,
    decoder_start_id: int,
    eos_id: int,
    pad_id: int = 0,
    length_penalty_style: str = "hf",
    alpha: float | None = None,
    grow_cache: GrowCache | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Beam search; returns the best sequence [batch, max_decode_length] (pad_id after EOS) and
    its score [batch]. Traceable: jit it around the caller's step with the sizes static.

    `initial_cache` leaves have leading axis `batch_size`. The first step, where every beam of
    an example is the same, runs once per example: `tokens_to_logits` first sees those
    batch_size rows. Choosing its beams copies the cache to batch_size * num_beams rows, which
    every later call sees (row b*K + k is beam k of example b) and which are reordered along
    axis 0 as beams move. `alpha` is Hugging Face's length_penalty exponent for the styles
    "hf" and "hf_4.22" (default 1.0) and T5X's brevity alpha for "t5x" (default 0.6). Any
    vocabulary of two or more tokens works, even one smaller than the beam: candidates that
    descend from an empty beam slot are never kept as hypotheses. With `grow_cache`, as in
    `greedy_search`.
    """
    _check_lengths(batch_size, max_decode_length, num_beams)
    if length_penalty_style not in LENGTH_PENALTY_STYLES:
        raise UserInputError(
            f"decoding setting length_penalty_style must be one of {LENGTH_PENALTY_STYLES}, "
            f"got {length_penalty_style!r}"
        )
    hf_style = length_penalty_style.startswith("hf")
    hf_4_22 = length_penalty_style == "hf_4.22"
    alpha = DEFAULT_ALPHA[length_penalty_style] if alpha is None else float(alpha)
    penalty = jnp.asarray(_penalty_table(length_penalty_style, alpha, max_decode_length))
    if hf_style and num_beams == 1:
        # transformers runs greedy search for num_beams=1; score it as a finished beam would be.
        final = _greedy(
            tokens_to_logits, initial_cache, batch_size, max_decode_length, decoder_start_id,
            eos_id, pad_id, grow_cache,
        )
        return final.sequences, final.log_probs / penalty[final.lengths]
    # T5X bounds what a live beam can still reach by the penalty one past the last length.
    t5x_bound = penalty[max_decode_length + 1]
    num_candidates = 2 * num_beams  # enough that K non-EOS beams always survive a step
    beam_offsets = (jnp.arange(batch_size, dtype=jnp.int32) * num_beams)[:, None]  # [batch, 1]

    def keep_searching(state: _BeamState) -> jax.Array:
        return (state.step < max_decode_length) & jnp.any(state.searching)

    def extend_beams(state: _BeamState) -> _BeamState:
        logits, cache = tokens_to_logits(state.live_tokens, state.step, state.cache)  # [N, V]
        return choose_beams(state, logits, cache)

    def choose_beams(state: _BeamState, logits: jax.Array, cache: PyTree) -> _BeamState:
        """`logits` and `cache` hold one row per beam, or one per example (the first step)."""
        step = state.step
        rows_per_example = logits.shape[0] // batch_size
        vocab_size = logits.shape[-1]
        if vocab_size < 2:
            raise UserInputError(
                f"decoding setting num_beams={num_beams} needs a vocabulary of at least "
                f"2 tokens, the model has {vocab_size}"
            )
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        log_probs = log_probs.reshape(batch_size, rows_per_example, vocab_size)
        totals = (log_probs + state.live_scores[:, :, None]).reshape(batch_size, -1)

        # The 2K best continuations over all beams: [batch, 2K], best first.
        cand_scores, cand_index = top_k_by_blocks(totals, num_candidates)
        cand_beam = cand_index // vocab_size
        cand_token = (cand_index % vocab_size).astype(jnp.int32)
        cand_seqs = jnp.take_along_axis(state.live_seqs, cand_beam[:, :, None], axis=1)
        cand_seqs = cand_seqs.at[:, :, step].set(cand_token)  # [batch, 2K, length]
        cand_eos = cand_token == eos_id
        # Empty beam slots (score NEG_INF) also yield candidates when K * V is small: not real.
        cand_real = cand_scores > NEG_INF / 2

        # Live set: the K best candidates that did not emit EOS.
        live_pick_scores, live_pick = jax.lax.top_k(
            jnp.where(cand_eos, cand_scores + NEG_INF, cand_scores), num_beams
        )
        live_seqs = jnp.take_along_axis(cand_seqs, live_pick[:, :, None], axis=1)
        live_tokens = jnp.take_along_axis(cand_token, live_pick, axis=1).reshape(-1)
        source_rows = jnp.take_along_axis(cand_beam, live_pick, axis=1) + beam_offsets
        cache = _gather_rows(cache, source_rows.reshape(-1) // (num_beams // rows_per_example))

        # Kept set: merge candidates that end here into the K best ended hypotheses.
        last_step = step == max_decode_length - 1
        in_top_k = jnp.arange(num_candidates) < num_beams
        if length_penalty_style == "hf":
            ends = (cand_eos | last_step) & in_top_k[None, :]
        elif hf_4_22:
            ends = cand_eos & in_top_k[None, :]
        else:
            ends = cand_eos
        ends = ends & cand_real & state.searching[:, None]
        kept = _keep_best(
            (state.kept_scores, state.kept_seqs, state.kept_flags),
            (jnp.where(ends, cand_scores / penalty[step + 1], NEG_INF), cand_seqs, ends),
        )

        # Can a live beam still beat the worst kept hypothesis?
        if hf_4_22:
            best_live = cand_scores[:, 0] / penalty[step + 1]  # the best candidate, EOS or not
        elif hf_style:
            best_live = live_pick_scores[:, 0] / penalty[step + 1]
        else:
            best_live = live_pick_scores[:, 0] / t5x_bound
        worst_kept = jnp.min(kept[0], axis=1)
        settled = jnp.all(kept[2], axis=1) & (
            (best_live <= worst_kept) if hf_style else (worst_kept > best_live)
        )
        searching = state.searching & ~settled
        if hf_4_22:
            # transformers 4.22 finalises the live beams of unfinished examples after the last
            # step; their token sequences include the decoder start token.
            live_ends = last_step & searching[:, None] & (live_pick_scores > NEG_INF / 2)
            kept = _keep_best(kept, (jnp.where(live_ends, live_pick_scores / penalty[step + 2],
                                               NEG_INF), live_seqs, live_ends))
        kept_scores, kept_seqs, kept_flags = kept
        return _BeamState(
            step=step + 1,
            live_tokens=live_tokens,
            live_seqs=live_seqs,
            live_scores=live_pick_scores,
            kept_seqs=kept_seqs,
            kept_scores=kept_scores,
            kept_flags=kept_flags,
            searching=searching,
            cache=cache,
        )

    first_beam_only = jnp.where(jnp.arange(num_beams) == 0, 0.0, NEG_INF).astype(jnp.float32)
    start = _BeamState(
        step=jnp.int32(0),
        live_tokens=jnp.full((batch_size * num_beams,), decoder_start_id, jnp.int32),
        live_seqs=jnp.full((batch_size, num_beams, max_decode_length), pad_id, jnp.int32),
        live_scores=jnp.tile(first_beam_only, (batch_size, 1)),
        kept_seqs=jnp.full((batch_size, num_beams, max_decode_length), pad_id, jnp.int32),
        kept_scores=jnp.full((batch_size, num_beams), NEG_INF, jnp.float32),
        kept_flags=jnp.zeros((batch_size, num_beams), bool),
        searching=jnp.ones((batch_size,), bool),
        cache=None,
    )
    # Every beam of an example starts from the same token and cache: run the first step once
    # per example; choosing its beams copies the cache to them.
    logits, cache = tokens_to_logits(start.live_tokens[::num_beams], start.step, initial_cache)
    first = choose_beams(start, logits, cache)
    final = _staged_loop(keep_searching, extend_beams, first, max_decode_length, grow_cache)
    # Style "hf" always ends hypotheses at the last step; "t5x" falls back to the best live beam.
    has_ended = final.kept_flags[:, 0]
    best_seqs = jnp.where(has_ended[:, None], final.kept_seqs[:, 0], final.live_seqs[:, 0])
    best_scores = jnp.where(has_ended, final.kept_scores[:, 0], final.live_scores[:, 0])
    return best_seqs, best_scores
