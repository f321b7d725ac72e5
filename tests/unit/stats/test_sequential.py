"""Asymptotic confidence sequences (Waudby-Smith et al. 2021) as GrowthBook implements them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ensayo.errors import InvalidArgument
from ensayo.stats import (
    RatioStats,
    SampleStats,
    StatTest,
    always_valid_p_value,
    confidence_sequence_halfwidth,
    sequential_rho,
    sequential_test,
    welch_test,
)


def _paper_margin(t: float, rho2: float, alpha: float) -> float:
    """Unit-variance two-sided normal-mixture margin, Waudby-Smith et al. 2021 eq. (14)."""
    return math.sqrt(
        2 * (t * rho2 + 1) * math.log(math.sqrt(t * rho2 + 1) / alpha) / (t**2 * rho2)
    )


class TestTuning:
    def test_rho_literal(self):
        """rho for alpha 0.05 tuned at 10,000 observations is 0.028171 (closed form by hand)."""
        assert sequential_rho(0.05, 10_000) == pytest.approx(0.0281712, abs=1e-7)

    def test_halfwidth_is_the_papers_margin(self):
        """Half-width is sigma times the paper's unit-variance margin when se = sigma/√t."""
        rho = sequential_rho(0.05, 10_000)
        for t in (50, 1_000, 10_000, 250_000):
            se = 3.0 / math.sqrt(t)
            expected = 3.0 * _paper_margin(t, rho**2, 0.05)
            assert float(confidence_sequence_halfwidth(se, t, 0.05, rho)) == pytest.approx(
                expected, rel=1e-12
            )

    def test_narrowest_relative_to_fixed_horizon_near_planned_size(self):
        """The ratio of CS width to z width is smallest near the planned size, never below 1."""
        rho = sequential_rho(0.05, 10_000)
        sizes = np.array([100, 1_000, 10_000, 100_000, 1_000_000])
        ratio = confidence_sequence_halfwidth(1 / np.sqrt(sizes), sizes, 0.05, rho) * np.sqrt(
            sizes
        )
        ratio /= 1.959963984540054
        assert np.all(ratio > 1.0)
        assert int(np.argmin(ratio)) == 2

    def test_bad_planned_units_rejected(self):
        """A non-positive planned size raises InvalidArgument naming it."""
        with pytest.raises(InvalidArgument) as caught:
            sequential_test(SampleStats(3, 1, 1), SampleStats(3, 2, 2), planned_units_per_arm=0)
        assert caught.value.field == "planned_units_per_arm"


class TestAlwaysValidPValue:
    def test_p_value_is_smallest_alpha_that_excludes_zero(self):
        """At alpha' = p the sequence's bound touches 0 (same rho): p is the dual of the CS."""
        rho = sequential_rho(0.05, 10_000)
        estimate, se, n = 0.8, 0.25, 4_000
        p = float(always_valid_p_value(estimate, se, n, rho))
        assert 0 < p < 0.05
        assert float(confidence_sequence_halfwidth(se, n, p, rho)) == pytest.approx(estimate)

    def test_huge_statistic_does_not_overflow(self):
        """A z of 1,000 gives p = 0.0 exactly, not a warning or NaN."""
        rho = sequential_rho(0.05, 10_000)
        assert float(always_valid_p_value(1000.0, 1.0, 10_000, rho)) == 0.0

    def test_capped_at_one(self):
        """A zero estimate gives p = 1."""
        assert float(always_valid_p_value(0.0, 1.0, 500, 0.03)) == 1.0


class TestSequentialTest:
    def test_wider_than_welch_and_consistent(self):
        """The CS contains Welch's CI, and significant equals the CS excluding 0."""
        rng = np.random.default_rng(1)
        control = SampleStats.from_values(rng.normal(0.0, 1.0, 3000))
        treatment = SampleStats.from_values(rng.normal(0.12, 1.0, 3000))
        fixed = welch_test(control, treatment)
        sequential = sequential_test(control, treatment)
        assert sequential.test is StatTest.CONFIDENCE_SEQUENCE
        assert sequential.ci_low < fixed.ci_low < fixed.ci_high < sequential.ci_high
        assert sequential.p_value > fixed.p_value
        assert sequential.significant == (sequential.ci_low > 0 or sequential.ci_high < 0)
        assert sequential.relative_ci_low < sequential.relative_lift < sequential.relative_ci_high

    def test_ratio_metrics_supported(self):
        """Ratio statistics get a delta-method CS around the ratio difference."""
        rng = np.random.default_rng(2)
        den = rng.poisson(3, (2, 2000)) + 1
        num = rng.binomial(den, [[0.2], [0.25]]).astype(float)
        result = sequential_test(
            RatioStats.from_values(num[0], den[0]), RatioStats.from_values(num[1], den[1])
        )
        assert result.ci_low < result.absolute_lift < result.ci_high
        assert result.p_value is not None

    def test_mixed_kinds_rejected(self):
        """A ratio treatment against a mean control raises InvalidArgument."""
        with pytest.raises(InvalidArgument):
            sequential_test(SampleStats(3, 1, 1), RatioStats(3, 1, 1, 3, 3, 1))
