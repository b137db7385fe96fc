"""The "t5x" beam-search convention: against a plain list-based rendering of T5X's algorithm,
and, with beams enough to be exact, against an exhaustive search over every sequence of a tiny
vocabulary. Logits come from a deterministic function of (example, prefix) on the host."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ct5x import decoding

START, EOS, PAD = 0, 1, 0


# ---- a straightforward list-based reference on a tiny vocabulary ----

T5X_VOCAB, T5X_LEN = 8, 5


def _prefix_logits(example: int, prefix, seed: int, eos_bias: float) -> np.ndarray:
    """Deterministic random logits for any prefix: a model with full-history dependence."""
    logits = np.random.default_rng([seed, example, *map(int, prefix)]).normal(0, 1.5, T5X_VOCAB)
    logits[EOS] += eos_bias
    return logits.astype(np.float32)


def _t5x_reference(logits_fn, num_beams: int, alpha: float) -> tuple[tuple, float]:
    """T5X beam search for one example, written as plainly as possible (float64)."""

    def brevity(length):
        return ((5.0 + length) / 6.0) ** alpha

    live, ended = [(0.0, ())], []
    for step in range(T5X_LEN):
        candidates = []
        for log_prob, tokens in live:
            logits = logits_fn((START, *tokens)).astype(np.float64)
            step_lp = logits - np.logaddexp.reduce(logits)
            candidates += [(log_prob + step_lp[v], (*tokens, v)) for v in range(T5X_VOCAB)]
        candidates = sorted(candidates, key=lambda c: -c[0])[: 2 * num_beams]
        ended += [(lp / brevity(step + 1), toks) for lp, toks in candidates if toks[-1] == EOS]
        ended = sorted(ended, key=lambda c: -c[0])[:num_beams]
        live = [c for c in candidates if c[1][-1] != EOS][:num_beams]
        if len(ended) == num_beams and ended[-1][0] > live[0][0] / brevity(T5X_LEN + 1):
            break
    best_score, best_tokens = ended[0] if ended else live[0]
    return best_tokens + (PAD,) * (T5X_LEN - len(best_tokens)), best_score


def _history_tokens_to_logits(host_logits, vocab: int) -> decoding.TokensToLogits:
    """tokens_to_logits whose cache is the [rows, length] token history; host_logits(prefixes)
    returns float32 [rows, vocab] logits for the prefixes history[:, :step + 1]. Beam search
    calls it with one row per example for its first step, then with one row per beam."""

    def on_host(history, step):
        return host_logits(np.asarray(history)[:, : int(step) + 1]).astype(np.float32)

    def tokens_to_logits(last_tokens, step, history):
        history = history.at[:, step].set(last_tokens)
        logits = jax.pure_callback(
            on_host, jax.ShapeDtypeStruct((history.shape[0], vocab), jnp.float32), history, step
        )
        return logits, history

    return tokens_to_logits


def _t5x_ours(num_beams, alpha, seed, eos_bias, batch=3):
    def host_logits(prefixes):
        per_example = len(prefixes) // batch
        return np.stack([_prefix_logits(r // per_example, p, seed, eos_bias)
                         for r, p in enumerate(prefixes)])

    seqs, scores = decoding.beam_search(
        _history_tokens_to_logits(host_logits, T5X_VOCAB),
        jnp.zeros((batch, T5X_LEN), jnp.int32), batch_size=batch, num_beams=num_beams,
        max_decode_length=T5X_LEN, decoder_start_id=START, eos_id=EOS,
        length_penalty_style="t5x", alpha=alpha,
    )
    return np.asarray(seqs), np.asarray(scores)


def _check_t5x_against_reference(num_beams, alpha, seed, eos_bias) -> np.ndarray:
    seqs, scores = _t5x_ours(num_beams, alpha, seed, eos_bias)
    for example in range(len(seqs)):
        tokens, score = _t5x_reference(
            functools.partial(_prefix_logits, example, seed=seed, eos_bias=eos_bias),
            num_beams, alpha,
        )
        assert tuple(seqs[example]) == tokens
        np.testing.assert_allclose(scores[example], score, rtol=1e-5)
    return seqs


@pytest.mark.parametrize("num_beams", [1, 2, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_t5x_beam_matches_list_reference(num_beams, alpha):
    seqs = _check_t5x_against_reference(num_beams, alpha, seed=11 + num_beams, eos_bias=1.0)
    assert (seqs == EOS).any()


def test_t5x_beam_without_eos_returns_best_live_beam_with_raw_log_prob():
    seqs = _check_t5x_against_reference(2, 0.6, seed=5, eos_bias=-60.0)
    assert not (seqs == EOS).any()


# ---- "t5x" style against an exhaustive search, with beams enough to be exact ----

EXACT_VOCAB, EXACT_LEN, EXACT_EXAMPLES = 4, 4, 4
# Every candidate of every step must fit in the 2K candidates, and every live prefix in K beams.
EXACT_BEAMS = max(
    max(-(-(EXACT_VOCAB - 1) ** t * EXACT_VOCAB // 2) for t in range(EXACT_LEN)),
    (EXACT_VOCAB - 1) ** (EXACT_LEN - 1),
)


def _exact_logits(example: int, prefix, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7, example, *map(int, prefix)])
    return rng.normal(0, 1.5, EXACT_VOCAB).astype(np.float32)


def _exhaustive_best(example: int, seed: int, alpha: float) -> tuple[tuple, float]:
    """Scores every sequence that ends with EOS within EXACT_LEN tokens (float64) and returns
    the best, padded, with its score: log-probability / ((5 + length) / 6) ** alpha."""
    best_score, best_tokens = -np.inf, ()
    non_eos = [token for token in range(EXACT_VOCAB) if token != EOS]
    for length in range(1, EXACT_LEN + 1):
        for body in itertools.product(non_eos, repeat=length - 1):
            tokens = (*body, EOS)
            log_prob = 0.0
            for step, token in enumerate(tokens):
                logits = _exact_logits(example, (START, *tokens[:step]), seed).astype(np.float64)
                log_prob += logits[token] - np.logaddexp.reduce(logits)
            score = log_prob / ((5.0 + length) / 6.0) ** alpha
            if score > best_score:
                best_score, best_tokens = score, tokens
    return best_tokens + (PAD,) * (EXACT_LEN - len(best_tokens)), best_score


def _exact_ours(num_beams: int, seed: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    def host_logits(prefixes):
        per_example = len(prefixes) // EXACT_EXAMPLES
        return np.stack([_exact_logits(row // per_example, prefix, seed)
                         for row, prefix in enumerate(prefixes)])

    seqs, scores = decoding.beam_search(
        _history_tokens_to_logits(host_logits, EXACT_VOCAB),
        jnp.zeros((EXACT_EXAMPLES, EXACT_LEN), jnp.int32), batch_size=EXACT_EXAMPLES,
        num_beams=num_beams, max_decode_length=EXACT_LEN, decoder_start_id=START, eos_id=EOS,
        length_penalty_style="t5x", alpha=alpha,
    )
    return np.asarray(seqs), np.asarray(scores)


@pytest.mark.parametrize("seed, alpha", [(1, 0.6), (2, 2.0)])
def test_t5x_beam_with_enough_beams_finds_the_exhaustive_optimum(seed, alpha):
    exact = [_exhaustive_best(example, seed, alpha) for example in range(EXACT_EXAMPLES)]
    seqs, scores = _exact_ours(EXACT_BEAMS, seed, alpha)
    for example, (tokens, score) in enumerate(exact):
        assert tuple(seqs[example]) == tokens, example
        np.testing.assert_allclose(scores[example], score, rtol=1e-5)
    if alpha == 2.0:  # here one beam misses an optimum: the check has teeth
        narrow, _ = _exact_ours(1, seed, alpha)
        assert any(tuple(row) != tokens for row, (tokens, _) in zip(narrow, exact))
