"""Entity-level scoring of the NER tasks' `disease* ... *disease` markup.

A target (or prediction) is the sentence, whitespace-tokenised, with each mention wrapped in the
marker tokens `disease*` and `*disease`. `parse_markup` turns it into the de-marked tokens plus the
mention spans; `entity_scores` pools true positives, predicted and gold mentions over a corpus.

The default scoring fixes two bugs of the anchors' scorer (SciFive biot5x `ner_metric`, which the
study reused). `anchor_entity_scores` reproduces the study's scoring for comparison with published
numbers: that scorer, on text cleaned up as transformers 4.22 decoded it.
"""

import dataclasses
import difflib
import re
import warnings
from collections.abc import Sequence

OPEN_MARKER = "disease*"
CLOSE_MARKER = "*disease"


@dataclasses.dataclass(frozen=True)
class Markup:
    """A parsed markup line: de-marked tokens and mention spans as [start, end) token indices."""

    tokens: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]


def parse_markup(text: str) -> Markup:
    """Parse markup; the same rule for gold and predictions.

    The rule is the IOB2 reading of the markup (the token after an opener is B, the tokens after it
    are I until a closer), which also fixes the malformed lines of the real data:
    - only the exact whitespace tokens `disease*` and `*disease` are markers; everything else is
      text, including a lone `*` (as in `CYP2D6 * 4`);
    - an opener inside an open mention ends that mention before itself and starts a new one, so a
      composite `disease* A disease* B *disease` gives the mentions A and B;
    - a closer with no open mention is ignored;
    - a mention still open at the end of the text runs to the end of the text;
    - a mention with no tokens (an opener directly followed by a marker or the end) is dropped.
    """
    tokens: list[str] = []
    spans: list[tuple[int, int]] = []
    open_at: int | None = None
    for token in text.split():
        if token == OPEN_MARKER or token == CLOSE_MARKER:
            if open_at is not None and open_at < len(tokens):
                spans.append((open_at, len(tokens)))
            open_at = len(tokens) if token == OPEN_MARKER else None
        else:
            tokens.append(token)
    if open_at is not None and open_at < len(tokens):
        spans.append((open_at, len(tokens)))
    return Markup(tuple(tokens), tuple(spans))


def spans_on_gold_tokens(
    prediction: Markup, gold_tokens: Sequence[str]
) -> list[tuple[int, int] | None]:
    """Each predicted span moved onto the gold token positions, or None where it does not map.

    Generated text may differ from the gold sentence (a dropped, added or changed word). The two
    token lists are aligned with difflib's longest-matching-blocks diff; a predicted span maps when
    every one of its tokens is matched, to consecutive gold positions. A span that does not map
    still counts as predicted, so it can only be a false positive.
    """
    gold_tokens = tuple(gold_tokens)
    if prediction.tokens == gold_tokens:
        return list(prediction.spans)
    matcher = difflib.SequenceMatcher(None, prediction.tokens, gold_tokens, autojunk=False)
    gold_position = {}
    for predicted_start, gold_start, size in matcher.get_matching_blocks():
        for offset in range(size):
            gold_position[predicted_start + offset] = gold_start + offset
    mapped: list[tuple[int, int] | None] = []
    for start, end in prediction.spans:
        first = gold_position.get(start)
        contiguous = first is not None and all(
            gold_position.get(start + offset) == first + offset for offset in range(end - start)
        )
        mapped.append((first, first + end - start) if contiguous else None)
    return mapped


@dataclasses.dataclass(frozen=True)
class EntityCounts:
    """Mention counts of one example or a pooled corpus."""

    true_positives: int
    predicted: int
    gold: int

    def __add__(self, other: "EntityCounts") -> "EntityCounts":
        return EntityCounts(
            self.true_positives + other.true_positives,
            self.predicted + other.predicted,
            self.gold + other.gold,
        )


def count_entities(target: str, prediction: str) -> EntityCounts:
    """Exact-span matches of the prediction's mentions against the target's."""
    gold = parse_markup(target)
    predicted = parse_markup(prediction)
    mapped = spans_on_gold_tokens(predicted, gold.tokens)
    true_positives = len(set(gold.spans) & {span for span in mapped if span is not None})
    return EntityCounts(true_positives, len(predicted.spans), len(gold.spans))


def precision_recall_f1(counts: EntityCounts) -> dict[str, float]:
    """Micro P/R/F1 from pooled counts; 0.0 where a denominator is 0 (seqeval's convention)."""
    precision = counts.true_positives / counts.predicted if counts.predicted else 0.0
    recall = counts.true_positives / counts.gold if counts.gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def entity_scores(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Entity-level micro P/R/F1 pooled over a corpus (the fixed, default scoring)."""
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    total = EntityCounts(0, 0, 0)
    for target, prediction in zip(targets, predictions):
        total += count_entities(target, prediction)
    return precision_recall_f1(total)


_ANCHOR_CLOSER_REWRITE = re.compile(r"\*(\w+)")
# transformers' `clean_up_tokenization`, applied in order by 4.22's `decode` by default.
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_tokenization(text: str) -> str:
    """The text as transformers 4.22's `batch_decode` gave it to the study's scorer: spaces
    before `.`, `,`, `?`, `!` and some contractions removed. A closer followed by punctuation
    (`*disease .`) becomes `*disease.`, which the anchors' tagger no longer sees as a marker."""
    for before, after in _CLEAN_UP:
        text = text.replace(before, after)
    return text


def anchor_iob_tags(text: str) -> list[str]:
    """The IOB tags the anchors' scorer derives from a markup line, its quirks included.

    - every `*word` becomes `word*`, so a closer equals an opener and markers toggle: an opener
      inside an open mention closes it, and a following closer opens a new one;
    - any token ending in `*` is a marker of the type before the `*`, a lone `*` included;
    - the anchor meant to blank out punctuation first, but its regex never matches (an unescaped
      `^` in mid-pattern), so punctuation tokens stay: nothing is blanked here either.
    """
    tokens = _ANCHOR_CLOSER_REWRITE.sub(r"\1*", text.strip()).split()
    tags: list[str] = []
    depth = 0
    entity_type = "O"
    for index, token in enumerate(tokens):
        if token.endswith("*"):
            depth += 1 if depth == 0 or token[:-1] != entity_type else -1
            entity_type = token[:-1]
        elif depth == 0:
            tags.append("O")
            entity_type = "O"
        else:
            prefix = "B-" if tokens[index - 1].endswith("*") else "I-"
            tags.append(prefix + entity_type.upper())
    return tags


def pad_to_gold_length(predicted_tags: list[str], gold_length: int) -> list[str]:
    """The anchors' length alignment: cut the prediction, or pad it with 'PAD' tags.

    seqeval reads a run of 'PAD' as one entity (of type 'AD'), so every padded prediction gains a
    false-positive entity; tokens are compared by position, so one dropped word shifts the rest.
    """
    if len(predicted_tags) >= gold_length:
        return predicted_tags[:gold_length]
    return predicted_tags + ["PAD"] * (gold_length - len(predicted_tags))


def anchor_entity_scores(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """P/R/F1 as the study computed them: transformers 4.22's decoding clean-up on both sides,
    then the anchors' tags, their alignment and seqeval's default mode."""
    # seqeval is needed only for this comparison mode, so only this function imports it.
    from seqeval.metrics import classification_report

    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    gold_tags = [anchor_iob_tags(clean_up_tokenization(target)) for target in targets]
    predicted_tags = [
        pad_to_gold_length(anchor_iob_tags(clean_up_tokenization(prediction)), len(gold))
        for prediction, gold in zip(predictions, gold_tags)
    ]
    with warnings.catch_warnings():
        # seqeval warns that 'PAD' is no entity tag, then counts it as one: the quirk reproduced.
        warnings.simplefilter("ignore", UserWarning)
        report = classification_report(
            gold_tags, predicted_tags, output_dict=True, zero_division=0
        )
    overall = report["micro avg"]
    return {
        "f1": float(overall["f1-score"]),
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
    }
