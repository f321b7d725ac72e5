"""Sample-ratio-mismatch checks: observed units per variant against the intended split.

A mismatch means assignment or exposure logging is broken, so every other number in the report
is suspect; ``ok`` turns false at ``p < 0.001`` (CONTRACT.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

from ensayo.errors import InvalidArgument
from ensayo.stats.model import SrmResult, StatWarning

__all__ = ["SRM_THRESHOLD", "srm_test", "stratified_srm_test"]

SRM_THRESHOLD = 0.001
"""``ok`` is false below this p-value (CONTRACT.md; Fabijan et al. 2019 use the same)."""


def _counts(field: str, observed: Sequence[int]) -> NDArray[np.float64]:
    counts = np.asarray(observed, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 1:
        raise InvalidArgument(field, "must list one count per variant")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise InvalidArgument(field, "counts must be non-negative integers")
    return counts


def _weights(field: str, weights: Sequence[float], size: int) -> NDArray[np.float64]:
    shares = np.asarray(weights, dtype=np.float64)
    if shares.shape != (size,):
        raise InvalidArgument(field, "must have one weight per variant")
    if not np.all(np.isfinite(shares)) or np.any(shares < 0):
        raise InvalidArgument(field, "must be finite and non-negative")
    total = shares.sum()
    if total <= 0:
        raise InvalidArgument(field, "must not all be 0")
    return np.asarray(shares / total, dtype=np.float64)


def _chi_square(counts: NDArray[np.float64], shares: NDArray[np.float64]) -> tuple[float, int]:
    """Pearson's statistic and df over positive weights; inf if a 0-weight variant has units."""
    if np.any(counts[shares == 0] > 0):
        return float("inf"), max(int(np.count_nonzero(shares)) - 1, 0)
    live = shares > 0
    expected = counts.sum() * shares[live]
    statistic = float(np.sum((counts[live] - expected) ** 2 / expected))
    return statistic, int(np.count_nonzero(live)) - 1


def _result(statistic: float, df: int, warnings: tuple[str, ...]) -> SrmResult:
    if df == 0:
        p_value = 0.0 if statistic == float("inf") else 1.0
    else:
        p_value = float(sps.chi2.sf(statistic, df))
    return SrmResult(p_value, statistic, p_value >= SRM_THRESHOLD, df, warnings)


def srm_test(observed: Sequence[int], weights: Sequence[float]) -> SrmResult:
    """Pearson chi-square goodness of fit of units per variant to the intended weights.

    Same statistic and p-value as ``scipy.stats.chisquare(observed, total·weights)`` with
    ``k - 1`` degrees of freedom, over the variants whose weight is positive. Weights are
    relative (normalised here). Units in a variant of weight 0 are a mismatch by definition
    (``chi_square = inf``, ``p_value = 0``, with a warning). With no unit at all the check
    cannot run: ``p_value`` is ``None`` and ``ok`` is true, with a warning. Raises
    ``InvalidArgument`` for negative or fractional counts, or weights that are negative,
    non-finite, all 0, or not one per variant.
    """
    counts = _counts("observed", observed)
    shares = _weights("weights", weights, counts.size)
    if counts.sum() == 0:
        return SrmResult(None, None, True, 0, (str(StatWarning.NO_UNITS),))
    statistic, df = _chi_square(counts, shares)
    warnings = (str(StatWarning.UNEXPECTED_UNITS),) if statistic == float("inf") else ()
    return _result(statistic, df, warnings)


def stratified_srm_test(
    observed: Sequence[Sequence[int]], weights: Sequence[Sequence[float]]
) -> SrmResult:
    """SRM check for a split that changed over time (bandits): one chi-square per period.

    ``observed[p]`` and ``weights[p]`` are the units and intended weights of allocation period
    ``p``. The statistic is the sum of the periods' Pearson statistics and its degrees of
    freedom the sum of theirs; independent periods make the sum chi-square under the null.
    Periods without units are skipped. Raises ``InvalidArgument`` as :func:`srm_test` does,
    naming the period (``observed[2]``), or when the two lists differ in length.
    """
    if len(observed) != len(weights):
        raise InvalidArgument("weights", "must have one list of weights per period")
    total, df, seen = 0.0, 0, False
    warnings: tuple[str, ...] = ()
    for period, (period_counts, period_weights) in enumerate(zip(observed, weights, strict=True)):
        counts = _counts(f"observed[{period}]", period_counts)
        shares = _weights(f"weights[{period}]", period_weights, counts.size)
        if counts.sum() == 0:
            continue
        seen = True
        statistic, period_df = _chi_square(counts, shares)
        total += statistic
        df += period_df
        if statistic == float("inf"):
            warnings = (str(StatWarning.UNEXPECTED_UNITS),)
    if not seen:
        return SrmResult(None, None, True, 0, (str(StatWarning.NO_UNITS),))
    return _result(total, df, warnings)
