"""Degenerate input never crashes or leaks NaN: every method explains what it cannot compute."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensayo.stats import (
    AnalysisMethod,
    Comparison,
    CupedStats,
    RatioStats,
    SampleStats,
    StatWarning,
    compare_variants,
)

METHODS = list(AnalysisMethod)


def _assert_clean(comparison: Comparison) -> None:
    for field in dataclasses.fields(comparison):
        value = getattr(comparison, field.name)
        if isinstance(value, float):
            assert math.isfinite(value), field.name
    if comparison.p_value is not None:
        assert 0.0 <= comparison.p_value <= 1.0
    if comparison.chance_to_win is not None:
        assert 0.0 <= comparison.chance_to_win <= 1.0


CASES = [
    (SampleStats(0, 0, 0), SampleStats(10, 3, 3), StatWarning.NO_CONTROL_UNITS),
    (SampleStats(10, 3, 3), SampleStats(0, 0, 0), StatWarning.NO_TREATMENT_UNITS),
    (SampleStats(1, 1, 1), SampleStats(10, 3, 3), StatWarning.TOO_FEW_UNITS),
    (SampleStats(10, 10, 10), SampleStats(10, 10, 10), StatWarning.ZERO_VARIANCE),
    (SampleStats(10, 0, 0), SampleStats(10, 0, 0), StatWarning.ZERO_VARIANCE),
    (SampleStats(10, 0, 0), SampleStats(10, 3, 3), StatWarning.CONTROL_MEAN_ZERO),
    (RatioStats(5, 0, 0, 0, 0, 0), RatioStats(5, 2, 2, 5, 5, 2), StatWarning.DENOMINATOR_ZERO),
]


class TestDegenerateCases:
    @pytest.mark.parametrize("method", METHODS)
    @pytest.mark.parametrize(("control", "treatment", "warning"), CASES)
    def test_explained_not_crashed(self, method, control, treatment, warning):
        """Each degenerate case gives None figures, no NaN, and the expected warning."""
        (comparison,) = compare_variants([control, treatment], ["c", "t"], method=method)
        _assert_clean(comparison)
        assert warning in comparison.warnings
        assert not comparison.significant or warning == StatWarning.CONTROL_MEAN_ZERO
        if warning == StatWarning.CONTROL_MEAN_ZERO:
            assert comparison.relative_lift is None
            assert comparison.relative_ci_low is None
            assert comparison.relative_ci_high is None
            assert comparison.ci_low is not None
        else:
            assert comparison.ci_low is None

    @pytest.mark.parametrize("method", METHODS)
    def test_empty_cuped_metric(self, method):
        """CUPED on arms without units gives an explained empty comparison."""
        stats = [CupedStats(), CupedStats()]
        (comparison,) = compare_variants(stats, ["c", "t"], method=method, cuped=True)
        _assert_clean(comparison)
        assert StatWarning.NO_CONTROL_UNITS in comparison.warnings


samples = st.lists(
    st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False),
    max_size=25,
)


class TestProperties:
    @settings(max_examples=150, deadline=None)
    @given(samples, samples, st.sampled_from(METHODS), st.sampled_from([0.01, 0.05, 0.2]))
    def test_p_in_unit_interval_and_ci_contains_estimate(self, left, right, method, alpha):
        """For any data: p in [0, 1], no NaN, and each interval contains its point estimate."""
        (comparison,) = compare_variants(
            [SampleStats.from_values(left), SampleStats.from_values(right)],
            ["c", "t"],
            method=method,
            alpha=alpha,
        )
        _assert_clean(comparison)
        if comparison.ci_low is not None:
            slack = 1e-9 * (1 + abs(comparison.absolute_lift))
            assert comparison.ci_low - slack <= comparison.absolute_lift
            assert comparison.absolute_lift <= comparison.ci_high + slack
        if comparison.relative_ci_low is not None:
            slack = 1e-9 * (1 + abs(comparison.relative_lift))
            assert comparison.relative_ci_low - slack <= comparison.relative_lift
            assert comparison.relative_lift <= comparison.relative_ci_high + slack

    @settings(max_examples=60, deadline=None)
    @given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 40), st.integers(0, 40))
    def test_conversion_counts_always_clean(self, n_c, s_c, n_t, s_t):
        """Any conversion counts (successes clipped to n) give clean results for every method."""
        control = SampleStats(n_c, min(s_c, n_c), min(s_c, n_c))
        treatment = SampleStats(n_t, min(s_t, n_t), min(s_t, n_t))
        for method in METHODS:
            (comparison,) = compare_variants([control, treatment], ["c", "t"], method=method)
            _assert_clean(comparison)

    def test_extreme_values_stay_finite(self):
        """Huge but finite values give finite or None fields, never inf."""
        rng = np.random.default_rng(3)
        big = SampleStats.from_values(rng.normal(1e150, 1e149, 50))
        (comparison,) = compare_variants([big, big], ["c", "t"])
        _assert_clean(comparison)
