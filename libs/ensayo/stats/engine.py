"""One metric's comparisons in one call: CUPED when asked, then the chosen method per variant.

This is what the analysis service calls once per metric after aggregating one row of sufficient
statistics per variant in SQL; multiple-comparison correction runs afterwards over the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ensayo.errors import InvalidArgument
from ensayo.stats.bayesian import Prior, bayesian_test
from ensayo.stats.cuped import cuped_adjust, variance_reduction
from ensayo.stats.frequentist import ratio_test, welch_test
from ensayo.stats.model import (
    AnalysisMethod,
    Comparison,
    CupedStats,
    RatioStats,
    SampleStats,
    StatWarning,
)
from ensayo.stats.sequential import DEFAULT_PLANNED_UNITS_PER_ARM, sequential_test

__all__ = ["compare_variants"]

AnyStats = SampleStats | RatioStats | CupedStats


def _homogeneous(stats: Sequence[AnyStats]) -> type[AnyStats]:
    kind = type(stats[0])
    for index, item in enumerate(stats):
        if type(item) is not kind:
            raise InvalidArgument(f"stats[{index}]", "must be of the same kind as stats[0]")
    return kind


def _one(
    control: SampleStats | RatioStats,
    treatment: SampleStats | RatioStats,
    *,
    key: str,
    method: AnalysisMethod,
    alpha: float,
    lower_is_better: bool,
    prior: Prior | None,
    planned_units_per_arm: float,
) -> Comparison:
    if method is AnalysisMethod.BAYESIAN:
        return bayesian_test(
            control,
            treatment,
            alpha=alpha,
            prior=prior,
            lower_is_better=lower_is_better,
            variant_key=key,
        )
    if method is AnalysisMethod.SEQUENTIAL:
        return sequential_test(
            control,
            treatment,
            alpha=alpha,
            planned_units_per_arm=planned_units_per_arm,
            variant_key=key,
        )
    if isinstance(control, RatioStats) and isinstance(treatment, RatioStats):
        return ratio_test(control, treatment, alpha=alpha, variant_key=key)
    if isinstance(control, SampleStats) and isinstance(treatment, SampleStats):
        return welch_test(control, treatment, alpha=alpha, variant_key=key)
    raise InvalidArgument("stats", "must all be of one kind")


def compare_variants(
    stats: Sequence[AnyStats],
    variant_keys: Sequence[str],
    *,
    method: AnalysisMethod = AnalysisMethod.FREQUENTIST,
    alpha: float = 0.05,
    cuped: bool = False,
    lower_is_better: bool = False,
    prior: Prior | None = None,
    planned_units_per_arm: float = DEFAULT_PLANNED_UNITS_PER_ARM,
) -> tuple[Comparison, ...]:
    """Every variant against the control (index 0) for one metric.

    ``stats[i]`` holds variant ``variant_keys[i]``'s statistics, all of one kind:
    ``SampleStats`` (conversion and mean metrics), ``RatioStats`` or ``CupedStats`` (a metric
    with a covariate). ``method`` picks Welch's t (the z delta-method test for ratios), the
    Gaussian Bayesian test or the confidence sequence. With ``cuped`` and ``CupedStats``, one
    ``theta`` pooled over all variants adjusts every arm first and ``variance_reduction``
    reports the share of the lift's variance removed; otherwise ``variance_reduction`` is 0
    (with a warning when CUPED was asked for but cannot apply). ``lower_is_better`` flips
    chance to win and expected loss. Returns one comparison per treatment, in order.

    Raises ``InvalidArgument`` when there are fewer than two variants, the keys do not match
    the statistics, the statistics mix kinds, or a parameter is out of range.
    """
    if len(stats) < 2:
        raise InvalidArgument("stats", "must hold the control and at least one treatment")
    if len(variant_keys) != len(stats):
        raise InvalidArgument("variant_keys", "must name every variant of stats")
    kind = _homogeneous(stats)
    extra: list[str] = []
    reductions: list[float | None] = [0.0] * len(stats)
    arms: list[SampleStats | RatioStats] = []
    if kind is CupedStats:
        groups = [s for s in stats if isinstance(s, CupedStats)]
        if cuped:
            adjustment = cuped_adjust(groups)
            extra.extend(adjustment.warnings)
            arms.extend(adjustment.adjusted)
            if adjustment.theta is not None:
                raw, adj = adjustment.unadjusted, adjustment.adjusted
                reductions = [
                    None if i == 0 else variance_reduction(raw[0], raw[i], adj[0], adj[i])
                    for i in range(len(stats))
                ]
        else:
            arms.extend(group.outcome for group in groups)
    else:
        arms.extend(s for s in stats if isinstance(s, SampleStats | RatioStats))
        if cuped:
            extra.append(
                StatWarning.CUPED_NOT_FOR_RATIO if kind is RatioStats else StatWarning.NO_COVARIATE
            )
    results = []
    for index in range(1, len(arms)):
        comparison = _one(
            arms[0],
            arms[index],
            key=variant_keys[index],
            method=method,
            alpha=alpha,
            lower_is_better=lower_is_better,
            prior=prior,
            planned_units_per_arm=planned_units_per_arm,
        )
        warnings = tuple(dict.fromkeys([*(str(w) for w in extra), *comparison.warnings]))
        results.append(
            dataclasses.replace(
                comparison, variance_reduction=reductions[index], warnings=warnings
            )
        )
    return tuple(results)
