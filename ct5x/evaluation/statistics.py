"""Statistics over per-fold test scores: mean, two 95% intervals, paired t-tests with Holm.

- `paper_interval`: the study's interval, reproduced exactly: a `numpy.random.RandomState(seed)`
  draws `resamples` bootstrap samples of the n fold scores (with replacement, n per sample), and
  the interval is the 2.5th and 97.5th percentiles (numpy's default linear interpolation) of the
  sample means. With 5 scores it can only take a handful of values and is too narrow: it ignores
  that the 5 scores are themselves a small sample. It is offered to compare with the paper.
- `t_interval`: mean +/- t(0.975, n-1) * s / sqrt(n), s the sample standard deviation (ddof 1).
- `paired_tests`: for every pair of models, scipy's `ttest_rel` on their fold scores paired by
  fold (df = n - 1), and the Holm-adjusted p over all pairs of the same table and metric
  (statsmodels' `multipletests`, method "holm"), which the study did not apply.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class PairTest:
    """A paired t-test of model a against model b (positive t: a scores higher)."""

    a: str
    b: str
    mean_difference: float
    t: float
    df: int
    p: float
    p_holm: float


def mean(scores: Sequence[float]) -> float:
    return float(np.mean(scores))


def standard_deviation(scores: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof 1); None for a single score."""
    return float(np.std(scores, ddof=1)) if len(scores) > 1 else None


def paper_interval(scores: Sequence[float], resamples: int = 100,
                   seed: int = 42) -> tuple[float, float] | None:
    """The study's percentile bootstrap of the fold scores (see the module doc); None for n < 2."""
    if len(scores) < 2:
        return None
    rng = np.random.RandomState(seed)
    means = [np.mean(rng.choice(scores, len(scores), replace=True)) for _ in range(resamples)]
    low, high = np.percentile(means, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def t_interval(scores: Sequence[float]) -> tuple[float, float] | None:
    """Student-t interval of the mean of the fold scores; None for n < 2."""
    n = len(scores)
    if n < 2:
        return None
    half_width = stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * np.std(scores, ddof=1) / math.sqrt(n)
    centre = float(np.mean(scores))
    return centre - float(half_width), centre + float(half_width)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p values (statsmodels); NaN ones stay NaN and are not in the family."""
    raw = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(raw), np.nan)
    defined = ~np.isnan(raw)
    if defined.any():
        adjusted[defined] = multipletests(raw[defined], method="holm")[1]
    return adjusted.tolist()


def paired_tests(scores: Mapping[str, Sequence[float]]) -> list[PairTest]:
    """Every pair (in the mapping's order) tested by fold, Holm-adjusted over all pairs.

    A pair whose fold differences are all equal has no defined t (scipy gives NaN): its p and
    adjusted p stay NaN and it is left out of the Holm family.
    """
    pairs = list(itertools.combinations(scores, 2))
    results = [stats.ttest_rel(scores[a], scores[b]) for a, b in pairs]
    raw = [float(result.pvalue) for result in results]
    adjusted = holm(raw)
    return [
        PairTest(
            a=a,
            b=b,
            mean_difference=float(np.mean(np.subtract(scores[a], scores[b]))),
            t=float(result.statistic),
            df=int(result.df),
            p=float(p),
            p_holm=float(p_holm),
        )
        for (a, b), result, p, p_holm in zip(pairs, results, raw, adjusted)
    ]
