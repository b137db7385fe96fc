"""SQuAD 2.0 scoring against an independently written oracle and hand-computed cases."""

import random
import re
import string

import pytest

from ct5x_tasks import squad


def oracle_tokens(text: str) -> list[str]:
    """The official normalisation, written another way: translate, regex, split."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def oracle_f1(gold: str, prediction: str) -> float:
    gold_tokens, predicted_tokens = oracle_tokens(gold), oracle_tokens(prediction)
    if len(gold_tokens) == 0 or len(predicted_tokens) == 0:
        return 1.0 if gold_tokens == predicted_tokens else 0.0
    remaining = list(gold_tokens)
    common = 0
    for token in predicted_tokens:
        if token in remaining:
            remaining.remove(token)
            common += 1
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def oracle_scores(targets: list[list[str]], predictions: list[str]) -> tuple[float, float]:
    exact_sum = f1_sum = 0.0
    for answers, prediction in zip(targets, predictions):
        golds = [a for a in answers if oracle_tokens(a)] or [""]
        exact_sum += max(float(oracle_tokens(g) == oracle_tokens(prediction)) for g in golds)
        f1_sum += max(oracle_f1(g, prediction) for g in golds)
    return exact_sum / len(targets), f1_sum / len(targets)


_WORDS = ["The", "a", "an", "theory", "Lung", "lung", "nodule", "left", "lobe", "3.5", "cm", "(",
          ")", ",", "!", "x-ray", "an.", "A"]


def random_answer(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 5)))


def test_matches_oracle_on_random_answers():
    rng = random.Random(1234)
    for _ in range(200):
        size = rng.randint(1, 12)
        targets = [[random_answer(rng) for _ in range(rng.randint(0, 3))] for _ in range(size)]
        predictions = [random_answer(rng) for _ in range(size)]
        scores = squad.squad_v2_scores(targets, predictions)
        exact, f1 = oracle_scores(targets, predictions)
        assert scores["exact_match"] == pytest.approx(exact)
        assert scores["f1"] == pytest.approx(f1)


def test_normalisation_by_hand():
    assert squad.normalize_answer("  The Cat's,  hat!! ") == "cats hat"
    assert squad.normalize_answer("theory of an apple") == "theory of apple"
    assert squad.normalize_answer("A.") == ""


def test_unanswerable_needs_an_empty_prediction():
    assert squad.squad_v2_scores([[""]], [""]) == {"f1": 1.0, "exact_match": 1.0}
    assert squad.squad_v2_scores([[]], ["  "]) == {"f1": 1.0, "exact_match": 1.0}
    assert squad.squad_v2_scores([[""]], ["nodule"]) == {"f1": 0.0, "exact_match": 0.0}
    assert squad.squad_v2_scores([["nodule"]], [""]) == {"f1": 0.0, "exact_match": 0.0}
    # An answer that normalises to nothing does not count: the question is unanswerable.
    assert squad.gold_answers(["the", "..."]) == [""]


def test_partial_overlap_and_max_over_answers():
    # gold "left lower lobe" vs "lower lobe nodule": 2 common, P 2/3, R 2/3.
    scores = squad.squad_v2_scores([["left lower lobe"]], ["lower lobe nodule"])
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["exact_match"] == 0.0
    scores = squad.squad_v2_scores(
        [["left lower lobe", "lower lobe nodule"]], ["the lower lobe nodule"]
    )
    assert scores == {"f1": 1.0, "exact_match": 1.0}
    # Repeated tokens count as a bag: gold "lung lung" vs "lung": P 1, R 1/2.
    assert squad.token_f1("lung lung", "lung") == pytest.approx(2 / 3)


def test_rejects_mismatched_or_empty_inputs():
    with pytest.raises(ValueError):
        squad.squad_v2_scores([["a"]], [])
    with pytest.raises(ValueError):
        squad.squad_v2_scores([], [])
