"""Shared core: per-arm moments, the lift's estimate and standard error, degenerate-input rules.

Every test (Welch, z, Bayesian, sequential) starts from the same absolute and relative lift
moments, so the degenerate cases are decided here once and explained the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from ensayo.errors import InvalidArgument
from ensayo.stats.model import Comparison, RatioStats, SampleStats, StatTest, StatWarning

__all__ = [
    "Arm",
    "LiftMoments",
    "arm_from_ratio",
    "arm_from_sample",
    "build_comparison",
    "check_alpha",
    "finite_or_none",
    "lift_moments",
    "relative_variance",
    "welch_df",
]

FloatArray = NDArray[np.float64]
Interval = Callable[[float, float, float], tuple[float, float, float]]
"""``(estimate, std_error, df) -> (low, high, p_value)`` for one two-sided interval."""
_T = TypeVar("_T", float, FloatArray)


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm reduced to what a normal-approximation test needs.

    ``var_mean`` is the variance of the arm's estimator (``s²/n`` for a mean, the delta-method
    variance for a ratio); ``None`` when it cannot be estimated.
    """

    n: int
    mean: float | None
    var_mean: float | None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LiftMoments:
    """Point estimates and standard errors of the absolute and relative lift.

    A field is ``None`` when the input cannot support it; ``warnings`` says why.
    """

    control: Arm
    treatment: Arm
    absolute: float | None
    relative: float | None
    absolute_se: float | None
    relative_se: float | None
    df: float
    warnings: tuple[str, ...]


def finite_or_none(value: float | np.floating | None) -> float | None:
    """``value`` as a float, or ``None`` when it is missing, NaN or infinite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def arm_from_sample(stats: SampleStats) -> Arm:
    """Mean and variance of the mean of one arm of a conversion or mean metric."""
    variance = stats.variance
    var_mean = None if variance is None else variance / stats.n
    return Arm(stats.n, stats.mean, var_mean)


def arm_from_ratio(stats: RatioStats) -> Arm:
    """Ratio and delta-method variance of one arm of a ratio metric."""
    warnings: tuple[str, ...] = ()
    if stats.n > 0 and stats.den_sum == 0:
        warnings = (StatWarning.DENOMINATOR_ZERO,)
    return Arm(stats.n, stats.ratio, stats.ratio_variance, warnings)


def welch_df(var_mean_c: _T, n_c: _T, var_mean_t: _T, n_t: _T) -> _T:
    """Welch-Satterthwaite degrees of freedom from the arms' variances of the mean.

    ``df = (v_c + v_t)² / (v_c²/(n_c - 1) + v_t²/(n_t - 1))`` with ``v = s²/n``
    (Welch 1947; Satterthwaite 1946). Needs ``n ≥ 2`` in both arms and ``v_c + v_t > 0``.
    """
    total = var_mean_c + var_mean_t
    # Products, not ``**``: a Python float raises OverflowError on ``**`` but gives inf on ``*``.
    return (
        total * total / (var_mean_c * var_mean_c / (n_c - 1) + var_mean_t * var_mean_t / (n_t - 1))
    )


def relative_variance(mean_c: _T, var_mean_c: _T, mean_t: _T, var_mean_t: _T) -> _T:
    """Delta-method variance of ``mean_t / mean_c - 1``.

    ``Var ≈ v_t/μ_c² + μ_t²·v_c/μ_c⁴`` for independent arms (Kohavi, Tang & Xu 2020,
    "Trustworthy Online Controlled Experiments", §18; gbstats' frequentist relative test).
    """
    ratio = mean_t / mean_c
    return (var_mean_t + ratio * ratio * var_mean_c) / (mean_c * mean_c)


def lift_moments(control: Arm, treatment: Arm, *, welch: bool) -> LiftMoments:
    """Absolute and relative lift of ``treatment`` over ``control`` with standard errors.

    ``df`` is Welch-Satterthwaite when ``welch`` and both arms have 2+ units, else infinite
    (a normal test). Degenerate input (an empty arm, fewer than two units, no variance, a
    control mean of 0) leaves the affected figures ``None`` and adds a warning; never NaN.
    """
    warnings: list[str] = [*control.warnings, *treatment.warnings]
    if control.n == 0:
        warnings.append(StatWarning.NO_CONTROL_UNITS)
    if treatment.n == 0:
        warnings.append(StatWarning.NO_TREATMENT_UNITS)
    mean_c, mean_t = control.mean, treatment.mean
    result = LiftMoments(control, treatment, None, None, None, None, math.inf, ())
    if mean_c is None or mean_t is None:
        return _finish(result, warnings)
    absolute = mean_t - mean_c
    relative: float | None = None
    if mean_c == 0:
        warnings.append(StatWarning.CONTROL_MEAN_ZERO)
    else:  # over |control|: a rise from -10 to -5 is +50%, not -50% (the sign of the change)
        relative = absolute / abs(mean_c)
    result = dataclasses.replace(result, absolute=absolute, relative=relative)
    var_c, var_t = control.var_mean, treatment.var_mean
    if var_c is None or var_t is None:
        warnings.append(StatWarning.TOO_FEW_UNITS)
        return _finish(result, warnings)
    if var_c + var_t <= 0:
        warnings.append(StatWarning.ZERO_VARIANCE)
        return _finish(result, warnings)
    # numpy scalars: extreme inputs overflow or underflow to inf/0 instead of raising.
    with np.errstate(all="ignore"):
        absolute_se = finite_or_none(np.sqrt(np.float64(var_c) + np.float64(var_t)))
    if absolute_se is None or absolute_se == 0:
        warnings.append(StatWarning.NOT_FINITE)
        return _finish(result, warnings)
    relative_se = None
    if relative is not None:
        relative_se = _relative_se(mean_c, var_c, mean_t, var_t, warnings)
    df = _welch_df(control, treatment) if welch else math.inf
    return _finish(
        dataclasses.replace(result, absolute_se=absolute_se, relative_se=relative_se, df=df),
        warnings,
    )


def _relative_se(
    mean_c: float, var_c: float, mean_t: float, var_t: float, warnings: list[str]
) -> float | None:
    with np.errstate(all="ignore"):
        variance = finite_or_none(
            relative_variance(np.float64(mean_c), np.float64(var_c), np.float64(mean_t), var_t)
        )
    if variance is None:
        warnings.append(StatWarning.NOT_FINITE)
        return None
    if variance <= 0:
        warnings.append(StatWarning.RELATIVE_VARIANCE_ZERO)
        return None
    return math.sqrt(variance)


def _welch_df(control: Arm, treatment: Arm) -> float:
    with np.errstate(all="ignore"):
        df = float(
            welch_df(
                np.float64(control.var_mean),
                np.float64(control.n),
                np.float64(treatment.var_mean),
                np.float64(treatment.n),
            )
        )
    # Not finite only when the squares underflow; fall back to Welch's df lower bound.
    return df if df >= 1 else float(min(control.n, treatment.n) - 1)


def _finish(moments: LiftMoments, warnings: list[str]) -> LiftMoments:
    return dataclasses.replace(moments, warnings=tuple(dict.fromkeys(str(w) for w in warnings)))


def check_alpha(alpha: float, field: str = "alpha") -> None:
    """Reject a significance level outside (0, 1).

    Raises:
        InvalidArgument: ``alpha`` is not a finite number strictly between 0 and 1.

    """
    if not 0.0 < alpha < 1.0:  # also rejects NaN
        raise InvalidArgument(field, "must be in (0, 1)")


def build_comparison(
    variant_key: str,
    moments: LiftMoments,
    *,
    alpha: float,
    interval: Interval,
    test: StatTest,
    variance_reduction: float | None = 0.0,
) -> Comparison:
    """Build a frequentist-style comparison: intervals and p-value from ``interval`` on each lift.

    ``significant`` is ``p_value < alpha``, which for every interval built here is the same as
    the absolute interval excluding 0. Non-finite numbers become ``None``.
    """
    ci_low = ci_high = p_value = None
    if moments.absolute is not None and moments.absolute_se is not None:
        low, high, p = interval(moments.absolute, moments.absolute_se, moments.df)
        ci_low, ci_high, p_value = finite_or_none(low), finite_or_none(high), finite_or_none(p)
    rel_low = rel_high = None
    if moments.relative is not None and moments.relative_se is not None:
        low, high, _ = interval(moments.relative, moments.relative_se, moments.df)
        rel_low, rel_high = finite_or_none(low), finite_or_none(high)
    return Comparison(
        variant_key=variant_key,
        control_mean=finite_or_none(moments.control.mean),
        treatment_mean=finite_or_none(moments.treatment.mean),
        absolute_lift=finite_or_none(moments.absolute),
        relative_lift=finite_or_none(moments.relative),
        ci_low=ci_low,
        ci_high=ci_high,
        relative_ci_low=rel_low,
        relative_ci_high=rel_high,
        p_value=p_value,
        variance_reduction=variance_reduction,
        significant=p_value is not None and p_value < alpha,
        warnings=moments.warnings,
        test=test,
    )
