"""CUPED variance reduction (Deng, Xu, Kohavi & Walker 2013) from sufficient statistics.

Each unit's outcome ``y`` is replaced by ``y - theta·(x - x̄)``, where ``x`` is its pre-exposure
covariate, ``x̄`` the covariate's mean over all variants, and ``theta`` one slope pooled within
variants. The adjusted statistics then go through the ordinary tests (Welch, Bayesian, sequential).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ensayo.errors import InvalidArgument
from ensayo.stats.model import CupedStats, SampleStats, StatWarning

__all__ = ["CupedAdjustment", "cuped_adjust", "cuped_theta", "variance_reduction"]

# Within-variant covariate spread below this share of its raw second moment counts as none:
# a constant covariate leaves only rounding noise, and dividing by it would explode theta.
_CONSTANT_COVARIATE = 1e-10


@dataclass(frozen=True, slots=True)
class CupedAdjustment:
    """CUPED applied to every variant of one metric.

    ``adjusted[i]`` holds the statistics of ``y - theta·(x - covariate_mean)`` for variant
    ``i``; with no usable covariate ``theta`` is ``None``, ``adjusted`` equals ``unadjusted``
    and ``warnings`` says why.
    """

    theta: float | None
    covariate_mean: float | None
    adjusted: tuple[SampleStats, ...]
    unadjusted: tuple[SampleStats, ...]
    warnings: tuple[str, ...] = ()


def cuped_theta(stats: Sequence[CupedStats]) -> float | None:
    """Regression slope of outcome on covariate, pooled within variants.

    ``theta = Σ_g S_xy,g / Σ_g S_xx,g`` with ``S`` the centred sums of each variant ``g``: the
    covariate's coefficient in the OLS regression ``y ~ variant dummies + x`` (ANCOVA). Pooling
    within variants keeps the treatment effect out of the slope; gbstats pools the raw sums
    instead, which differs only by that effect. ``None`` when the covariate does not vary
    within any variant.
    """
    s_xx = s_xy = raw_xx = 0.0
    for group in stats:
        if group.n == 0:
            continue
        s_xx += max(group.x_sum_squares - group.x_sum * group.x_sum / group.n, 0.0)
        s_xy += group.xy_cross - group.x_sum * group.y_sum / group.n
        raw_xx += group.x_sum_squares
    if raw_xx <= 0 or s_xx <= _CONSTANT_COVARIATE * raw_xx:
        return None
    return s_xy / s_xx


def cuped_adjust(stats: Sequence[CupedStats]) -> CupedAdjustment:
    """Adjust every variant's outcome statistics with one pooled ``theta``.

    For ``z = y - theta·(x - x̄)``: ``Σz = Σy - theta·(Σx - n·x̄)`` and
    ``Σz² = Σy² - 2·theta·(Σxy - x̄·Σy) + theta²·(Σx² - 2·x̄·Σx + n·x̄²)``. Centring on the
    pooled ``x̄`` keeps each adjusted mean on the outcome's scale, so relative lifts stay
    meaningful. Raises ``InvalidArgument`` when ``stats`` is empty.
    """
    if not stats:
        raise InvalidArgument("stats", "must hold at least one variant")
    unadjusted = tuple(group.outcome for group in stats)
    theta = cuped_theta(stats)
    total_n = sum(group.n for group in stats)
    if theta is None or total_n == 0:
        return CupedAdjustment(
            None, None, unadjusted, unadjusted, (str(StatWarning.COVARIATE_CONSTANT),)
        )
    x_bar = sum(group.x_sum for group in stats) / total_n
    adjusted = [_adjusted(group, theta, x_bar) for group in stats]
    if any(item is None for item in adjusted):
        return CupedAdjustment(None, None, unadjusted, unadjusted, (str(StatWarning.NOT_FINITE),))
    return CupedAdjustment(
        theta, x_bar, tuple(item for item in adjusted if item is not None), unadjusted
    )


def _adjusted(group: CupedStats, theta: float, x_bar: float) -> SampleStats | None:
    """Return the adjusted statistics, or ``None`` when they overflow floating point."""
    centred_x_sum = group.x_sum - group.n * x_bar
    centred_x_squares = group.x_sum_squares - 2 * x_bar * group.x_sum + group.n * x_bar * x_bar
    centred_cross = group.xy_cross - x_bar * group.y_sum
    squares = (
        group.y_sum_squares
        - 2 * theta * centred_cross
        + theta * theta * max(centred_x_squares, 0.0)
    )
    total = group.y_sum - theta * centred_x_sum
    if not (math.isfinite(total) and math.isfinite(squares)):
        return None
    return SampleStats(group.n, total, max(squares, 0.0))


def variance_reduction(
    control: SampleStats,
    treatment: SampleStats,
    control_adjusted: SampleStats,
    treatment_adjusted: SampleStats,
) -> float | None:
    """Share of the lift estimator's variance that CUPED removed.

    ``1 - (s²_adj,c/n_c + s²_adj,t/n_t) / (s²_c/n_c + s²_t/n_t)``: 0.3 means the interval is
    ``√0.7`` as wide as without CUPED. Negative if the adjustment added variance (a covariate
    that does not predict the outcome). ``None`` below two units in an arm or with no variance.
    """
    parts = []
    for stats in (control, treatment, control_adjusted, treatment_adjusted):
        variance = stats.variance
        if variance is None:
            return None
        parts.append(variance / stats.n)
    raw = parts[0] + parts[1]
    if raw <= 0:
        return None
    return 1.0 - (parts[2] + parts[3]) / raw
