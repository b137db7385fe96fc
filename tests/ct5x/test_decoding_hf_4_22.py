"""The "hf_4.22" beam style against transformers 4.22's beam search, written out here from its
`BeamSearchScorer.process`/`finalize` and `BeamHypotheses.add`/`is_done` (transformers 5.x, the
installed oracle, scores differently), on bigram models: logits = table[step, previous token]."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ct5x import decoding

START, EOS, PAD = 0, 1, 0


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float32)
    shifted = row - np.max(row)
    return shifted - np.log(np.sum(np.exp(shifted)))


def _transformers_4_22(table: np.ndarray, num_beams: int, max_length: int,
                       length_penalty: float = 1.0) -> tuple[list[int], float]:
    """One example's best sequence (no start token, EOS and padding after it) and its score.

    `max_length` counts the decoder start token (generate's default is 20). Hypotheses are token
    lists that start with the start token; one ended by EOS does not hold the EOS.
    """
    hyps: list[tuple[float, list[int]]] = []
    worst = 1e9

    def add(tokens: list[int], sum_logprobs: float) -> None:
        nonlocal worst
        score = sum_logprobs / len(tokens) ** length_penalty
        if len(hyps) < num_beams or score > worst:
            hyps.append((score, tokens))
            if len(hyps) > num_beams:
                ranked = sorted((s, i) for i, (s, _) in enumerate(hyps))
                del hyps[ranked[0][1]]
                worst = ranked[1][0]
            else:
                worst = min(score, worst)

    beams = [[START] for _ in range(num_beams)]
    beam_scores = np.array([0.0] + [-1e9] * (num_beams - 1), np.float32)
    done, cur_len = False, 1
    while True:
        scores = np.stack([_log_softmax(table[cur_len - 1, beam[-1]]) + score
                           for beam, score in zip(beams, beam_scores)]).reshape(-1)
        top = np.argsort(-scores, kind="stable")[:2 * num_beams]
        next_beams, next_scores = [], []
        for rank, index in enumerate(top):
            beam, token = divmod(int(index), table.shape[-1])
            if token == EOS:
                if rank < num_beams:
                    add(list(beams[beam]), float(scores[index]))
            else:
                next_beams.append(beams[beam] + [token])
                next_scores.append(scores[index])
            if len(next_beams) == num_beams:
                break
        best = float(scores[top[0]])
        done = done or (len(hyps) >= num_beams and worst >= best / cur_len**length_penalty)
        beams, beam_scores = next_beams, np.array(next_scores, np.float32)
        cur_len += 1
        if done or cur_len >= max_length:
            break
    if not done:
        for beam, score in zip(beams, beam_scores):
            add(beam, float(score))
    score, tokens = max(hyps, key=lambda hyp: hyp[0])
    generated = tokens[1:] + ([EOS] if len(tokens) < max_length else [])
    return generated + [PAD] * (max_length - 1 - len(generated)), score


def _decode(tables: np.ndarray, num_beams: int, style: str, alpha: float | None = None):
    """Every table's example decoded in one batch: ([sequence], [score])."""
    seqs, scores = _batched_search(jnp.asarray(tables, jnp.float32), num_beams, style, alpha)
    return np.asarray(seqs).tolist(), np.asarray(scores).tolist()


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _batched_search(tables, num_beams, style, alpha):
    batch, steps = tables.shape[:2]

    def tokens_to_logits(last_tokens, step, cache):
        example = jnp.arange(last_tokens.shape[0]) // (last_tokens.shape[0] // batch)
        return tables[example, step, last_tokens], cache

    return decoding.beam_search(
        tokens_to_logits, {"unused": jnp.zeros((batch, 1))}, batch_size=batch,
        num_beams=num_beams, max_decode_length=steps, decoder_start_id=START, eos_id=EOS,
        pad_id=PAD, length_penalty_style=style, alpha=alpha,
    )


def _tables(count: int, steps: int, vocab: int = 7) -> np.ndarray:
    """Random bigram tables whose EOS is likely enough that hypotheses end at many steps."""
    rng = np.random.default_rng(11)
    tables = rng.normal(scale=1.5, size=(count, steps, vocab, vocab))
    tables[..., EOS] += rng.uniform(-2.0, 1.0, size=(count, 1, 1))
    return tables


# A length penalty above 1 lets a longer hypothesis overtake the kept ones late, which is where
# 4.22's stopping rule (the best candidate, EOS or not) and 5.x's (the best live beam) part.
@pytest.mark.parametrize("num_beams, alpha", [(3, 1.0), (5, 1.0), (3, 2.0)])
def test_hf_4_22_style_is_transformers_4_22_beam_search(num_beams, alpha):
    steps = 6
    tables = _tables(80, steps)
    seqs, scores = _decode(tables, num_beams, "hf_4.22", alpha)
    hf_seqs, hf_scores = _decode(tables, num_beams, "hf", alpha)
    differs_from_hf = 0
    for table, seq, score, hf_seq, hf_score in zip(tables, seqs, scores, hf_seqs, hf_scores):
        expected_seq, expected_score = _transformers_4_22(table, num_beams, steps + 1, alpha)
        assert seq == expected_seq
        assert score == pytest.approx(expected_score, rel=1e-5)
        differs_from_hf += hf_seq != seq or abs(hf_score - score) > 1e-6 * abs(score)
    assert differs_from_hf  # the study's version scores some of these differently


def test_beams_at_max_length_are_divided_by_the_length_with_the_start_token():
    steps = 4
    tables = np.random.default_rng(1).normal(size=(1, steps, 6, 6))
    tables[..., EOS] = -1e4
    (seq,), (score,) = _decode(tables, 2, "hf_4.22", alpha=0.7)
    expected_seq, expected_score = _transformers_4_22(tables[0], 2, steps + 1, length_penalty=0.7)
    assert EOS not in seq and seq == expected_seq
    assert score == pytest.approx(expected_score, rel=1e-5)
    _, (hf_score,) = _decode(tables, 2, "hf", alpha=0.7)
    assert score == pytest.approx(hf_score * steps**0.7 / (steps + 1) ** 0.7, rel=1e-5)
