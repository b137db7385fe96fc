"""NER markup parsing and entity scoring, against seqeval on random markup and on the real data."""

import random
import warnings

import pytest
from data_paths import SHARED_DATA
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from ct5x_tasks import ner_markup

_WORDS = ["the", "patient", "has", "breast", "cancer", "and", "ataxia", "-", "telangiectasia", "(",
          ")", ",", ".", "CYP2D6", "*", "4", "gene", "syndrome", "of", "type", "I"]


def random_sentence(rng: random.Random) -> list[str]:
    return [rng.choice(_WORDS) for _ in range(rng.randint(1, 25))]


def random_spans(rng: random.Random, length: int) -> list[tuple[int, int]]:
    """Non-overlapping [start, end) spans, adjacent ones allowed."""
    spans, position = [], 0
    while position < length:
        position += rng.choice([0, 0, 1, 2, 4])
        if position >= length:
            break
        end = rng.randint(position + 1, min(length, position + 4))
        if rng.random() < 0.6:
            spans.append((position, end))
        position = end
    return spans


def render(tokens: list[str], spans: list[tuple[int, int]]) -> str:
    starts = {start for start, _ in spans}
    ends = {end for _, end in spans}
    out = []
    for index, token in enumerate(tokens):
        if index in ends:
            out.append(ner_markup.CLOSE_MARKER)
        if index in starts:
            out.append(ner_markup.OPEN_MARKER)
        out.append(token)
    if len(tokens) in ends:
        out.append(ner_markup.CLOSE_MARKER)
    return " ".join(out)


def iob2(length: int, spans: list[tuple[int, int]]) -> list[str]:
    tags = ["O"] * length
    for start, end in spans:
        tags[start] = "B-DISEASE"
        for index in range(start + 1, end):
            tags[index] = "I-DISEASE"
    return tags


def perturb(rng: random.Random, spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Drop, shift or keep each span, and maybe add new ones where they do not overlap."""
    out = []
    for start, end in spans:
        roll = rng.random()
        if roll < 0.2:
            continue
        if roll < 0.4:
            start = max(0, min(start + rng.choice([-1, 1]), end - 1))
        elif roll < 0.55:
            end = max(start + 1, min(end + rng.choice([-1, 1]), length))
        out.append((start, end))
    for start, end in random_spans(rng, length):
        if rng.random() < 0.3:
            out.append((start, end))
    kept, taken = [], set()
    for start, end in sorted(out):
        if not taken & set(range(start, end)):
            kept.append((start, end))
            taken |= set(range(start, end))
    return kept


def test_parse_round_trips_random_markup():
    rng = random.Random(7)
    for _ in range(500):
        tokens = random_sentence(rng)
        spans = random_spans(rng, len(tokens))
        parsed = ner_markup.parse_markup(render(tokens, spans))
        assert parsed.tokens == tuple(tokens)
        assert parsed.spans == tuple(spans)


@pytest.mark.parametrize("seed", range(30))
def test_scores_match_seqeval_strict_iob2(seed):
    rng = random.Random(seed)
    targets, predictions, gold_tags, predicted_tags = [], [], [], []
    for _ in range(rng.randint(5, 40)):
        tokens = random_sentence(rng)
        gold = random_spans(rng, len(tokens))
        predicted = perturb(rng, gold, len(tokens))
        targets.append(render(tokens, gold))
        predictions.append(render(tokens, predicted))
        gold_tags.append(iob2(len(tokens), gold))
        predicted_tags.append(iob2(len(tokens), predicted))
    scores = ner_markup.entity_scores(targets, predictions)
    oracle = {"y_true": gold_tags, "y_pred": predicted_tags, "mode": "strict", "scheme": IOB2}
    assert scores["precision"] == pytest.approx(precision_score(**oracle, zero_division=0))
    assert scores["recall"] == pytest.approx(recall_score(**oracle, zero_division=0))
    assert scores["f1"] == pytest.approx(f1_score(**oracle, zero_division=0))
    # With the same tokens and well-formed markup the anchors' scorer agrees (no lone '*' here,
    # nothing for the decoding clean-up to join).
    clean = [(t, p) for t, p in zip(targets, predictions) if " * " not in f" {t} "
             and ner_markup.clean_up_tokenization(t) == t
             and ner_markup.clean_up_tokenization(p) == p]
    if clean and any(ner_markup.parse_markup(t).spans for t, _ in clean):
        anchor = ner_markup.anchor_entity_scores(*zip(*clean))
        fixed = ner_markup.entity_scores(*zip(*clean))
        assert anchor == pytest.approx(fixed)


def test_changed_words_outside_mentions_do_not_change_scores():
    rng = random.Random(99)
    for _ in range(200):
        length = rng.randint(2, 20)
        tokens = [f"w{index}" for index in range(length)]
        gold = random_spans(rng, length)
        predicted = perturb(rng, gold, length)
        inside = {index for start, end in predicted for index in range(start, end)}
        outside = [index for index in range(length) if index not in inside]
        if not outside:
            continue
        victim = rng.choice(outside)
        edited = list(tokens)
        edited[victim:victim + 1] = rng.choice([[], ["new", tokens[victim]], ["changed"]])
        shift = len(edited) - length
        moved = [(s + shift, e + shift) if s > victim else (s, e) for s, e in predicted]
        expected = ner_markup.count_entities(render(tokens, gold), render(tokens, predicted))
        got = ner_markup.count_entities(render(tokens, gold), render(edited, moved))
        assert got == expected


def test_span_with_a_word_dropped_or_changed_inside_is_a_false_positive():
    gold = "a disease* b c d *disease e"
    counts = ner_markup.count_entities(gold, "a disease* b d *disease e")
    assert counts == ner_markup.EntityCounts(true_positives=0, predicted=1, gold=1)
    counts = ner_markup.count_entities(gold, "a disease* b x d *disease e")
    assert counts == ner_markup.EntityCounts(true_positives=0, predicted=1, gold=1)
    counts = ner_markup.count_entities(gold, "x disease* b c d *disease e")
    assert counts == ner_markup.EntityCounts(true_positives=1, predicted=1, gold=1)


def test_lone_asterisk_is_a_token():
    parsed = ner_markup.parse_markup("the CYP2D6 * 4 allele in disease* poor metabolisers *disease")
    assert parsed.tokens == ("the", "CYP2D6", "*", "4", "allele", "in", "poor", "metabolisers")
    assert parsed.spans == ((6, 8),)


def test_malformed_markup_rules():
    reopened = ner_markup.parse_markup("two disease* A B disease* C D *disease ( E )")
    assert reopened.tokens == ("two", "A", "B", "C", "D", "(", "E", ")")
    assert reopened.spans == ((1, 3), (3, 5))
    unclosed = ner_markup.parse_markup("disorders including disease* cancer")
    assert unclosed.spans == ((2, 3),)
    stray = ner_markup.parse_markup("*disease Down - regulation in disease* renal cell *disease")
    assert stray.tokens[0] == "Down"
    assert stray.spans == ((4, 6),)
    empty = ner_markup.parse_markup("a disease* *disease b disease*")
    assert empty == ner_markup.Markup(("a", "b"), ())


def test_anchor_padding_adds_a_false_positive():
    targets = ["a disease* b *disease c d"]
    predictions = ["a disease* b *disease"]
    fixed = ner_markup.entity_scores(targets, predictions)
    assert fixed == {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    anchor = ner_markup.anchor_entity_scores(targets, predictions)
    assert anchor["precision"] == pytest.approx(0.5)
    assert anchor["recall"] == pytest.approx(1.0)
    assert ner_markup.pad_to_gold_length(["O", "B-DISEASE"], 4) == ["O", "B-DISEASE", "PAD", "PAD"]
    assert ner_markup.pad_to_gold_length(["O", "O", "O"], 2) == ["O", "O"]


def test_anchor_tags_toggle_and_treat_lone_asterisk_as_marker():
    # A reopen closes the mention, and the closer after it opens a new one.
    assert ner_markup.anchor_iob_tags("disease* A disease* B *disease C") == [
        "B-DISEASE", "O", "B-DISEASE"
    ]
    assert ner_markup.anchor_iob_tags("CYP2D6 * 4 .") == ["O", "B-", "I-"]
    assert ner_markup.anchor_iob_tags("a ( disease* b , c *disease ) .") == [
        "O", "O", "B-DISEASE", "I-DISEASE", "I-DISEASE", "O", "O"
    ]


# ---- the study's scorer, re-expressed from src/finetune_ncbi.py and transformers 4.22 ----

# The punctuation pattern as the study wrote it: an unescaped `^` after the class makes it match
# nothing, so the study's text reaches the tagger with its punctuation.
STUDY_PUNCTUATION = r'[!"#$%&\'()+,-.:;<=>?@[\\]^_`{\|}~⁇]'


def _study_decode(text: str) -> str:
    """`tokenizer.batch_decode(ids, skip_special_tokens=True)` in 4.22 cleans up spaces."""
    for joined in (".", "?", "!", ","):
        text = text.replace(" " + joined, joined)
    text = text.replace(" ' ", "'")
    for suffix in ("n't", "'m", "'s", "'ve", "'re"):
        text = text.replace(" " + suffix, suffix)
    return text


def _study_tags(text: str) -> list[str]:
    """The study's `convert_BIO_labels` for one decoded line."""
    import re

    text = re.sub(r"\*(\w+)", r"\1*", text)
    tokens = re.sub(STUDY_PUNCTUATION, " ", text.strip()).split()
    tags, opened, kind = [], 0, "O"
    for position, token in enumerate(tokens):
        if token.endswith("*"):
            opened = opened + 1 if opened == 0 or token[:-1] != kind else opened - 1
            kind = token[:-1]
        elif opened == 0:
            tags.append("O")
            kind = "O"
        else:
            first = tokens[position - 1].endswith("*")
            tags.append(("B-" if first else "I-") + kind.upper())
    return tags


def _study_scores(targets: list[str], predictions: list[str]) -> dict[str, float]:
    """The study's `compute_metrics`: decode, tag, cut or pad the prediction with 'PAD', seqeval."""
    gold = [_study_tags(_study_decode(t)) for t in targets]
    predicted = [_study_tags(_study_decode(p)) for p in predictions]
    predicted = [p[:len(g)] + ["PAD"] * (len(g) - len(p)) for p, g in zip(predicted, gold)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # seqeval: 'PAD seems not to be NE tag'
        return {"f1": f1_score(gold, predicted), "precision": precision_score(gold, predicted),
                "recall": recall_score(gold, predicted)}


def test_study_punctuation_pattern_matches_nothing():
    import re

    assert re.search(STUDY_PUNCTUATION, '. , ; ( ) ! ? " ^ _ * disease* - [ ]') is None


@pytest.mark.parametrize("seed", range(10))
def test_anchor_scores_are_the_studys_on_random_markup_with_punctuation(seed):
    rng = random.Random(seed)
    targets, predictions = [], []
    for _ in range(rng.randint(5, 40)):
        tokens = random_sentence(rng)
        gold = random_spans(rng, len(tokens))
        targets.append(render(tokens, gold))
        predicted = perturb(rng, gold, len(tokens))
        if rng.random() < 0.3:  # a generation that dropped or added a word
            tokens = tokens[:-1] if rng.random() < 0.5 else [*tokens, "."]
            predicted = [(a, min(b, len(tokens))) for a, b in predicted if a < len(tokens)]
        predictions.append(render(tokens, predicted))
    found = ner_markup.anchor_entity_scores(targets, predictions)
    assert found == pytest.approx(_study_scores(targets, predictions))


def test_closer_before_punctuation_is_lost_after_clean_up():
    assert ner_markup.clean_up_tokenization("a disease* b *disease . c , d 's") == (
        "a disease* b *disease. c, d's")
    # The tagger reads `disease*.` as a word inside the mention, which then never closes.
    assert ner_markup.anchor_iob_tags("a disease* b *disease. c") == [
        "O", "B-DISEASE", "I-DISEASE", "I-DISEASE"]
    scores = ner_markup.anchor_entity_scores(["a disease* b *disease . c"],
                                             ["a disease* b *disease c ."])
    assert scores == pytest.approx(_study_scores(["a disease* b *disease . c"],
                                                 ["a disease* b *disease c ."]))
    assert scores["f1"] == 0.0


def _real_targets(dataset: str, split: str) -> list[str]:
    path = SHARED_DATA / dataset / f"{split}_blurb.tsv"
    if not path.exists():
        pytest.skip(f"real data not present at {path}")
    return [line.rstrip("\n").split("\t")[1] for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "dataset, lines, openers", [("NCBI_disease", 940, 960), ("BC5CDR_disease", 4797, 4424)]
)
def test_real_test_split_gold_against_itself(dataset, lines, openers):
    targets = _real_targets(dataset, "test")
    assert len(targets) == lines
    perfect = {"f1": 1.0, "precision": 1.0, "recall": 1.0}
    assert ner_markup.entity_scores(targets, targets) == perfect
    assert ner_markup.anchor_entity_scores(targets, targets) == pytest.approx(perfect)
    # Every opener followed by a word starts exactly one mention (the files' known counts).
    markers = {ner_markup.OPEN_MARKER, ner_markup.CLOSE_MARKER}
    token_lists = [target.split() for target in targets]
    assert sum(tokens.count(ner_markup.OPEN_MARKER) for tokens in token_lists) == openers
    starting = sum(
        1
        for tokens in token_lists
        for token, following in zip(tokens, tokens[1:] + [ner_markup.CLOSE_MARKER])
        if token == ner_markup.OPEN_MARKER and following not in markers
    )
    mentions = [len(ner_markup.parse_markup(target).spans) for target in targets]
    assert sum(mentions) == starting
    assert mentions == [len(ner_markup.parse_markup(target).spans) for target in targets]


def test_real_ncbi_train_lone_asterisk_lines():
    targets = [t for t in _real_targets("NCBI_disease", "train") if " * " in t]
    assert len(targets) == 2
    for target in targets:
        assert "*" in ner_markup.parse_markup(target).tokens


@pytest.mark.parametrize("dataset, study, without_clean_up", [
    ("NCBI_disease", 924, 961), ("BC5CDR_disease", 4258, 4423),
])
def test_real_test_gold_mentions_as_the_study_counted_them(dataset, study, without_clean_up):
    from seqeval.metrics.sequence_labeling import get_entities

    targets = _real_targets(dataset, "test")
    assert sum(len(get_entities(_study_tags(_study_decode(t)))) for t in targets) == study
    assert sum(len(get_entities(ner_markup.anchor_iob_tags(t))) for t in targets) == (
        without_clean_up)


def test_anchor_scores_are_the_studys_on_perturbed_real_predictions():
    targets = _real_targets("NCBI_disease", "test")
    rng = random.Random(5)
    predictions = []
    for target in targets:
        parsed = ner_markup.parse_markup(target)
        predictions.append(render(list(parsed.tokens),
                                  perturb(rng, list(parsed.spans), len(parsed.tokens))))
    found = ner_markup.anchor_entity_scores(targets, predictions)
    assert found == pytest.approx(_study_scores(targets, predictions))
    assert found["f1"] < ner_markup.entity_scores(targets, predictions)["f1"]
