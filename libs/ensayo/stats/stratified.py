"""Stratified comparison: combine per-period estimates when the allocation changed (bandits).

Pooling units across periods with different splits confounds the variant with time (Simpson's
paradox); comparing within each allocation period and then combining removes that bias.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ensayo.errors import InvalidArgument
from ensayo.stats._lift import (
    Arm,
    arm_from_sample,
    build_comparison,
    check_alpha,
    lift_moments,
)
from ensayo.stats.frequentist import t_interval
from ensayo.stats.model import Comparison, SampleStats, StatTest, StatWarning, Weighting

__all__ = ["strata_weights", "stratified_test"]


def strata_weights(
    variances: ArrayLike, units: ArrayLike, weighting: Weighting
) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    """Normalised weights of strata: ``∝ 1/variance`` or ``∝ units``.

    Inverse-variance weights give the fixed-effect meta-analytic estimate, the most precise
    combination when every stratum estimates the same effect (Cochran 1954). Unit weights give
    the post-stratified estimate of the effect averaged over the population actually enrolled,
    the right target when the effect drifts between periods. Raises ``InvalidArgument`` for a
    non-positive variance (inverse variance) or a negative unit count.
    """
    var = np.asarray(variances, dtype=np.float64)
    n = np.asarray(units, dtype=np.float64)
    if weighting is Weighting.INVERSE_VARIANCE:
        if not np.all(var > 0):
            raise InvalidArgument("variances", "must be positive for inverse-variance weights")
        raw = 1.0 / var
    else:
        if np.any(n < 0) or n.sum() <= 0:
            raise InvalidArgument("units", "must be non-negative and not all 0")
        raw = n
    return np.asarray(raw / raw.sum(), dtype=np.float64)


def stratified_test(
    control: Sequence[SampleStats],
    treatment: Sequence[SampleStats],
    *,
    weighting: Weighting = Weighting.INVERSE_VARIANCE,
    alpha: float = 0.05,
    variant_key: str = "",
) -> Comparison:
    """Compare within each stratum (allocation period) and combine with weights ``w_p``.

    ``control[p]`` and ``treatment[p]`` are the arms' statistics in stratum ``p``. The combined
    means are ``Σ w_p·x̄_p`` per arm, with variances ``Σ w_p²·s²_p/n_p``, so the absolute lift
    is ``Σ w_p·(x̄_t,p - x̄_c,p)``; the relative lift and its interval use the delta method on
    the combined means. Weights come from :func:`strata_weights` (inverse variance of each
    stratum's lift, or units in both arms). The test is a z test (``comparison.test`` is
    ``z_stratified``). Strata with fewer than two units in an arm, or no variance under
    inverse-variance weighting, are left out with a warning. Raises ``InvalidArgument`` when
    the lists are empty or differ in length, or when ``alpha`` is not in (0, 1).
    """
    check_alpha(alpha)
    if len(control) != len(treatment) or not control:
        raise InvalidArgument("treatment", "must have one entry per stratum of control")
    warnings: list[str] = []
    kept: list[tuple[Arm, Arm]] = []
    for stats_c, stats_t in zip(control, treatment, strict=True):
        arm_c, arm_t = arm_from_sample(stats_c), arm_from_sample(stats_t)
        if arm_c.mean is None and arm_t.mean is None:
            continue  # an empty period says nothing and needs no warning
        usable = arm_c.var_mean is not None and arm_t.var_mean is not None
        if usable and weighting is Weighting.INVERSE_VARIANCE:
            usable = (arm_c.var_mean or 0.0) + (arm_t.var_mean or 0.0) > 0
        if usable:
            kept.append((arm_c, arm_t))
        else:
            warnings.append(StatWarning.STRATUM_DROPPED)
    if not kept:
        warnings.append(StatWarning.NO_USABLE_STRATUM)
        return Comparison(
            variant_key=variant_key,
            variance_reduction=0.0,
            warnings=tuple(dict.fromkeys(str(w) for w in warnings)),
            test=StatTest.Z_STRATIFIED,
        )
    mean_c = np.array([c.mean for c, _ in kept], dtype=np.float64)
    mean_t = np.array([t.mean for _, t in kept], dtype=np.float64)
    var_c = np.array([c.var_mean for c, _ in kept], dtype=np.float64)
    var_t = np.array([t.var_mean for _, t in kept], dtype=np.float64)
    units = np.array([c.n + t.n for c, t in kept], dtype=np.float64)
    w = strata_weights(var_c + var_t, units, weighting)
    combined_c = Arm(int(sum(c.n for c, _ in kept)), float(w @ mean_c), float(w**2 @ var_c))
    combined_t = Arm(int(sum(t.n for _, t in kept)), float(w @ mean_t), float(w**2 @ var_t))
    moments = lift_moments(combined_c, combined_t, welch=False)

    def interval(estimate: float, std_error: float, df: float) -> tuple[float, float, float]:
        low, high, p = t_interval(estimate, std_error, df, alpha)
        return float(low), float(high), float(p)

    result = build_comparison(
        variant_key, moments, alpha=alpha, interval=interval, test=StatTest.Z_STRATIFIED
    )
    if not warnings:
        return result
    merged = tuple(dict.fromkeys([*(str(w) for w in warnings), *result.warnings]))
    return dataclasses.replace(result, warnings=merged)
