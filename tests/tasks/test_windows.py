"""Token-budgeted windows."""


import pytest

from ct5x_tasks.windows import TokenCounter, centered_window, word_spans


def _reference(costs, start, end, budget):
    """Grow word by word, alternately left then right, as long as it fits."""
    lo, hi, left_turn = start, end, True
    while True:
        options = ([lo - 1, hi] if left_turn else [lo, hi + 1], [lo, hi + 1] if left_turn else
                   [lo - 1, hi])
        grown = next(((a, b) for a, b in options if a >= 0 and b <= len(costs)), None)
        if grown is None or sum(costs[grown[0]:grown[1]]) > budget:
            return lo, hi
        if grown[0] < lo:
            left_turn = False
        else:
            left_turn = True
        lo, hi = grown


@pytest.mark.parametrize("seed", range(30))
def test_matches_word_by_word_growth(seed):
    import random

    rng = random.Random(seed)
    costs = [rng.randint(1, 4) for _ in range(rng.randint(1, 40))]
    start = rng.randrange(len(costs))
    end = rng.randint(start + 1, len(costs))
    budget = rng.randint(0, sum(costs) + 3)
    lo, hi = centered_window(costs, start, end, budget)
    assert lo <= start and end <= hi
    assert sum(costs[lo:hi]) <= budget or (lo, hi) == (start, end)
    assert (lo, hi) == _reference(costs, start, end, budget)


def test_edges_and_over_budget():
    assert centered_window([1] * 10, 0, 1, 4) == (0, 4)
    assert centered_window([1] * 10, 9, 10, 4) == (6, 10)
    assert centered_window([1] * 10, 4, 6, 6) == (2, 8)
    assert centered_window([5, 5, 5], 1, 2, 3) == (1, 2)


def test_counters():
    approximate = TokenCounter(None)
    assert not approximate.exact and approximate.text("a bb  ccc") == 3
    exact = TokenCounter(lambda words: [len(w) for w in words])
    assert exact.exact and exact.words(["ab", "c"]) == [2, 1] and exact.text("ab c") == 3
    assert word_spans(" ab  c") == [(1, 3), (5, 6)]
