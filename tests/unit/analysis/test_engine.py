"""Report assembly from aggregate rows: SRM first, corrections, warnings, recommendation."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from ensayo.analysis.engine import MIN_UNITS_PER_VARIANT, experiment_report, holdout_report
from ensayo.analysis.model import ExposureRow, MetricRow, ReportRequest
from ensayo.catalog.model import (
    Allocation,
    Experiment,
    Holdout,
    Metric,
    MetricKind,
    Variant,
)
from ensayo.stats import AnalysisMethod, Correction, StatTest

NOW = datetime(2025, 1, 1, tzinfo=UTC)
CONV = Metric("conv", event_name="purchase", kind=MetricKind.CONVERSION)
REV = Metric("rev", event_name="purchase", kind=MetricKind.MEAN)
LATENCY = Metric("latency", event_name="load", kind=MetricKind.MEAN, lower_is_better=True)


def _experiment(*keys: str, allocation: Allocation = Allocation.FIXED) -> Experiment:
    return Experiment(
        "exp",
        tuple(Variant(k) for k in keys),
        metrics=("conv", "rev"),
        allocation=allocation,
    )


def _conversion_row(key: str, n: int, conversions: int, stratum: int = 0) -> MetricRow:
    return MetricRow(key, stratum, n, conversions, conversions, events=conversions)


def _mean_row(key: str, values: np.ndarray, stratum: int = 0) -> MetricRow:
    return MetricRow(
        key,
        stratum,
        int(values.size),
        float(values.sum()),
        float(values @ values),
        events=int(values.size),
    )


def _report(experiment, metrics, exposures, rows, **options):
    return experiment_report(
        experiment, metrics, exposures, rows, ReportRequest("exp", **options), NOW
    )


class TestExperimentReport:
    def test_frequentist_conversion_matches_scipy_welch(self) -> None:
        """The lift's p-value equals scipy.stats.ttest_ind(equal_var=False) on 0/1 data."""
        exposures = [ExposureRow("control", 0, 1000), ExposureRow("b", 0, 1000)]
        rows = {"conv": [_conversion_row("control", 1000, 100), _conversion_row("b", 1000, 140)]}
        report = _report(_experiment("control", "b"), [CONV], exposures, rows)
        c = report.metrics[0].comparisons[0].comparison
        control = np.r_[np.ones(100), np.zeros(900)]
        treatment = np.r_[np.ones(140), np.zeros(860)]
        reference = sps.ttest_ind(treatment, control, equal_var=False)
        assert c.p_value == pytest.approx(reference.pvalue, rel=1e-9)
        assert (c.control_mean, c.treatment_mean) == pytest.approx((0.10, 0.14))
        assert report.srm.ok
        assert report.metrics[0].comparisons[0].control_units == 1000

    def test_srm_is_flagged_first_and_blocks_the_recommendation(self) -> None:
        """1,000 vs 800 units on a 50/50 split: chi-square p < 0.001, warning first, no advice."""
        exposures = [ExposureRow("control", 0, 1000), ExposureRow("b", 0, 800)]
        rows = {"conv": [_conversion_row("control", 1000, 100), _conversion_row("b", 800, 200)]}
        report = _report(_experiment("control", "b"), [CONV], exposures, rows)
        reference = sps.chisquare([1000, 800], [900, 900])
        assert report.srm.p_value == pytest.approx(reference.pvalue)
        assert not report.srm.ok
        assert report.warnings[0].startswith("Sample ratio mismatch")
        assert report.recommendation == ""

    def test_correction_spans_every_metric_and_variant(self) -> None:
        """Holm over all comparisons of the report equals statsmodels' multipletests."""
        keys = ("control", "b", "c")
        exposures = [ExposureRow(k, 0, 1000) for k in keys]
        rows = {
            "conv": [
                _conversion_row("control", 1000, 100),
                _conversion_row("b", 1000, 125),
                _conversion_row("c", 1000, 112),
            ],
            "rev": [
                MetricRow("control", 0, 1000, 2000.0, 9000.0, events=100),
                MetricRow("b", 0, 1000, 2150.0, 9800.0, events=120),
                MetricRow("c", 0, 1000, 1990.0, 8800.0, events=110),
            ],
        }
        report = _report(
            _experiment(*keys), [CONV, REV], exposures, rows, correction=Correction.HOLM
        )
        flat = [vc.comparison for m in report.metrics for vc in m.comparisons]
        raw = [c.p_value for c in flat]
        expected = multipletests(raw, alpha=0.05, method="holm")[1]
        assert [c.adjusted_p_value for c in flat] == pytest.approx(list(expected))
        assert [c.significant for c in flat] == [bool(p < 0.05) for p in expected]

    def test_recommends_the_significant_winner_when_nothing_is_harmed(self) -> None:
        """A clear, significant win on the primary metric yields a 'Ship' recommendation."""
        exposures = [ExposureRow("control", 0, 5000), ExposureRow("b", 0, 5000)]
        rows = {"conv": [_conversion_row("control", 5000, 500), _conversion_row("b", 5000, 650)]}
        report = _report(_experiment("control", "b"), [CONV], exposures, rows)
        assert report.recommendation.startswith("Ship 'b'")

    def test_no_recommendation_without_significance(self) -> None:
        """An inconclusive test gets no recommendation."""
        exposures = [ExposureRow("control", 0, 5000), ExposureRow("b", 0, 5000)]
        rows = {"conv": [_conversion_row("control", 5000, 500), _conversion_row("b", 5000, 510)]}
        report = _report(_experiment("control", "b"), [CONV], exposures, rows)
        assert report.recommendation == ""

    def test_a_harmed_guardrail_turns_the_advice_into_a_trade_off(self) -> None:
        """Winning the primary while significantly losing another metric is called out."""
        exposures = [ExposureRow("control", 0, 5000), ExposureRow("b", 0, 5000)]
        rows = {
            "conv": [_conversion_row("control", 5000, 500), _conversion_row("b", 5000, 650)],
            "latency": [
                MetricRow("control", 0, 5000, 5000.0, 10000.0, events=5000),
                MetricRow("b", 0, 5000, 6000.0, 12400.0, events=5000),
            ],
        }
        report = _report(_experiment("control", "b"), [CONV, LATENCY], exposures, rows)
        assert "trade-off" in report.recommendation
        assert "'latency'" in report.recommendation

    def test_plain_language_warnings(self) -> None:
        """Too few units, a metric without events and a zero control mean are each explained."""
        exposures = [ExposureRow("control", 0, 40), ExposureRow("b", 0, 40)]
        rows = {
            "conv": [_conversion_row("control", 40, 0), _conversion_row("b", 40, 0)],
        }
        report = _report(_experiment("control", "b"), [CONV], exposures, rows)
        text = "\n".join(report.warnings)
        assert f"only 40 units (fewer than {MIN_UNITS_PER_VARIANT})" in text
        assert "no 'purchase' events after exposure" in text
        assert "control mean is 0" in text
        c = report.metrics[0].comparisons[0].comparison
        assert c.relative_lift is None
        assert report.recommendation == ""

    def test_no_exposures_is_explained(self) -> None:
        """An experiment nobody was exposed to yet says so instead of failing."""
        report = _report(_experiment("control", "b"), [CONV], [], {"conv": []})
        assert report.variants[0].units == 0
        assert any("No exposures" in w for w in report.warnings)

    def test_bayesian_fields(self) -> None:
        """Bayesian results carry chance to win and expected loss, and no p-value."""
        exposures = [ExposureRow("control", 0, 1000), ExposureRow("b", 0, 1000)]
        rows = {"conv": [_conversion_row("control", 1000, 100), _conversion_row("b", 1000, 140)]}
        report = _report(
            _experiment("control", "b"),
            [CONV],
            exposures,
            rows,
            method=AnalysisMethod.BAYESIAN,
        )
        c = report.metrics[0].comparisons[0].comparison
        assert c.p_value is None
        assert c.chance_to_win is not None and c.chance_to_win > 0.99
        assert c.expected_loss is not None

    def test_unknown_variants_are_left_out_with_a_warning(self) -> None:
        """Units of a variant the definition no longer has are reported, not analysed."""
        exposures = [
            ExposureRow("control", 0, 500),
            ExposureRow("b", 0, 500),
            ExposureRow("gone", 0, 7),
        ]
        rows = {"conv": [_conversion_row("control", 500, 50), _conversion_row("b", 500, 50)]}
        report = _report(_experiment("control", "b"), [CONV], exposures, rows)
        assert [v.units for v in report.variants] == [500, 500]
        assert any(w.startswith("7 exposed units") for w in report.warnings)


class TestBanditReport:
    def test_changing_weights_are_stratified_by_period(self) -> None:
        """Two allocation periods: SRM per period on logged probabilities, stratified z test."""
        exposures = [
            ExposureRow("control", 1, 500, 0.5),
            ExposureRow("b", 1, 500, 0.5),
            ExposureRow("control", 2, 200, 0.2),
            ExposureRow("b", 2, 800, 0.8),
        ]
        rows = {
            "conv": [
                _conversion_row("control", 500, 50, 1),
                _conversion_row("b", 500, 60, 1),
                _conversion_row("control", 200, 20, 2),
                _conversion_row("b", 800, 96, 2),
            ]
        }
        experiment = _experiment("control", "b", allocation=Allocation.BANDIT)
        report = _report(experiment, [CONV], exposures, rows)
        assert report.srm.ok
        assert report.srm.degrees_of_freedom == 2
        assert "stratified by allocation period (2 periods)" in report.weighting
        assert any("weights changed" in w for w in report.warnings)
        c = report.metrics[0].comparisons[0].comparison
        assert c.test is StatTest.Z_STRATIFIED
        # Expected share: unit-weighted mean of the periods' probabilities.
        assert report.variants[1].expected_share == pytest.approx((1000 * 0.5 + 1000 * 0.8) / 2000)

    def test_pooling_would_be_biased_where_stratifying_is_not(self) -> None:
        """Simpson's paradox: equal rates within periods give a zero stratified lift."""
        exposures = [
            ExposureRow("control", 1, 900, 0.9),
            ExposureRow("b", 1, 100, 0.1),
            ExposureRow("control", 2, 100, 0.1),
            ExposureRow("b", 2, 900, 0.9),
        ]
        rows = {
            "conv": [
                _conversion_row("control", 900, 90, 1),
                _conversion_row("b", 100, 10, 1),
                _conversion_row("control", 100, 30, 2),
                _conversion_row("b", 900, 270, 2),
            ]
        }
        experiment = _experiment("control", "b", allocation=Allocation.BANDIT)
        c = _report(experiment, [CONV], exposures, rows).metrics[0].comparisons[0].comparison
        assert c.absolute_lift == pytest.approx(0.0, abs=1e-12)


class TestHoldoutReport:
    def test_holdout_is_the_control_and_srm_uses_the_fraction(self) -> None:
        """Groups holdout/exposed, one comparison 'exposed', SRM against the fraction."""
        groups = [ExposureRow("holdout", 0, 100), ExposureRow("exposed", 0, 900)]
        rows = {
            "rev": [
                _mean_row("holdout", np.full(100, 2.0) + np.arange(100) % 2),
                _mean_row("exposed", np.full(900, 2.5) + np.arange(900) % 2),
            ]
        }
        report = holdout_report(Holdout("global", fraction=0.1), [REV], groups, rows, 0.05)
        assert [g.key for g in report.groups] == ["holdout", "exposed"]
        assert report.srm.ok
        comparison = report.metrics[0].comparisons[0]
        assert comparison.comparison.variant_key == "exposed"
        assert (comparison.control_units, comparison.treatment_units) == (100, 900)
        assert comparison.comparison.absolute_lift == pytest.approx(0.5)
