"""The statistics against their references: scipy's ttest_rel and t distribution, a worked Holm
example, and the study's bootstrap written out step by step."""

import math

import numpy as np
import pytest
from scipy import stats

from ct5x.evaluation import statistics

FOLDS_A = [0.842, 0.851, 0.838, 0.860, 0.847]
FOLDS_B = [0.831, 0.849, 0.829, 0.846, 0.840]
FOLDS_C = [0.801, 0.835, 0.812, 0.829, 0.826]


def test_paper_interval_is_the_studys_bootstrap():
    # The study: RandomState(42); 100 means of 5 draws with replacement; 2.5/97.5 percentiles.
    rng = np.random.RandomState(42)
    means = []
    for _ in range(100):
        draws = [FOLDS_A[rng.randint(0, 5)] for _ in range(5)]
        means.append(sum(draws) / 5)
    means.sort()
    # numpy's default (linear) percentile at 2.5% and 97.5% of 100 sorted values.
    low = means[2] + 0.475 * (means[3] - means[2])
    high = means[96] + 0.525 * (means[97] - means[96])
    assert statistics.paper_interval(FOLDS_A) == pytest.approx((low, high), abs=1e-12)


def test_paper_interval_follows_resamples_and_seed():
    assert statistics.paper_interval(FOLDS_A, 100, 42) != statistics.paper_interval(FOLDS_A, 100, 7)
    assert statistics.paper_interval(FOLDS_A, 1000, 42) != statistics.paper_interval(FOLDS_A)
    assert statistics.paper_interval([0.5]) is None


def test_t_interval_equals_scipy():
    expected = stats.t.interval(0.95, 4, loc=np.mean(FOLDS_B), scale=stats.sem(FOLDS_B))
    assert statistics.t_interval(FOLDS_B) == pytest.approx(expected, rel=1e-12)
    assert statistics.t_interval([0.5]) is None


def test_mean_and_standard_deviation():
    assert statistics.mean(FOLDS_C) == pytest.approx(sum(FOLDS_C) / 5, rel=1e-15)
    assert statistics.standard_deviation(FOLDS_C) == pytest.approx(
        math.sqrt(sum((x - sum(FOLDS_C) / 5) ** 2 for x in FOLDS_C) / 4), rel=1e-12)
    assert statistics.standard_deviation([0.5]) is None


def test_holm_matches_a_worked_example():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    adjusted = statistics.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    # Capped at 1; an undefined p stays undefined and is not counted in the family.
    adjusted = statistics.holm([0.6, float("nan"), 0.2])
    assert adjusted[0] == pytest.approx(0.6) and adjusted[2] == pytest.approx(0.4)
    assert math.isnan(adjusted[1])


def test_paired_tests_equal_ttest_rel_with_holm():
    scores = {"a": FOLDS_A, "b": FOLDS_B, "c": FOLDS_C}
    tests = statistics.paired_tests(scores)
    assert [(t.a, t.b) for t in tests] == [("a", "b"), ("a", "c"), ("b", "c")]
    raw = []
    for test in tests:
        expected = stats.ttest_rel(scores[test.a], scores[test.b])
        assert test.t == pytest.approx(float(expected.statistic), rel=1e-12)
        assert test.p == pytest.approx(float(expected.pvalue), rel=1e-12)
        assert test.df == 4
        assert test.mean_difference == pytest.approx(
            np.mean(scores[test.a]) - np.mean(scores[test.b]), rel=1e-12)
        raw.append(test.p)
    order = np.argsort(raw)
    running, expected_holm = 0.0, [0.0] * 3
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[index]))
        expected_holm[index] = running
    assert [t.p_holm for t in tests] == pytest.approx(expected_holm, rel=1e-12)


def test_identical_differences_give_undefined_t():
    (test,) = statistics.paired_tests({"a": FOLDS_A, "b": list(FOLDS_A)})
    assert math.isnan(test.p) and math.isnan(test.p_holm)
