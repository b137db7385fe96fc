"""Greedy and beam search against transformers `generate` and hand-built bigram models whose
best answers are known (the "t5x" style's references are in test_decoding_t5x.py).

The HF oracle drives our search with a `tokens_to_logits` that calls a tiny random torch T5
through `jax.pure_callback`: its "cache" is the decoded-token history (plus the encoder outputs),
which the search reorders per beam like any cache leaf, and the callback reruns the decoder
without a cache on it. generate runs with use_cache=False so both sides compute the same way.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from ct5x import decoding
from ct5x.errors import UserInputError

START, EOS, PAD = 0, 1, 0
MAX_NEW = 8
VOCAB = 40
FAMILIES = {  # tiny twins of the two families, unequal encoder/decoder depth included
    "t5_1_1": {"d_model": 16, "d_kv": 8, "d_ff": 24, "num_layers": 2, "num_decoder_layers": 3,
               "num_heads": 3, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
    "t5_1_0": {"d_model": 16, "d_kv": 4, "d_ff": 32, "num_layers": 2, "num_decoder_layers": 2,
               "num_heads": 2, "feed_forward_proj": "relu", "tie_word_embeddings": True},
}
# Seeds whose outputs mix EOS at several steps (step 0 included) with rows that hit MAX_NEW.
MODELS = [("t5_1_1", 1), ("t5_1_1", 5), ("t5_1_0", 1), ("t5_1_0", 3)]
INPUT_LENGTHS = (9, 5, 7, 3)


def _torch_t5(
    family: str, seed: int, vocab: int = VOCAB
) -> transformers.T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=vocab, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=START,
        dropout_rate=0.0, **FAMILIES[family],
    )
    model = transformers.T5ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
        model.lm_head.weight[EOS] *= 2.5  # make EOS a frequent, well-separated choice
    return model


def _inputs(seed: int, lengths=INPUT_LENGTHS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, (len(lengths), max(lengths)))
    mask = np.arange(ids.shape[1])[None, :] < np.array(lengths)[:, None]
    return ids * mask, mask.astype(np.int64)


@pytest.fixture(scope="module")
def models() -> dict:
    return {(family, seed): _torch_t5(family, seed) for family, seed in MODELS}


@functools.cache
def _torch_tokens_to_logits(model) -> decoding.TokensToLogits:
    """The cache holds the token history plus the encoder outputs and mask (all rows-first), so
    one function, hence one compiled search, serves every input of this model."""

    def on_host(history, step, encoded, mask):
        with torch.no_grad():
            out = model(
                encoder_outputs=(torch.from_numpy(np.array(encoded)),),
                attention_mask=torch.from_numpy(np.array(mask)),
                decoder_input_ids=torch.from_numpy(np.array(history)[:, : int(step) + 1]).long(),
                use_cache=False,
            )
        return out.logits[:, -1].float().numpy()

    def tokens_to_logits(last_tokens, step, cache):
        history = cache["history"].at[:, step].set(last_tokens)
        logits = jax.pure_callback(
            on_host, jax.ShapeDtypeStruct((history.shape[0], model.config.vocab_size), jnp.float32),
            history, step, cache["encoded"], cache["mask"],
        )
        return logits, {**cache, "history": history}

    return tokens_to_logits


@functools.partial(
    jax.jit, static_argnames=("tokens_to_logits", "num_beams", "style", "alpha", "greedy")
)
def _jit_decode(cache, tokens_to_logits, num_beams, style, alpha, greedy):
    common = {"batch_size": cache["history"].shape[0], "max_decode_length": MAX_NEW,
              "decoder_start_id": START, "eos_id": EOS, "pad_id": PAD}
    if greedy:
        return decoding.greedy_search(tokens_to_logits, cache, **common)
    return decoding.beam_search(tokens_to_logits, cache, num_beams=num_beams,
                                length_penalty_style=style, alpha=alpha, **common)


def _ours(model, ids, mask, num_beams, style="hf", alpha=None, greedy=False):
    with torch.no_grad():
        encoded = model.get_encoder()(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)
        ).last_hidden_state
    cache = {"history": jnp.zeros((ids.shape[0], MAX_NEW), jnp.int32),
             "encoded": jnp.asarray(encoded.numpy()), "mask": jnp.asarray(mask, jnp.int32)}
    seqs, scores = _jit_decode(cache, _torch_tokens_to_logits(model), num_beams, style, alpha,
                               greedy)
    return np.asarray(seqs), np.asarray(scores)


def _pad_after_eos(rows) -> np.ndarray:
    """Drop HF's start token, keep tokens through the first EOS, pad to MAX_NEW with PAD."""
    out = np.full((len(rows), MAX_NEW), PAD, np.int64)
    for i, row in enumerate(rows):
        tokens = list(row[1:])
        if EOS in tokens:
            tokens = tokens[: tokens.index(EOS) + 1]
        out[i, : len(tokens)] = tokens
    return out


def _hf_generate(model, ids, mask, num_beams, length_penalty=None):
    extra = {} if length_penalty is None else {"length_penalty": length_penalty}
    out = model.generate(
        input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), num_beams=num_beams,
        max_new_tokens=MAX_NEW, do_sample=False, use_cache=False, return_dict_in_generate=True,
        output_scores=True, **extra,
    )
    scores = getattr(out, "sequences_scores", None)
    return _pad_after_eos(out.sequences.numpy()), None if scores is None else scores.numpy()


def _eos_steps(seqs: np.ndarray) -> set:
    return {int(np.argmax(row == EOS)) if (row == EOS).any() else -1 for row in seqs}


def test_hf_references_cover_early_eos_and_max_length(models):
    steps = set()
    for key, model in models.items():
        ids, mask = _inputs(key[1])
        for num_beams in (1, 4):
            steps |= _eos_steps(_hf_generate(model, ids, mask, num_beams)[0])
    assert {-1, 0, 1}.issubset(steps) and len(steps) >= 5, steps


@pytest.mark.parametrize("key", MODELS)
def test_greedy_matches_hf_generate(models, key):
    ids, mask = _inputs(key[1])
    expected, _ = _hf_generate(models[key], ids, mask, 1)
    ours, scores = _ours(models[key], ids, mask, 1, greedy=True)
    np.testing.assert_array_equal(ours, expected)
    # T5X's greedy score: the summed log-probability, EOS included, with no length penalty.
    np.testing.assert_allclose(scores, _forced_log_prob(models[key], ids, mask, ours)[0],
                               rtol=2e-5)


def _forced_log_prob(model, ids, mask, seqs) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-probability and length of each row of seqs (through its first EOS)."""
    decoder_ids = torch.tensor(np.concatenate([np.full((len(seqs), 1), START), seqs], 1))
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                       decoder_input_ids=decoder_ids[:, :-1]).logits
    token_lp = torch.log_softmax(logits.double(), -1).gather(-1, decoder_ids[:, 1:, None])[..., 0]
    lengths = [list(row).index(EOS) + 1 if EOS in row else MAX_NEW for row in seqs]
    live = np.arange(MAX_NEW)[None, :] < np.array(lengths)[:, None]
    return (token_lp.numpy() * live).sum(1), np.array(lengths)


@pytest.mark.parametrize("key", MODELS)
@pytest.mark.parametrize("num_beams", [1, 2, 4])
def test_hf_beam_matches_generate_with_default_length_penalty(models, key, num_beams):
    ids, mask = _inputs(key[1])
    expected, expected_scores = _hf_generate(models[key], ids, mask, num_beams)
    seqs, scores = _ours(models[key], ids, mask, num_beams)
    np.testing.assert_array_equal(seqs, expected)
    if num_beams == 1:  # generate runs greedy and reports no score: check ours by forcing.
        log_prob, lengths = _forced_log_prob(models[key], ids, mask, seqs)
        expected_scores = log_prob / lengths
    np.testing.assert_allclose(scores, expected_scores, rtol=2e-5)


@pytest.mark.parametrize("num_beams", [2, 3])
def test_hf_beam_over_a_large_vocabulary_matches_generate(num_beams):
    """num_beams x 1600 candidates per example: beam search picks them by blocks."""
    model = _torch_t5("t5_1_1", 5, vocab=1600)
    assert num_beams * 1600 >= 4 * 2 * num_beams * 128  # top_k_by_blocks' own threshold
    ids, mask = _inputs(5)
    expected, expected_scores = _hf_generate(model, ids, mask, num_beams)
    seqs, scores = _ours(model, ids, mask, num_beams)
    np.testing.assert_array_equal(seqs, expected)
    np.testing.assert_allclose(scores, expected_scores, rtol=2e-5)


@pytest.mark.parametrize("key", [("t5_1_1", 1), ("t5_1_0", 1)])
@pytest.mark.parametrize("num_beams", [2, 4])
@pytest.mark.parametrize("length_penalty", [0.6, 2.0])
def test_hf_beam_matches_generate_with_length_penalty(models, key, num_beams, length_penalty):
    ids, mask = _inputs(key[1])
    expected, expected_scores = _hf_generate(models[key], ids, mask, num_beams, length_penalty)
    seqs, scores = _ours(models[key], ids, mask, num_beams, alpha=length_penalty)
    np.testing.assert_array_equal(seqs, expected)
    np.testing.assert_allclose(scores, expected_scores, rtol=2e-5)


@pytest.mark.parametrize("style", ["greedy", "hf", "t5x"])
def test_outputs_do_not_depend_on_batch(models, style):
    model = models[("t5_1_0", 1)]
    ids, mask = _inputs(0)
    run = functools.partial(_ours, model, num_beams=4, style=style, greedy=style == "greedy")
    batch_seqs, batch_scores = run(ids, mask)
    assert len(_eos_steps(batch_seqs)) >= 2  # rows stop at different steps
    for row in range(ids.shape[0]):
        seqs, scores = run(ids[row : row + 1], mask[row : row + 1])
        np.testing.assert_array_equal(seqs[0], batch_seqs[row])
        np.testing.assert_allclose(scores[0], batch_scores[row], rtol=1e-5)


# ---- hand-built bigram models: logits = table[step, previous token] ----


def _table_tokens_to_logits(table) -> decoding.TokensToLogits:
    def tokens_to_logits(last_tokens, step, cache):
        return table[step, last_tokens], {"fed": cache["fed"].at[:, step].set(last_tokens)}

    return tokens_to_logits


def _table_decode(table, num_beams, style, alpha=None, pad_id=PAD, batch=2):
    table = jnp.asarray(table, jnp.float32)
    steps = table.shape[0]
    cache = {"fed": jnp.zeros((batch, steps), jnp.int32)}
    common = {"batch_size": batch, "max_decode_length": steps, "decoder_start_id": START,
              "eos_id": EOS, "pad_id": pad_id}
    if style == "greedy":
        seqs, _ = decoding.greedy_search(_table_tokens_to_logits(table), cache, **common)
        return np.asarray(seqs)
    seqs, scores = decoding.beam_search(
        _table_tokens_to_logits(table), cache, num_beams=num_beams,
        length_penalty_style=style, alpha=alpha, **common,
    )
    return np.asarray(seqs), np.asarray(scores)


def _table_log_prob(table, tokens) -> float:
    previous, total = START, 0.0
    for step, token in enumerate(tokens):
        logits = np.asarray(table[step, previous], np.float64)
        total += logits[token] - np.logaddexp.reduce(logits)
        previous = token
        if token == EOS:
            break
    return total


@pytest.mark.parametrize("pad_id", [0, 5])
def test_eos_at_step_zero(pad_id):
    table = np.random.default_rng(0).normal(size=(4, 6, 6))
    table[0, START, EOS] = 8.0
    expected = [EOS] + [pad_id] * 3
    assert (_table_decode(table, 1, "greedy", pad_id=pad_id) == expected).all()
    for style in ("hf", "t5x"):
        seqs, scores = _table_decode(table, 2, style, pad_id=pad_id)
        assert (seqs == expected).all(), style
        # One generated token: both penalties are 1 at length 1.
        np.testing.assert_allclose(scores, _table_log_prob(table, [EOS]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("style", ["greedy", "hf", "t5x"])
def test_max_length_without_eos(style):
    steps = 5
    table = np.random.default_rng(1).normal(size=(steps, 6, 6))
    table[:, :, EOS] = -1e4
    if style == "greedy":
        expected = [START]
        for step in range(steps):
            expected.append(int(np.argmax(table[step, expected[-1]])))
        assert (_table_decode(table, 1, style) == expected[1:]).all()
        return
    seqs, scores = _table_decode(table, 2, style, alpha=0.7)
    assert not (seqs == EOS).any()
    log_prob = _table_log_prob(table, seqs[0])
    # HF ends every beam at max length (score / length ** alpha); T5X returns the live beam raw.
    expected = log_prob / steps**0.7 if style == "hf" else log_prob
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


@pytest.mark.parametrize("style", ["hf", "t5x"])
def test_larger_alpha_prefers_the_longer_hypothesis(style):
    """[EOS] has log-prob -1.0; [2, EOS] has -1.25: raw scores prefer the short one, a strong
    length penalty the long one."""
    vocab, steps = 6, 4
    table = np.full((steps, vocab, vocab), np.log(1.0 / vocab))  # uniform after step 1
    first = np.full(vocab, np.log((1 - np.exp(-1.0) - np.exp(-1.2)) / (vocab - 2)))
    first[EOS], first[2] = -1.0, -1.2
    table[0, START] = first
    table[1, 2] = np.log(np.full(vocab, (1 - np.exp(-0.05)) / (vocab - 1)))
    table[1, 2, EOS] = -0.05
    short, _ = _table_decode(table, 2, style, alpha=0.0)
    long, long_scores = _table_decode(table, 2, style, alpha=2.0)
    assert (short == [EOS, PAD, PAD, PAD]).all()
    assert (long == [2, EOS, PAD, PAD]).all()
    penalty = 2.0**2.0 if style == "hf" else (7.0 / 6.0) ** 2.0
    np.testing.assert_allclose(long_scores, _table_log_prob(table, [2, EOS]) / penalty, rtol=1e-5)


def test_each_search_is_one_program_compiled_once_per_shape():
    calls = {"trace": 0, "tokens_to_logits": 0}

    @functools.partial(jax.jit, static_argnames=("style", "num_beams"))
    def decode(table, cache, style, num_beams):
        calls["trace"] += 1

        def tokens_to_logits(last_tokens, step, cache):
            calls["tokens_to_logits"] += 1
            return _table_tokens_to_logits(table)(last_tokens, step, cache)

        common = {"batch_size": cache["fed"].shape[0], "max_decode_length": table.shape[0],
                  "decoder_start_id": START, "eos_id": EOS}
        if style == "greedy":
            return decoding.greedy_search(tokens_to_logits, cache, **common)[0]
        return decoding.beam_search(tokens_to_logits, cache, num_beams=num_beams,
                                    length_penalty_style=style, **common)[0]

    rng = np.random.default_rng(2)
    tables = [jnp.asarray(rng.normal(size=(6, 8, 8)), jnp.float32) for _ in range(2)]
    for style in ("greedy", "hf", "t5x"):
        calls.update(trace=0, tokens_to_logits=0)
        cache = {"fed": jnp.zeros((3, 6), jnp.int32)}
        first = decode(tables[0], cache, style, 3)
        second = decode(tables[1], cache, style, 3)
        assert not np.array_equal(first, second)  # the data really changed
        # No per-token Python loop: the step is traced once (beam search: once more for its
        # first step, run once per example before the loop).
        steps_traced = 1 if style == "greedy" else 2
        assert calls == {"trace": 1, "tokens_to_logits": steps_traced}, style
        decode(tables[0], {"fed": jnp.zeros((5, 6), jnp.int32)}, style, 3)
        assert calls["trace"] == 2  # a new batch size is a new shape
        hlo = decode.lower(tables[0], cache, style, 3).as_text()
        assert hlo.count("stablehlo.while") == 1, style


@pytest.mark.parametrize("size", [4 * 6 * 128, 3 * 32128, 5000])  # 5000: padded last block
def test_top_k_by_blocks_equals_lax_top_k_with_ties(size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((5, size)).astype(np.float32)
    x[0, [3, 700, size - 1]] = 9.0  # ties across blocks: the lower index comes first
    x[1, :] = 1.0  # every element tied
    x[2, ::2] = -np.inf
    x[3] = np.round(x[3], 1)  # many ties in every block
    x[4] = np.clip(x[4], -3.0, 3.0)
    x[4, [10, 1000, 1001]] = 5.0, 9.0, 5.0  # the 5.0 of the earlier, weaker block wins the tie
    for k in (1, 6, 10):
        values, indices = decoding.top_k_by_blocks(jnp.asarray(x), k)
        expected_values, expected_indices = jax.lax.top_k(jnp.asarray(x), k)
        np.testing.assert_array_equal(values, expected_values)
        np.testing.assert_array_equal(indices, expected_indices)


def test_first_argmax_equals_argmax_with_ties_and_nan():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32128)).astype(np.float32)
    x[0, [9, 20000]] = 50.0
    x[1, :] = -np.inf
    x[2, [30, 40]] = np.nan
    x[3] = np.round(x[3])
    got = decoding.first_argmax(jnp.asarray(x))
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(got, jnp.argmax(jnp.asarray(x), axis=-1))


def test_bad_settings_raise_user_input_error():
    table = np.zeros((3, 6, 6))
    with pytest.raises(UserInputError, match="length_penalty_style"):
        _table_decode(table, 2, "fairseq")
    with pytest.raises(UserInputError, match="num_beams"):
        _table_decode(table, 0, "hf")
    with pytest.raises(UserInputError, match="vocabulary of at least 2"):
        _table_decode(np.zeros((3, 1, 1)), 2, "t5x")
