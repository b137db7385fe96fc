"""SQuAD 2.0 exact match and token F1, the RadQA metrics.

Written here because no maintained package in our pins ships the official SQuAD 2.0 logic as a
function; this follows the official evaluation script's rules:
- answers are normalised: lower-case, punctuation removed, the articles a/an/the removed,
  whitespace collapsed;
- a gold answer that normalises to nothing does not count; a question left with no gold answer is
  unanswerable and its only gold answer is "" (an empty prediction is then fully right, anything
  else fully wrong);
- each prediction scores the maximum over its gold answers; the corpus score is the mean.
Scores are fractions in [0, 1] (the official script reports percentages).
"""

import collections
import re
import string
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (official order)."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(gold: str, prediction: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(gold) == normalize_answer(prediction))


def bag_f1(gold_tokens: Sequence[str], predicted_tokens: Sequence[str]) -> float:
    """F1 of two token lists as bags; if either side is empty, 1.0 only if both are."""
    if not gold_tokens or not predicted_tokens:
        return float(len(gold_tokens) == len(predicted_tokens))
    common = collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(gold: str, prediction: str) -> float:
    """SQuAD's F1: `bag_f1` of the normalised tokens."""
    return bag_f1(normalize_answer(gold).split(), normalize_answer(prediction).split())


def gold_answers(answers: Sequence[str]) -> list[str]:
    """The answers that count: non-empty after normalising, or [""] for an unanswerable question."""
    kept = [answer for answer in answers if normalize_answer(answer)]
    return kept or [""]


def squad_v2_scores(
    targets: Sequence[Sequence[str]], predictions: Sequence[str]
) -> dict[str, float]:
    """Mean exact match and F1 over questions; each target is the list of its gold answers."""
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    if not targets:
        raise ValueError("no examples to score")
    exact_total = f1_total = 0.0
    for answers, prediction in zip(targets, predictions):
        golds = gold_answers(answers)
        exact_total += max(exact_match(gold, prediction) for gold in golds)
        f1_total += max(token_f1(gold, prediction) for gold in golds)
    return {"f1": f1_total / len(targets), "exact_match": exact_total / len(targets)}
