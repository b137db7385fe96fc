"""The general-domain corpus: deterministic, as large as asked, as complex as the clinical notes,
and free of their domain's words."""

import json
import random
import re
import statistics

from ct5x_tasks.general_text import MIN_ARTICLES, article, write_general_corpus
from ct5x_tasks.synthetic import make_note
from ct5x_tasks.synthetic_notes import KIND_OF

CLINICAL_WORDS = {"mg", "po", "patient", "hospital", "discharge", "level", "performed",
                  "radiology", "sedation", "admission", "history", "diabetes"}


def _words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def _sentence_lengths(texts):
    return [len(_words(s)) for text in texts for s in re.split(r"[.\n]", text) if _words(s)]


def test_deterministic_and_as_large_as_asked(tmp_path):
    count = write_general_corpus(tmp_path / "a" / "articles.jsonl", seed=3, num_characters=20_000)
    write_general_corpus(tmp_path / "b" / "articles.jsonl", seed=3, num_characters=20_000)
    text = (tmp_path / "a" / "articles.jsonl").read_text()
    assert text == (tmp_path / "b" / "articles.jsonl").read_text()
    articles = [json.loads(line)["text"] for line in text.splitlines()]
    assert len(articles) == count
    size = sum(map(len, articles))
    assert 20_000 <= size < 20_000 + max(map(len, articles))
    assert write_general_corpus(tmp_path / "c.jsonl", seed=3, num_characters=10) == MIN_ARTICLES


def test_no_clinical_term_or_word_and_sentences_as_long_as_the_notes():
    rng = random.Random(0)
    articles = [article(rng) for _ in range(200)]
    notes = [make_note(rng, index)[0] for index in range(200)]
    words = {word for text in articles for word in _words(text)}
    assert not words & (set(KIND_OF) | CLINICAL_WORDS)
    general, clinical = _sentence_lengths(articles), _sentence_lengths(notes)
    assert abs(statistics.mean(general) / statistics.mean(clinical) - 1) < 0.3
    assert abs(sum(map(len, articles)) / sum(map(len, notes)) - 1) < 0.3
