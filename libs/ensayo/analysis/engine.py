"""Pure report assembly: aggregate rows in, experiment and holdout reports out.

Every number comes from ``ensayo.stats``; this module decides which test applies (pooled or
stratified by allocation period), corrects across the whole report, and words the warnings
and the recommendation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime

from ensayo.analysis.model import (
    ExperimentReport,
    ExposureRow,
    HoldoutReport,
    MetricResult,
    MetricRow,
    ReportRequest,
    VariantComparison,
    VariantSummary,
)
from ensayo.catalog.model import Allocation, Experiment, Holdout, Metric
from ensayo.stats import (
    AnalysisMethod,
    Comparison,
    CupedStats,
    MetricKind,
    RatioStats,
    SampleStats,
    SrmResult,
    Weighting,
    apply_correction,
    compare_variants,
    srm_test,
    stratified_srm_test,
    stratified_test,
)

__all__ = [
    "HOLDOUT_GROUPS",
    "MIN_UNITS_PER_VARIANT",
    "experiment_report",
    "holdout_report",
    "metric_kind",
]

MIN_UNITS_PER_VARIANT = 100
"""Below this many units in a variant the report warns that results are unreliable."""
HOLDOUT_GROUPS = ("holdout", "exposed")
"""A holdout report's groups: the holdout is the control, everyone else the treatment."""

AnyStats = SampleStats | RatioStats | CupedStats


def metric_kind(metric: Metric) -> MetricKind:
    """The statistics' kind of a catalog metric (unset counts as conversion)."""
    return MetricKind(metric.kind.value) if metric.kind is not None else MetricKind.CONVERSION


def _percent(value: float) -> str:
    return f"{value * 100:+.1f} %"


def _stats(kind: MetricKind, rows: Sequence[MetricRow], use_covariate: bool) -> AnyStats:
    n = sum(r.n for r in rows)
    y = sum(r.y_sum for r in rows)
    yy = sum(r.y_sum_squares for r in rows)
    if kind is MetricKind.RATIO:
        return RatioStats(
            n,
            y,
            yy,
            sum(r.d_sum for r in rows),
            sum(r.d_sum_squares for r in rows),
            sum(r.yd_cross for r in rows),
        )
    if use_covariate:
        return CupedStats(
            n,
            y,
            yy,
            sum(r.x_sum for r in rows),
            sum(r.x_sum_squares for r in rows),
            sum(r.xy_cross for r in rows),
        )
    return SampleStats(n, y, yy)


def _by_variant(rows: Sequence[MetricRow], keys: Sequence[str]) -> dict[str, list[MetricRow]]:
    grouped: dict[str, list[MetricRow]] = {k: [] for k in keys}
    for row in rows:
        if row.variant_key in grouped:
            grouped[row.variant_key].append(row)
    return grouped


def _stratified(
    kind_rows: dict[str, list[MetricRow]], keys: Sequence[str], strata: Sequence[int], alpha: float
) -> tuple[Comparison, ...]:
    """Each treatment against control within allocation periods, combined (bandits)."""

    def per_stratum(key: str) -> list[SampleStats]:
        cells: dict[int, SampleStats] = {s: SampleStats() for s in strata}
        for row in kind_rows[key]:
            if row.stratum in cells:  # a period that began after the exposure count was taken
                cells[row.stratum] = cells[row.stratum] + SampleStats(
                    row.n, row.y_sum, row.y_sum_squares
                )
        return [cells[s] for s in strata]

    control = per_stratum(keys[0])
    return tuple(
        stratified_test(
            control,
            per_stratum(key),
            weighting=Weighting.INVERSE_VARIANCE,
            alpha=alpha,
            variant_key=key,
        )
        for key in keys[1:]
    )


def _metric_comparisons(
    metric: Metric,
    rows: Sequence[MetricRow],
    keys: Sequence[str],
    request: ReportRequest,
    strata: Sequence[int],
    notes: list[str],
) -> tuple[tuple[Comparison, ...], dict[str, int]]:
    kind = metric_kind(metric)
    grouped = _by_variant(rows, keys)
    units = {k: sum(r.n for r in grouped[k]) for k in keys}
    if len(strata) > 1 and kind is not MetricKind.RATIO:
        if request.method is not AnalysisMethod.FREQUENTIST:
            notes.append(
                f"{metric.key}: the {request.method.value} method cannot combine allocation "
                "periods; the stratified z test is shown instead"
            )
        if request.cuped:
            notes.append(f"{metric.key}: CUPED is not applied across allocation periods")
        return _stratified(grouped, keys, strata, request.alpha), units
    if len(strata) > 1:
        notes.append(
            f"{metric.key}: ratio metrics are pooled across allocation periods "
            "(not stratified): read them with care while the bandit's weights move"
        )
    use_covariate = request.cuped and bool(metric.covariate_event)
    stats = [_stats(kind, grouped[k], use_covariate) for k in keys]
    comparisons = compare_variants(
        stats,
        keys,
        method=request.method,
        alpha=request.alpha,
        cuped=request.cuped,
        lower_is_better=metric.lower_is_better,
    )
    return comparisons, units


def _result(
    metric: Metric, comparisons: Sequence[Comparison], units: dict[str, int], control: str
) -> MetricResult:
    """A metric's comparisons with the units behind each side."""
    return MetricResult(
        metric.key,
        metric_kind(metric),
        metric.lower_is_better,
        tuple(VariantComparison(c, units[control], units[c.variant_key]) for c in comparisons),
    )


def _expected_shares(
    experiment: Experiment, exposures: Sequence[ExposureRow], strata: Sequence[int], bandit: bool
) -> tuple[list[list[int]], list[list[float]]]:
    """Units and intended shares per stratum, variants in the experiment's order."""
    keys = [v.key for v in experiment.variants]
    index = {k: i for i, k in enumerate(keys)}
    weights = list(experiment.weights) or [1.0 / len(keys)] * len(keys)
    counts = {s: [0] * len(keys) for s in strata}
    logged: dict[int, list[float]] = {s: [0.0] * len(keys) for s in strata}
    for row in exposures:
        if row.variant_key in index:
            counts[row.stratum][index[row.variant_key]] += row.units
            logged[row.stratum][index[row.variant_key]] = max(
                logged[row.stratum][index[row.variant_key]], row.probability
            )
    shares = []
    for s in strata:
        probs = logged[s]
        known = sum(probs)
        if not bandit or known <= 0 or known > 1.0 + 1e-9:
            shares.append(weights)
            continue
        missing = [i for i, p in enumerate(probs) if p <= 0]
        rest = max(1.0 - known, 0.0)
        filled = list(probs)
        for i in missing:  # arms that drew no unit in the period share what is left
            filled[i] = rest / len(missing)
        shares.append(filled)
    return [counts[s] for s in strata], shares


def _improves(comparison: Comparison, lower_is_better: bool) -> bool:
    lift = comparison.absolute_lift
    if lift is None:
        return False
    return lift < 0 if lower_is_better else lift > 0


def _describe(comparison: Comparison, metric_key: str) -> str:
    if comparison.relative_lift is not None:
        text = f"'{metric_key}' moved {_percent(comparison.relative_lift)}"
        if comparison.relative_ci_low is not None and comparison.relative_ci_high is not None:
            text += (
                f" (interval {_percent(comparison.relative_ci_low)} to "
                f"{_percent(comparison.relative_ci_high)})"
            )
    else:
        text = f"'{metric_key}' moved {comparison.absolute_lift:+.4g}"
    if comparison.chance_to_win is not None:
        text += f", chance to win {comparison.chance_to_win:.1%}"
    p = comparison.adjusted_p_value if comparison.adjusted_p_value is not None else None
    p = p if p is not None else comparison.p_value
    if p is not None:
        text += f", p = {p:.3g}"
    return text


def _recommendation(
    metrics: Sequence[MetricResult], srm: SrmResult, variants: Sequence[VariantSummary]
) -> str:
    """Advice only when the evidence supports it; empty otherwise."""
    if not metrics or not srm.ok or any(v.units < MIN_UNITS_PER_VARIANT for v in variants):
        return ""
    primary = metrics[0]
    results = [c.comparison for c in primary.comparisons]
    better = [c for c in results if c.significant and _improves(c, primary.lower_is_better)]
    if better:
        sign = -1.0 if primary.lower_is_better else 1.0
        best = max(better, key=lambda c: sign * (c.absolute_lift or 0.0))
        harmed = [
            m.metric_key
            for m in metrics[1:]
            for vc in m.comparisons
            if vc.comparison.variant_key == best.variant_key
            and vc.comparison.significant
            and not _improves(vc.comparison, m.lower_is_better)
        ]
        if harmed:
            return (
                f"'{best.variant_key}' improves the primary metric: "
                f"{_describe(best, primary.metric_key)}; but it is significantly worse on "
                f"{', '.join(repr(h) for h in harmed)}: weigh that trade-off before shipping."
            )
        return (
            f"Ship '{best.variant_key}': {_describe(best, primary.metric_key)}, and no other "
            "metric is significantly worse."
        )
    if results and all(
        c.significant and not _improves(c, primary.lower_is_better) for c in results
    ):
        return (
            f"Keep the control: every treatment is significantly worse on '{primary.metric_key}'."
        )
    return ""


def _correct(
    metrics: list[tuple[Metric, tuple[Comparison, ...], dict[str, int]]],
    request: ReportRequest,
) -> list[tuple[Metric, tuple[Comparison, ...], dict[str, int]]]:
    """Adjust p-values over every comparison of the report (one family)."""
    flat = [c for _, comparisons, _ in metrics for c in comparisons]
    corrected = list(apply_correction(flat, request.correction, alpha=request.alpha))
    out = []
    for metric, comparisons, units in metrics:
        out.append((metric, tuple(corrected[: len(comparisons)]), units))
        del corrected[: len(comparisons)]
    return out


def _split(
    experiment: Experiment, exposures: Sequence[ExposureRow], bandit: bool
) -> tuple[tuple[VariantSummary, ...], SrmResult, list[int], list[str]]:
    """Units and intended shares per variant, the SRM check, the strata and unit warnings."""
    keys = [v.key for v in experiment.variants]
    warnings: list[str] = []
    unknown = sum(r.units for r in exposures if r.variant_key not in keys)
    if unknown:
        warnings.append(
            f"{unknown} exposed units are in variants the experiment no longer has; "
            "they are left out"
        )
    known = [r for r in exposures if r.variant_key in keys]
    strata = sorted({r.stratum for r in known if r.units > 0}) or [0]
    if not bandit:
        strata = [0]
        known = [dataclasses.replace(r, stratum=0) for r in known]
    counts, shares = _expected_shares(experiment, known, strata, bandit)
    srm = (
        stratified_srm_test(counts, shares) if len(strata) > 1 else srm_test(counts[0], shares[0])
    )
    units = [sum(c[i] for c in counts) for i in range(len(keys))]
    total = sum(units)
    period_totals = [sum(c) for c in counts]
    expected = [
        sum(t * s[i] for t, s in zip(period_totals, shares, strict=True)) / total
        if total
        else shares[0][i]
        for i in range(len(keys))
    ]
    variants = tuple(VariantSummary(k, units[i], float(expected[i])) for i, k in enumerate(keys))
    if srm.p_value is not None and not srm.ok:
        warnings.insert(
            0,
            f"Sample ratio mismatch: units per variant {units} do not match the intended split "
            f"(chi-square p = {srm.p_value:.3g} < 0.001). Assignment or exposure logging is "
            "broken; do not trust the figures below until it is explained.",
        )
    if total == 0:
        warnings.append("No exposures logged for this experiment yet: nothing to analyse.")
    for v in variants:
        if total and v.units < MIN_UNITS_PER_VARIANT:
            warnings.append(
                f"Variant '{v.key}' has only {v.units} units (fewer than "
                f"{MIN_UNITS_PER_VARIANT}): its results are unreliable."
            )
    return variants, srm, strata, warnings


def experiment_report(
    experiment: Experiment,
    metrics: Sequence[Metric],
    exposures: Sequence[ExposureRow],
    metric_rows: Mapping[str, Sequence[MetricRow]],
    request: ReportRequest,
    now: datetime,
) -> ExperimentReport:
    """Assemble the report of CONTRACT.md from SQL aggregates (pure, deterministic).

    ``metric_rows[metric.key]`` holds that metric's rows; ``metrics`` are in report order,
    the primary first. Bandit experiments whose exposures span several allocation periods
    are compared within each period and combined (inverse-variance weights), and their SRM
    check runs per period against the probabilities logged on the exposures.
    """
    keys = [v.key for v in experiment.variants]
    bandit = experiment.allocation is Allocation.BANDIT
    variants, srm, strata, warnings = _split(experiment, exposures, bandit)
    weighting = ""
    if bandit:
        if len(strata) > 1:
            weighting = (
                f"stratified by allocation period ({len(strata)} periods), inverse-variance "
                "weights; SRM checked per period against the logged probabilities"
            )
            warnings.append(
                f"The bandit's weights changed ({len(strata)} allocation periods): each "
                "comparison is made within a period and then combined, so the shifting split "
                "cannot bias it (Simpson's paradox)."
            )
        else:
            weighting = "one allocation period: no stratification needed"
    total = sum(v.units for v in variants)
    notes: list[str] = []
    computed = []
    for metric in metrics:
        rows = metric_rows.get(metric.key, ())
        comparisons, metric_units = _metric_comparisons(
            metric, [r for r in rows if r.variant_key in keys], keys, request, strata, notes
        )
        if total and sum(r.events for r in rows) == 0:
            what = metric.event_name
            notes.append(
                f"Metric '{metric.key}' has no '{what}' events after exposure: its figures are 0."
            )
        computed.append((metric, comparisons, metric_units))
    results = []
    for metric, comparisons, metric_units in _correct(computed, request):
        results.append(_result(metric, comparisons, metric_units, keys[0]))
        for c in comparisons:
            notes.extend(f"{metric.key}, '{c.variant_key}': {w}" for w in c.warnings)
    warnings.extend(str(w) for w in srm.warnings)
    warnings.extend(notes)
    metric_results = tuple(results)
    return ExperimentReport(
        experiment_key=experiment.key,
        method=request.method,
        variants=variants,
        srm=srm,
        metrics=metric_results,
        warnings=tuple(dict.fromkeys(warnings)),
        recommendation=_recommendation(metric_results, srm, variants),
        alpha=request.alpha,
        correction=request.correction,
        weighting=weighting,
        generate_time=now,
    )


def holdout_report(
    holdout: Holdout,
    metrics: Sequence[Metric],
    groups: Sequence[ExposureRow],
    metric_rows: Mapping[str, Sequence[MetricRow]],
    alpha: float,
) -> HoldoutReport:
    """The holdout (control) against everyone else, per metric, with an SRM check.

    Groups are ``holdout`` and ``exposed`` (:data:`HOLDOUT_GROUPS`); the intended split is
    the holdout's fraction.
    """
    keys = list(HOLDOUT_GROUPS)
    units = {k: 0 for k in keys}
    for row in groups:
        if row.variant_key in units:
            units[row.variant_key] += row.units
    fraction = holdout.fraction
    shares = [fraction, 1.0 - fraction]
    srm = (
        srm_test([units[k] for k in keys], shares)
        if sum(shares) > 0
        else SrmResult(None, None, True)
    )
    warnings: list[str] = []
    if srm.p_value is not None and not srm.ok:
        warnings.append(
            f"Sample ratio mismatch: {units['holdout']} of {sum(units.values())} units are in "
            f"the holdout, expected {fraction:.2%} (p = {srm.p_value:.3g} < 0.001)."
        )
    if holdout.targeting:
        warnings.append(
            "The holdout has targeting, but events carry no attributes: membership is by hash "
            "alone, so units outside the targeting may be counted as held out."
        )
    for key in keys:
        if sum(units.values()) and units[key] < MIN_UNITS_PER_VARIANT:
            warnings.append(
                f"Group '{key}' has only {units[key]} units (fewer than "
                f"{MIN_UNITS_PER_VARIANT}): results are unreliable."
            )
    request = ReportRequest(experiment_key=holdout.key, alpha=alpha)
    results = []
    notes: list[str] = []
    for metric in metrics:
        rows = metric_rows.get(metric.key, ())
        comparisons, metric_units = _metric_comparisons(metric, rows, keys, request, [0], notes)
        if sum(units.values()) and sum(r.events for r in rows) == 0:
            notes.append(f"Metric '{metric.key}' has no '{metric.event_name}' events.")
        for c in comparisons:
            notes.extend(f"{metric.key}: {w}" for w in c.warnings)
        results.append(_result(metric, comparisons, metric_units, keys[0]))
    warnings.extend(str(w) for w in srm.warnings)
    warnings.extend(notes)
    return HoldoutReport(
        holdout_key=holdout.key,
        groups=tuple(VariantSummary(k, units[k], shares[i]) for i, k in enumerate(keys)),
        metrics=tuple(results),
        warnings=tuple(dict.fromkeys(warnings)),
        srm=srm,
    )
