"""Token-budgeted windows of long text: CLIP's document context, RadQA's report context.

Windows are cut at whitespace-separated words. SentencePiece never merges pieces across
whitespace, so a text's token count is the sum of its words' counts, which lets one encoding call
per document price every candidate window.
"""

import bisect
import itertools
import logging
import re
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\S+")


class TokenCounter:
    """Counts tokens with the model's vocabulary, or one per whitespace word when none is set."""

    def __init__(self, lengths: Callable[[Sequence[str]], list[int]] | None):
        self._lengths = lengths
        self._warned = False

    @property
    def exact(self) -> bool:
        """False when counting whitespace words (an undercount for subword vocabularies)."""
        return self._lengths is not None

    def words(self, words: Sequence[str]) -> list[int]:
        """Token count of each word as it appears inside a text."""
        if not words:
            return []
        if self._lengths:
            return self._lengths(words)
        if not self._warned:
            logger.warning("no vocabulary set: windows are sized counting words as tokens")
            self._warned = True
        return [1] * len(words)

    def text(self, text: str) -> int:
        """Token count of a whole text (no EOS)."""
        return sum(self.words(text.split()))


def token_counter() -> TokenCounter:
    """A counter using the configured vocabulary, else the whitespace approximation (logged)."""
    from ct5x_tasks.vocabulary import VOCABULARY  # SeqIO and TensorFlow: only when data is built

    return TokenCounter(VOCABULARY.token_lengths if VOCABULARY.is_configured() else None)


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each whitespace-separated word."""
    return [match.span() for match in _WORD.finditer(text)]


def centered_window(costs: Sequence[int], start: int, end: int, budget: int) -> tuple[int, int]:
    """The widest word range [lo, hi) holding [start, end) whose cost fits `budget`.

    The range grows one word at a time alternately on each side (left first), and continues on
    one side once the other reaches the text's edge. If [start, end) alone is over budget it is
    returned as is: the caller's truncation count will see it.
    """
    prefix = [0, *itertools.accumulate(costs)]
    left_room, right_room = start, len(costs) - end

    def bounds(extra: int) -> tuple[int, int]:
        left = min(left_room, max((extra + 1) // 2, extra - right_room))
        return start - left, end + extra - left

    def cost(extra: int) -> int:
        lo, hi = bounds(extra)
        return prefix[hi] - prefix[lo]

    # cost() never decreases as `extra` grows, so the largest fitting `extra` is a bisection.
    extras = range(left_room + right_room + 1)
    fitting = bisect.bisect_right(extras, budget, key=cost) - 1
    return bounds(max(fitting, 0))
