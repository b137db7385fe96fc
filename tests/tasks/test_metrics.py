"""Task metrics: each against sklearn or a hand-computed oracle, and the SeqIO wiring."""

import random

import numpy as np
import pytest
import seqio
from sklearn.metrics import precision_recall_fscore_support

from ct5x.errors import UserInputError
from ct5x_tasks import metrics
from ct5x_tasks.catalog import SCORING
from ct5x_tasks.labels import CLIP_LABELS, HOC_LABELS, MEDNLI_LABELS, STIGMA_LABELS

# One small valid (target, prediction) sample per base task, to check keys and wiring.
SAMPLES = {
    "mednli": (["entailment", "neutral"], ["entailment", "contradiction"]),
    "radqa": (["left lobe", ""], ["the left lobe", ""]),
    "clip": (["Lab-related followup", ""], ["Lab-related followup", "Imaging-related followup"]),
    "stigma_adamant": (["difficult", "exclude"], ["difficult", "disbelief"]),
    "stigma_compliance": (["negative", "positive"], ["negative", "neutral"]),
    "stigma_other": (["exclude", "positive"], ["neutral", "positive"]),
    "hoc": (["cellular energetics", ""], ["cellular energetics", ""]),
    "hoc_blurb": (["inducing angiogenesis", ""], ["", "inducing angiogenesis"]),
    "ncbi_disease": (["a disease* b *disease c"], ["a disease* b c *disease"]),
    "bc5cdr_disease": (["disease* b *disease c"], ["disease* b *disease c"]),
}


@pytest.mark.parametrize("name", ["mednli_fold0", "hoc_x", "mednl", "custom"])
def test_only_exact_paper_task_names_have_metrics(name):
    """A variant or a user's task is scored as the paper task its `scored_as` names, never by
    its name's prefix."""
    with pytest.raises(UserInputError, match=f"no metrics for '{name}'"):
        metrics.postprocessor_for(name)


def test_every_task_reports_its_selection_metric():
    assert set(metrics.SCORED_TASKS) == set(SCORING) == set(SAMPLES)
    for base, (targets, predictions) in SAMPLES.items():
        for anchor in (False, True):
            scores = metrics.compute_metrics(base, targets, predictions, anchor_compatible=anchor)
            assert SCORING[base].selection.metric in scores
            assert set(SCORING[base].count_metrics) <= set(scores)
            assert all(isinstance(value, float) for value in scores.values())


def test_metric_fns_have_seqio_signatures():
    vocabulary = seqio.PassThroughVocabulary(size=8)
    for base in metrics.SCORED_TASKS:
        task = seqio.Task(
            f"ct5x_metrics_signature_{base}",
            source=seqio.FunctionDataSource(lambda split, shuffle_files: None, splits=["test"]),
            output_features={"targets": seqio.Feature(vocabulary=vocabulary)},
            postprocess_fn=metrics.postprocessor_for(base),
            metric_fns=metrics.metric_fns_for(base),
        )
        assert len(task.predict_metric_fns) == 1
        assert task.postprocess_fn(b"  x  ", example={}, is_target=False) is not None


def _random_single_label(rng: random.Random, labels) -> tuple[list[str], list[str]]:
    size = rng.randint(1, 30)
    targets = [rng.choice(labels) for _ in range(size)]
    predictions = [
        rng.choice(labels) if rng.random() < 0.85 else rng.choice(["maybe", "", "Neutral"])
        for _ in range(size)
    ]
    return targets, predictions


@pytest.mark.parametrize("base", ["mednli", "stigma_adamant", "stigma_compliance", "stigma_other"])
def test_single_label_matches_per_class_sklearn(base):
    """Oracle: per-class F1 from sklearn (average=None), averaged here; accuracy by counting."""
    labels = MEDNLI_LABELS if base == "mednli" else STIGMA_LABELS[base.split("_")[1]]
    rng = random.Random(base)
    for _ in range(40):
        targets, predictions = _random_single_label(rng, labels)
        raw_predictions = [f" {p}\n".encode() for p in predictions]
        scores = metrics.compute_metrics(base, targets, raw_predictions, anchor_compatible=False)
        per_class = precision_recall_fscore_support(
            targets, predictions, labels=list(labels), average=None, zero_division=0)[2]
        assert scores["accuracy"] == pytest.approx(np.mean(np.array(targets) ==
                                                           np.array(predictions)))
        assert scores["macro_f1"] == pytest.approx(per_class.mean())
        assert scores["invalid_predictions"] == sum(p not in labels for p in predictions)


@pytest.mark.parametrize("base", ["mednli", "stigma_adamant", "stigma_other"])
def test_anchor_single_label_is_the_study_plain_macro_f1(base):
    """The study: f1_score(average='macro') over labels on either side; each distinct invalid
    output is one more class (F1 0), a label on neither side is left out."""
    labels = MEDNLI_LABELS if base == "mednli" else STIGMA_LABELS[base.split("_")[1]]
    rng = random.Random(f"anchor {base}")
    differed = False
    for _ in range(40):
        targets, predictions = _random_single_label(rng, labels)
        seen = sorted(set(targets) | set(predictions))
        per_class = []
        for label in seen:  # F1 of each class seen, counted by hand
            hits = sum(t == p == label for t, p in zip(targets, predictions))
            gold, predicted = targets.count(label), predictions.count(label)
            per_class.append(2 * hits / (gold + predicted) if gold + predicted else 0.0)
        scores = metrics.compute_metrics(base, targets, predictions, anchor_compatible=True)
        assert scores["macro_f1"] == pytest.approx(sum(per_class) / len(per_class))
        fixed = metrics.compute_metrics(base, targets, predictions, anchor_compatible=False)
        differed |= scores["macro_f1"] != pytest.approx(fixed["macro_f1"])
        assert scores["accuracy"] == fixed["accuracy"]
    assert differed


def test_anchor_macro_f1_by_hand():
    targets = ["difficult", "difficult", "exclude", "exclude"]
    predictions = ["difficult", "banana", "exclude", "apple"]
    # Classes seen: apple 0, banana 0, difficult 2/3, exclude 2/3 (disbelief on neither side).
    scores = metrics.compute_metrics("stigma_adamant", targets, predictions, anchor_compatible=True)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 4)
    # Fixed: difficult 2/3, disbelief 0, exclude 2/3 over the three labels.
    scores = metrics.compute_metrics("stigma_adamant", targets, predictions,
                                     anchor_compatible=False)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 3)


def test_registered_metric_functions_read_the_switch(monkeypatch):
    task = seqio.get_mixture_or_task("stigma_adamant_fold1")
    targets = [task.postprocess_fn(t, is_target=True) for t in ("difficult", "difficult")]
    predictions = [task.postprocess_fn(p) for p in ("difficult", " banana")]

    def score():
        results = {}
        for metric_fn in task.metric_fns:
            results.update(metric_fn(targets, predictions))
        return results["macro_f1"]

    monkeypatch.delenv("CT5X_ANCHOR_COMPATIBLE", raising=False)
    assert score() == pytest.approx(2 / 3 / 3)  # difficult 2/3; disbelief, exclude 0
    monkeypatch.setenv("CT5X_ANCHOR_COMPATIBLE", "1")
    assert score() == pytest.approx(2 / 3 / 2)  # classes seen: banana 0, difficult 2/3
    monkeypatch.setenv("CT5X_ANCHOR_COMPATIBLE", "off")
    assert score() == pytest.approx(2 / 3 / 3)


def test_single_label_by_hand():
    targets = ["entailment", "entailment", "neutral", "contradiction"]
    predictions = ["entailment", "banana", "neutral", "neutral"]
    scores = metrics.compute_metrics("mednli", targets, predictions, anchor_compatible=False)
    # entailment P 1 R 1/2 F 2/3; neutral P 1/2 R 1 F 2/3; contradiction F 0.
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert scores["invalid_predictions"] == 1.0


def _render_labels(rng: random.Random, labels: list[str]) -> str:
    rng.shuffle(labels)
    return rng.choice([", ", ",", " , "]).join(labels)


def test_clip_matches_per_label_counts():
    """Oracle: binary F1 of each label column counted here; micro from pooled counts."""
    rng = random.Random(5)
    for _ in range(100):
        size = rng.randint(1, 25)
        gold = [rng.sample(CLIP_LABELS, rng.randint(0, 3)) for _ in range(size)]
        predicted = [rng.sample(CLIP_LABELS, rng.randint(0, 3)) for _ in range(size)]
        unknown = [rng.choice(["", "", "Diet followup"]) for _ in range(size)]
        shown = [[rng.choice([label, label.lower(), label.upper()]) for label in labels]
                 for labels in predicted]
        raw_predictions = [
            _render_labels(rng, labels + ([extra] if extra else []))
            for labels, extra in zip(shown, unknown)
        ]
        raw_targets = [_render_labels(rng, list(labels)) for labels in gold]
        scores = metrics.compute_metrics("clip", raw_targets, raw_predictions)
        per_label, pooled = [], [0, 0, 0]
        for label in CLIP_LABELS:
            hits = sum(label in g and label in p for g, p in zip(gold, predicted))
            n_gold = sum(label in g for g in gold)
            n_pred = sum(label in p for p in predicted)
            per_label.append(2 * hits / (n_gold + n_pred) if n_gold + n_pred else 0.0)
            pooled = [pooled[0] + hits, pooled[1] + n_gold, pooled[2] + n_pred]
        micro = 2 * pooled[0] / (pooled[1] + pooled[2]) if pooled[1] + pooled[2] else 0.0
        assert scores["macro_f1"] == pytest.approx(sum(per_label) / len(per_label))
        assert scores["micro_f1"] == pytest.approx(micro)
        assert scores["unknown_labels"] == sum(bool(extra) for extra in unknown)


def _pooled_prf(gold: list[set], predicted: list[set]) -> tuple[float, float, float]:
    hits = sum(len(g & p) for g, p in zip(gold, predicted))
    n_pred, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@pytest.mark.parametrize("base", ["hoc", "hoc_blurb"])
@pytest.mark.parametrize("anchor", [False, True])
def test_hoc_pooled_micro_matches_hand_counts(base, anchor):
    rng = random.Random(f"{base}{anchor}")
    for _ in range(100):
        size = rng.randint(1, 25)
        gold = [set(rng.sample(HOC_LABELS, rng.choice([0, 0, 1, 2]))) for _ in range(size)]
        predicted = [set(rng.sample(HOC_LABELS, rng.choice([0, 0, 1, 2]))) for _ in range(size)]
        raw_predictions = [
            _render_labels(rng, list(labels)) or rng.choice(["", "none"]) for labels in predicted
        ]
        raw_targets = [_render_labels(rng, list(labels)) for labels in gold]
        scores = metrics.compute_metrics(base, raw_targets, raw_predictions, anchor)
        if anchor:
            gold = [labels or {"none"} for labels in gold]
            predicted = [labels or {"none"} for labels in predicted]
        precision, recall, f1 = _pooled_prf(gold, predicted)
        assert scores["precision"] == pytest.approx(precision)
        assert scores["recall"] == pytest.approx(recall)
        assert scores["f1"] == pytest.approx(f1)


def test_hoc_none_handling_by_hand():
    targets, predictions = ["", "", "cellular energetics"], ["none", "inducing angiogenesis", ""]
    fixed = metrics.compute_metrics("hoc", targets, predictions)
    assert fixed == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "unknown_labels": 0.0}
    # Anchor: gold {none}, {none}, {cellular}; predicted {none}, {angiogenesis}, {none}: 1 hit of 3.
    anchor = metrics.compute_metrics("hoc", targets, predictions, anchor_compatible=True)
    assert anchor["precision"] == pytest.approx(1 / 3)
    assert anchor["recall"] == pytest.approx(1 / 3)


def test_radqa_targets_as_lists_and_from_example_answers():
    targets = [["lobe", "left lobe"], [], ""]
    scores = metrics.compute_metrics("radqa", targets, ["left lobe", "", ""])
    assert scores == {"f1": 1.0, "exact_match": 1.0}
    postprocess = metrics.postprocessor_for("radqa")
    example = {"answers": np.array([b"left lobe", b"lobe"])}
    assert postprocess(b"ignored", example=example, is_target=True) == ["left lobe", "lobe"]
    assert postprocess(b" The lobe ", example=example) == "The lobe"


def test_ner_anchor_mode_counts_padding():
    targets, predictions = ["a disease* b *disease c d"], ["a disease* b *disease"]
    assert metrics.compute_metrics("ncbi_disease", targets, predictions)["precision"] == 1.0
    anchor = metrics.compute_metrics("ncbi_disease", targets, predictions, anchor_compatible=True)
    assert anchor["precision"] == pytest.approx(0.5)


def test_compute_metrics_rejects_bad_input():
    """Bad gold targets are the data's fault (UserInputError); unequal lengths are a bug."""
    with pytest.raises(ValueError) as raised:
        metrics.compute_metrics("mednli", ["entailment"], [])
    assert not isinstance(raised.value, UserInputError)
    with pytest.raises(UserInputError, match="target 0"):
        metrics.compute_metrics("mednli", ["maybe"], ["maybe"])
    with pytest.raises(UserInputError, match="target 1"):
        metrics.compute_metrics("clip", ["", "Diet followup"], ["", ""])
    with pytest.raises(UserInputError, match="no examples"):
        metrics.compute_metrics("hoc", [], [])
