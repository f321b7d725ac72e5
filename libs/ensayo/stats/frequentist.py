"""Fixed-horizon frequentist tests: Welch's t for means and conversions, delta-method z for ratios.

Both are two-sided at level ``1 - alpha`` and report the absolute lift (t or z interval) and the
relative lift (delta-method standard error, as gbstats' frequentist relative test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from ensayo.stats._lift import (
    Interval,
    arm_from_ratio,
    arm_from_sample,
    build_comparison,
    check_alpha,
    lift_moments,
    welch_df,
)
from ensayo.stats.model import (
    Comparison,
    RatioStats,
    SampleStats,
    SampleStatsArrays,
    StatTest,
)

__all__ = ["LiftArrays", "ratio_test", "t_interval", "welch_test", "welch_test_arrays"]


@dataclass(frozen=True, slots=True)
class LiftArrays:
    """Vectorised absolute-lift results, one entry per test; NaN marks a degenerate entry."""

    estimate: NDArray[np.float64]
    std_error: NDArray[np.float64]
    df: NDArray[np.float64]
    p_value: NDArray[np.float64]
    ci_low: NDArray[np.float64]
    ci_high: NDArray[np.float64]


def t_interval(
    estimate: ArrayLike, std_error: ArrayLike, df: ArrayLike, alpha: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Two-sided Student-t interval and p-value for ``H0: effect = 0``; ``df = inf`` is a z test.

    ``estimate ± t_{1-alpha/2, df}·se`` and ``p = 2·P(T_df > |estimate/se|)``. Vectorised.
    """
    est = np.asarray(estimate, dtype=np.float64)
    se = np.asarray(std_error, dtype=np.float64)
    dof = np.asarray(df, dtype=np.float64)
    with np.errstate(all="ignore"):
        half = sps.t.ppf(1.0 - alpha / 2.0, dof) * se
        p_value = np.minimum(2.0 * sps.t.sf(np.abs(est / se), dof), 1.0)
    return est - half, est + half, p_value


def _interval(alpha: float) -> Interval:
    def interval(estimate: float, std_error: float, df: float) -> tuple[float, float, float]:
        low, high, p = t_interval(estimate, std_error, df, alpha)
        return float(low), float(high), float(p)

    return interval


def welch_test(
    control: SampleStats,
    treatment: SampleStats,
    *,
    alpha: float = 0.05,
    variant_key: str = "",
) -> Comparison:
    """Welch's unequal-variances t-test of ``treatment`` against ``control`` (means, conversions).

    The absolute lift ``x̄_t - x̄_c`` has standard error ``√(s²_t/n_t + s²_c/n_c)`` and
    Welch-Satterthwaite degrees of freedom (Welch 1947); its interval is
    ``lift ± t_{1-alpha/2,df}·se`` and its p-value two-sided, as
    ``scipy.stats.ttest_ind(equal_var=False)``. The relative lift uses the delta-method
    standard error and the same df (Kohavi et al. 2020 §18; gbstats). ``chance_to_win`` and
    ``expected_loss`` are left ``None``; ``variance_reduction`` is 0.

    Degenerate input (an empty arm, fewer than two units, no variance in either arm, a control
    mean of 0) leaves the undefined fields ``None`` with a warning.

    Raises:
        InvalidArgument: ``alpha`` is not in (0, 1).

    """
    check_alpha(alpha)
    moments = lift_moments(arm_from_sample(control), arm_from_sample(treatment), welch=True)
    return build_comparison(
        variant_key, moments, alpha=alpha, interval=_interval(alpha), test=StatTest.WELCH_T
    )


def ratio_test(
    control: RatioStats,
    treatment: RatioStats,
    *,
    alpha: float = 0.05,
    variant_key: str = "",
) -> Comparison:
    """Two-sided z test of a ratio metric (``Σnumerator / Σdenominator`` per arm).

    Each arm's variance is the delta-method variance of its ratio, which uses the numerator's
    and denominator's variances and their covariance (Deng, Knoblich & Lu 2018). The test is a
    normal (z) test, not a t test: the delta method is itself a large-sample approximation,
    so a t correction would claim a precision it does not have. ``comparison.test`` says
    ``z_delta_method``.

    Raises:
        InvalidArgument: ``alpha`` is not in (0, 1).

    """
    check_alpha(alpha)
    moments = lift_moments(arm_from_ratio(control), arm_from_ratio(treatment), welch=False)
    return build_comparison(
        variant_key,
        moments,
        alpha=alpha,
        interval=_interval(alpha),
        test=StatTest.Z_DELTA_METHOD,
    )


def welch_test_arrays(
    control: SampleStatsArrays,
    treatment: SampleStatsArrays,
    *,
    alpha: float = 0.05,
) -> LiftArrays:
    """Welch's test on the absolute lift for many comparisons at once (same maths as above).

    ``control`` and ``treatment`` hold one comparison per entry and broadcast together.
    Entries whose input is degenerate (``n < 2``, zero variance in both arms) come out NaN;
    callers that build reports use :func:`welch_test`, which explains them instead. Raises
    ``InvalidArgument`` when ``alpha`` is not in (0, 1).
    """
    check_alpha(alpha)
    nc, nt = control.n, treatment.n
    with np.errstate(all="ignore"):
        vm_c, vm_t = control.variance / nc, treatment.variance / nt
        se = np.sqrt(vm_c + vm_t)
        se = np.where(se > 0, se, np.nan)
        df = welch_df(vm_c, nc, vm_t, nt)
    estimate = treatment.mean - control.mean
    low, high, p_value = t_interval(estimate, se, df, alpha)
    return LiftArrays(estimate, se, df, p_value, low, high)
