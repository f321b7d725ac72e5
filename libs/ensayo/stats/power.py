"""Sample-size planning: units per variant to detect a relative effect with a two-sided test.

Normal approximation, the same that ``statsmodels.stats.power.NormalIndPower`` solves; with
more than two variants the alpha is split over the treatment-versus-control comparisons
(Bonferroni), which is conservative whatever correction the report later applies.
"""

from __future__ import annotations

import math

from scipy import stats as sps

from ensayo.errors import InvalidArgument
from ensayo.stats.model import MetricKind, SampleSizePlan

__all__ = ["sample_size"]

_MAX_UNITS = float(2**63 - 1)
"""The most units a plan may ask for (the response's int64 fields)."""


def _check_open_unit(field: str, value: float) -> None:
    if not 0.0 < value < 1.0:  # also rejects NaN
        raise InvalidArgument(field, "must be in (0, 1)")


def _finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field, "must be finite")


def sample_size(
    metric_kind: MetricKind,
    *,
    baseline_mean: float,
    minimum_detectable_effect: float,
    baseline_variance: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
) -> SampleSizePlan:
    """Units per variant so a two-sided test at ``alpha`` has ``power`` against the MDE.

    ``n = (z_{1-alpha'/2} + z_{power})² · (s²_c + s²_t) / delta²`` per variant, with
    ``delta = baseline_mean · minimum_detectable_effect`` (the MDE is relative: 0.05 = +5 %)
    and ``alpha' = alpha / (variants - 1)`` (Bonferroni; ``alpha`` itself for two variants).
    Conversion metrics: ``baseline_mean`` is the rate ``p`` in (0, 1), ``s²_c = p(1 - p)``
    and ``s²_t = p'(1 - p')`` with ``p' = p(1 + mde)`` (unpooled; ``baseline_variance`` is
    ignored). Mean and ratio metrics: ``s²_c = s²_t = baseline_variance``, the per-unit
    variance (for a ratio, that of the linearised unit value ``(N - R·D)/μ_D``). The result
    is rounded up; ``total_units = variants · units_per_variant``. The second tail's
    negligible power is ignored, so this is at most one unit above ``NormalIndPower``.

    Raises ``InvalidArgument`` naming the field when ``alpha`` or ``power`` is not in (0, 1),
    ``variants < 2``, the MDE is 0 or moves a rate outside [0, 1], the baseline mean is 0 or
    not a rate for conversions, or a variance is missing or not positive.
    """
    _check_open_unit("alpha", alpha)
    _check_open_unit("power", power)
    if isinstance(variants, bool) or variants < 2:
        raise InvalidArgument("variants", "must be an integer of at least 2")
    _finite("baseline_mean", baseline_mean)
    _finite("minimum_detectable_effect", minimum_detectable_effect)
    if minimum_detectable_effect == 0:
        raise InvalidArgument("minimum_detectable_effect", "must not be 0")
    if metric_kind is MetricKind.CONVERSION:
        _check_open_unit("baseline_mean", baseline_mean)
        treated = baseline_mean * (1.0 + minimum_detectable_effect)
        if not 0.0 <= treated <= 1.0:
            raise InvalidArgument(
                "minimum_detectable_effect", "moves the conversion rate outside [0, 1]"
            )
        spread = baseline_mean * (1.0 - baseline_mean) + treated * (1.0 - treated)
    else:
        if baseline_mean == 0:
            raise InvalidArgument("baseline_mean", "must not be 0 for a relative effect")
        if baseline_variance is None or not (
            math.isfinite(baseline_variance) and baseline_variance > 0
        ):
            raise InvalidArgument("baseline_variance", "must be finite and positive")
        spread = 2.0 * baseline_variance
    delta = baseline_mean * minimum_detectable_effect
    alpha_each = alpha / (variants - 1)
    z_sum = float(sps.norm.ppf(1.0 - alpha_each / 2.0) + sps.norm.ppf(power))
    squared = delta * delta
    needed = z_sum * z_sum * spread / squared if squared > 0 else math.inf
    if not needed * variants < _MAX_UNITS:  # an effect so small the plan is meaningless
        raise InvalidArgument(
            "minimum_detectable_effect",
            f"too small to plan for: it needs more than {_MAX_UNITS:.3g} units",
        )
    per_variant = math.ceil(needed - 1e-9)
    per_variant = max(per_variant, 2)
    return SampleSizePlan(
        units_per_variant=per_variant,
        total_units=per_variant * variants,
        variants=variants,
        alpha=alpha,
        alpha_per_comparison=alpha_each,
        power=power,
    )
