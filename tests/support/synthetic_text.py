"""Synthetic clinical-looking text for tests: never real patient text."""

import random

_WORDS = [
    "patient", "denies", "chest", "pain", "fever", "cough", "history", "of", "diabetes",
    "hypertension", "presents", "with", "shortness", "breath", "no", "acute", "distress",
    "lungs", "clear", "heart", "regular", "rate", "rhythm", "abdomen", "soft", "the", "a", "an",
    "and", "or", "of", "to", "in", "on", "for", "with", "without", "mg", "daily", "twice",
    "follow", "up", "appointment", "clinic", "imaging", "lab", "results", "medication",
    "disease", "cancer", "tumour", "syndrome", "deficiency", "gene", "protein", "mutation",
    "entailment", "contradiction", "neutral", "question", "context", "answer", "sentence",
]


def synthetic_sentences(count: int, seed: int = 0) -> list[str]:
    """Deterministic clinical-looking sentences (synthetic: never real patient text)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14))) + " ."
            for _ in range(count)]
