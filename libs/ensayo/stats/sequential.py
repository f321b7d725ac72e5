"""Always-valid inference: the asymptotic confidence sequence of Waudby-Smith et al. (2021).

The interval and p-value stay valid however often a report is looked at (continuous peeking),
at the price of a wider interval than a fixed-horizon test. This follows GrowthBook's
sequential engine: a normal-mixture boundary whose tuning ``rho`` is set from a planned size.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ensayo.errors import InvalidArgument
from ensayo.stats._lift import (
    arm_from_ratio,
    arm_from_sample,
    build_comparison,
    check_alpha,
    lift_moments,
)
from ensayo.stats.frequentist import LiftArrays
from ensayo.stats.model import (
    Comparison,
    RatioStats,
    SampleStats,
    SampleStatsArrays,
    StatTest,
)

__all__ = [
    "DEFAULT_PLANNED_UNITS_PER_ARM",
    "always_valid_p_value",
    "confidence_sequence_halfwidth",
    "sequential_rho",
    "sequential_test",
    "sequential_test_arrays",
]

DEFAULT_PLANNED_UNITS_PER_ARM = 5000
"""Units per arm where the sequence is tuned to be narrowest (both arms: twice this)."""


def sequential_rho(alpha: float, planned_units: float) -> float:
    """Mixture tuning ``rho`` that makes the boundary tightest at ``planned_units`` observations.

    ``rho = √((-2·ln alpha + ln(1 - 2·ln alpha)) / N*)`` (Waudby-Smith et al. 2021, eq. for the
    optimal ``rho`` at time ``N*``; GrowthBook's ``sequential_rho``). ``planned_units`` counts
    both arms. Raises ``InvalidArgument`` when ``alpha`` is not in (0, 1) or ``planned_units``
    is not positive.
    """
    check_alpha(alpha)
    if not (math.isfinite(planned_units) and planned_units > 0):
        raise InvalidArgument("planned_units", "must be finite and positive")
    log_alpha = math.log(alpha)
    return math.sqrt((-2.0 * log_alpha + math.log(1.0 - 2.0 * log_alpha)) / planned_units)


def confidence_sequence_halfwidth(
    std_error: ArrayLike, n: ArrayLike, alpha: float, rho: float
) -> NDArray[np.float64]:
    """Half-width of the two-sided asymptotic confidence sequence at ``n`` observations.

    ``se·√(2·(n·rho² + 1)·ln(√(n·rho² + 1)/alpha) / (n·rho²))`` where ``se`` is the estimate's
    standard error, i.e. ``s/√n`` with ``s`` the per-observation spread (Waudby-Smith et al.
    2021, Theorem 2.2, two-sided normal mixture). Vectorised; ``n`` counts units in both arms.
    """
    nr2 = np.asarray(n, dtype=np.float64) * rho**2
    se = np.asarray(std_error, dtype=np.float64)
    with np.errstate(all="ignore"):
        return se * np.sqrt(2.0 * (nr2 + 1.0) * np.log(np.sqrt(nr2 + 1.0) / alpha) / nr2)


def always_valid_p_value(
    estimate: ArrayLike, std_error: ArrayLike, n: ArrayLike, rho: float
) -> NDArray[np.float64]:
    """Always-valid p-value: the smallest alpha whose confidence sequence excludes 0.

    With ``rho`` held fixed this is ``min(1, 1/E)`` for the normal-mixture e-value
    ``E = exp(rho²·n·z² / (2·(n·rho² + 1))) / √(n·rho² + 1)``, ``z = estimate/se`` (Waudby-Smith
    et al. 2021, eq. 155; GrowthBook's sequential p-value); by Ville's inequality
    ``P(∃n: p_n ≤ alpha) ≤ alpha`` under the null. Computed in log space (no overflow).
    """
    nr2 = np.asarray(n, dtype=np.float64) * rho**2
    with np.errstate(all="ignore"):
        z = np.asarray(estimate, dtype=np.float64) / np.asarray(std_error, dtype=np.float64)
        log_p = 0.5 * np.log1p(nr2) - nr2 * z**2 / (2.0 * (nr2 + 1.0))
    return np.exp(np.minimum(log_p, 0.0))


def _planned_units(planned_units_per_arm: float) -> float:
    if not (math.isfinite(planned_units_per_arm) and planned_units_per_arm > 0):
        raise InvalidArgument("planned_units_per_arm", "must be finite and positive")
    return 2.0 * planned_units_per_arm


def sequential_test(
    control: SampleStats | RatioStats,
    treatment: SampleStats | RatioStats,
    *,
    alpha: float = 0.05,
    planned_units_per_arm: float = DEFAULT_PLANNED_UNITS_PER_ARM,
    variant_key: str = "",
) -> Comparison:
    """Always-valid comparison: confidence-sequence intervals and an always-valid p-value.

    The lift and its standard error are those of the fixed-horizon test (Welch's for means,
    the delta method for ratios and relative lifts); the interval is
    ``lift ± confidence_sequence_halfwidth`` with ``n = n_c + n_t`` and ``rho`` from
    ``alpha`` and ``2·planned_units_per_arm`` (default 5,000 per arm: the sequence is
    narrowest there and valid at every size). ``p_value`` is :func:`always_valid_p_value`, so
    ``significant`` (``p_value < alpha``) is the same as the interval excluding 0. Degenerate
    input is explained as in :func:`~ensayo.stats.frequentist.welch_test`. Raises
    ``InvalidArgument`` for a bad ``alpha`` or ``planned_units_per_arm``, or mixed arm kinds.
    """
    check_alpha(alpha)
    rho = sequential_rho(alpha, _planned_units(planned_units_per_arm))
    if isinstance(control, SampleStats) and isinstance(treatment, SampleStats):
        moments = lift_moments(arm_from_sample(control), arm_from_sample(treatment), welch=False)
    elif isinstance(control, RatioStats) and isinstance(treatment, RatioStats):
        moments = lift_moments(arm_from_ratio(control), arm_from_ratio(treatment), welch=False)
    else:
        raise InvalidArgument("treatment", "must be of the same kind as control")
    n = control.n + treatment.n

    def interval(estimate: float, std_error: float, _df: float) -> tuple[float, float, float]:
        half = float(confidence_sequence_halfwidth(std_error, n, alpha, rho))
        p_value = float(always_valid_p_value(estimate, std_error, n, rho))
        return estimate - half, estimate + half, p_value

    return build_comparison(
        variant_key,
        moments,
        alpha=alpha,
        interval=interval,
        test=StatTest.CONFIDENCE_SEQUENCE,
    )


def sequential_test_arrays(
    control: SampleStatsArrays,
    treatment: SampleStatsArrays,
    *,
    alpha: float = 0.05,
    planned_units_per_arm: float = DEFAULT_PLANNED_UNITS_PER_ARM,
) -> LiftArrays:
    """:func:`sequential_test` on the absolute lift of many comparisons at once.

    Degenerate entries come out NaN; ``df`` is infinite (normal boundary). Raises
    ``InvalidArgument`` for a bad ``alpha`` or ``planned_units_per_arm``.
    """
    check_alpha(alpha)
    rho = sequential_rho(alpha, _planned_units(planned_units_per_arm))
    with np.errstate(all="ignore"):
        se = np.sqrt(control.variance / control.n + treatment.variance / treatment.n)
        se = np.where(se > 0, se, np.nan)
    n = control.n + treatment.n
    estimate = treatment.mean - control.mean
    half = confidence_sequence_halfwidth(se, n, alpha, rho)
    p_value = always_valid_p_value(estimate, se, n, rho)
    p_value = np.where(np.isnan(se), np.nan, p_value)
    df = np.full_like(estimate, np.inf)
    return LiftArrays(estimate, se, df, p_value, estimate - half, estimate + half)
