"""Span corruption: T5's statistics, sentinel order, and inputs + targets = the original text."""

import functools
import json

import numpy as np
import pytest
import seqio
from synthetic_text import synthetic_sentences

import ct5x_tasks
from ct5x.errors import UserInputError
from ct5x_tasks import span_corruption
from ct5x_tasks.span_corruption import (
    SpanCorruptionSettings,
    chunk_length,
    corrupted_lengths,
    register_span_corruption,
)

EXTRA_IDS = 10
LENGTHS = {"inputs": 48, "targets": 16}


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory, spm_model_path):
    """60 synthetic documents as .txt files and one JSONL file; the vocabulary with extra ids."""
    root = tmp_path_factory.mktemp("notes")
    folder = root / "span_corruption"
    folder.mkdir()
    for index in range(30):
        (folder / f"note{index:03d}.txt").write_text(" ".join(synthetic_sentences(12, seed=index)))
    lines = [json.dumps({"text": " ".join(synthetic_sentences(6, seed=100 + i))})
             for i in range(15)]
    (folder / "more.jsonl").write_text("\n".join(lines) + "\n")
    ct5x_tasks.set_vocabulary_path(spm_model_path, extra_ids=EXTRA_IDS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CT5X_DATA_DIR", str(root))
        yield root
    ct5x_tasks.set_vocabulary_path(None)
    _examples.cache_clear()


@functools.lru_cache
def _examples(notes_dir, split="train", seed=7):
    task = seqio.get_mixture_or_task("span_corruption")
    dataset = task.get_dataset(LENGTHS, split=split, shuffle=False, seed=seed)
    return list(dataset.as_numpy_iterator())


def _tokens(notes_dir, split="train"):
    """Every chunk's original tokens, from the same source without the corruption."""
    vocabulary = ct5x_tasks.VOCABULARY.resolve()
    texts = list(span_corruption.documents(notes_dir / "span_corruption", "text"))
    kept = [t for i, t in enumerate(texts) if (i % 20 == 0) == (split == "validation")]
    size = chunk_length(LENGTHS["inputs"], 0.15, 3.0)
    chunks = []
    for text in kept:
        ids = vocabulary.encode(text)
        chunks += [ids[start:start + size] for start in range(0, len(ids), size)]
    return chunks


def _spans(sequence, vocab_size):
    """Split a corrupted sequence (EOS dropped) at sentinels: [(sentinel, following tokens)]."""
    spans, current = [], None
    for token in sequence:
        if token >= vocab_size - EXTRA_IDS:
            current = (int(token), [])
            spans.append(current)
        elif current is None:
            spans.append((None, [int(token)]))
            current = spans[-1]
        else:
            current[1].append(int(token))
    return spans


def test_chunk_lengths_match_t5():
    # T5's random_spans_helper: 568 tokens corrupt into 512 inputs and 114 targets (EOS included).
    assert chunk_length(512, 0.15, 3.0) == 568
    assert corrupted_lengths(568, 0.15, 3.0) == (512, 114)
    assert corrupted_lengths(chunk_length(48, 0.15, 3.0), 0.15, 3.0)[0] <= 48


def test_statistics_sentinels_and_reconstruction(notes_dir):
    examples = _examples(notes_dir)
    originals = _tokens(notes_dir)
    assert len(examples) == len(originals) > 50
    vocab_size = ct5x_tasks.VOCABULARY.resolve().vocab_size
    noise, total, span_lengths = 0, 0, []
    for example, original in zip(examples, originals):
        inputs, targets = list(example["inputs"][:-1]), list(example["targets"][:-1])
        assert example["inputs"][-1] == 1 and example["targets"][-1] == 1  # EOS
        input_spans, target_spans = _spans(inputs, vocab_size), _spans(targets, vocab_size)
        if len(original) < 2:  # as in T5, a one-token chunk has no noise: its target is a sentinel
            assert inputs == list(original) and targets == [vocab_size - 1]
            continue
        sentinels = [s for s, _ in input_spans if s is not None]
        # Sentinels count down from the top of the vocabulary, the same ones on both sides.
        assert sentinels == list(range(vocab_size - 1, vocab_size - 1 - len(sentinels), -1))
        assert [s for s, _ in target_spans] == sentinels
        # Inputs start with kept text; every noise span is non-empty.
        assert input_spans[0][0] is None
        assert all(tokens for _, tokens in target_spans)
        # Interleaving kept text and hidden spans restores the original tokens.
        hidden = dict(target_spans)
        restored = []
        for sentinel, tokens in input_spans:
            restored += (hidden[sentinel] if sentinel is not None else []) + tokens
        assert restored == list(original)
        noise += sum(len(tokens) for _, tokens in target_spans)
        total += len(original)
        span_lengths += [len(tokens) for _, tokens in target_spans]
        expected_noise = min(max(round(len(original) * 0.15), 1), max(len(original) - 1, 1))
        assert sum(len(tokens) for _, tokens in target_spans) == expected_noise
    assert noise / total == pytest.approx(0.15, abs=0.01)
    assert np.mean(span_lengths) == pytest.approx(3.0, abs=0.35)
    decoded = ct5x_tasks.VOCABULARY.resolve().decode(originals[0])
    assert examples[0]["targets_pretokenized"].decode()  # text of the hidden spans, for metrics
    assert decoded.split()[0] in (notes_dir / "span_corruption" / "note001.txt").read_text()


def test_masks_are_seeded(notes_dir):
    first = _examples(notes_dir, seed=7)
    _examples.cache_clear()
    again = _examples(notes_dir, seed=7)  # built anew
    other = _examples(notes_dir, seed=2)
    assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, again))
    assert not all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(first, other))


def test_validation_holds_out_every_twentieth_document(notes_dir):
    validation = _examples(notes_dir, split="validation")
    assert len(validation) == len(_tokens(notes_dir, "validation")) > 0


def test_bad_jsonl_line_is_named(tmp_path):
    folder = tmp_path / "notes_bad"
    folder.mkdir()
    (folder / "notes.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    register_span_corruption("notes_bad", SpanCorruptionSettings())
    try:
        with pytest.raises(UserInputError, match=r"notes.jsonl:2: .*'text'"):
            list(span_corruption.documents(folder, "text"))
        with pytest.raises(UserInputError, match="no .txt or .jsonl"):
            list(span_corruption.documents(tmp_path, "text"))
    finally:
        seqio.TaskRegistry.remove("notes_bad")


def test_token_f1():
    assert span_corruption.token_f1(["a b c", ""], ["a b d", ""]) == {
        "token_f1": pytest.approx((2 / 3 + 1.0) / 2)
    }
