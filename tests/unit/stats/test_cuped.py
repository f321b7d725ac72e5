"""CUPED against an OLS regression on the raw data (statsmodels) and its degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from ensayo.stats import (
    CupedStats,
    SampleStats,
    StatWarning,
    compare_variants,
    cuped_adjust,
    cuped_theta,
    variance_reduction,
)


def _experiment(seed: int, n: int = 500, arms: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 3.0, size=(arms, n))
    y = 1.0 + 0.7 * x + rng.normal(0.0, 2.0, size=(arms, n))
    y += np.array([0.0, 0.4, -0.2][:arms])[:, None]
    return x, y


class TestCupedAgainstOls:
    def test_theta_is_the_ancova_slope(self):
        """Pooled theta equals the covariate coefficient of OLS y ~ variant dummies + x."""
        x, y = _experiment(1)
        stats = [CupedStats.from_values(y[i], x[i]) for i in range(3)]
        dummies = np.zeros((x.size, 2))
        dummies[500:1000, 0] = 1
        dummies[1000:, 1] = 1
        ols = sm.OLS(y.ravel(), sm.add_constant(np.column_stack([dummies, x.ravel()]))).fit()
        assert cuped_theta(stats) == pytest.approx(ols.params[3], rel=1e-9)

    def test_adjusted_lifts_equal_ols_treatment_coefficients(self):
        """CUPED absolute lifts equal OLS's variant coefficients; SEs within 3% of OLS's."""
        x, y = _experiment(2)
        stats = [CupedStats.from_values(y[i], x[i]) for i in range(3)]
        dummies = np.zeros((x.size, 2))
        dummies[500:1000, 0] = 1
        dummies[1000:, 1] = 1
        ols = sm.OLS(y.ravel(), sm.add_constant(np.column_stack([dummies, x.ravel()]))).fit()
        comparisons = compare_variants(stats, ["c", "a", "b"], cuped=True)
        for index, comparison in enumerate(comparisons, start=1):
            se = (comparison.ci_high - comparison.ci_low) / (2 * 1.96)
            assert comparison.absolute_lift == pytest.approx(ols.params[index], rel=1e-9)
            assert se == pytest.approx(ols.bse[index], rel=0.03)

    def test_adjusted_stats_equal_stats_of_adjusted_values(self):
        """Adjusted sums equal SampleStats of y - theta·(x - pooled mean of x) per unit."""
        x, y = _experiment(3, n=200, arms=2)
        stats = [CupedStats.from_values(y[i], x[i]) for i in range(2)]
        adjustment = cuped_adjust(stats)
        for i in range(2):
            z = y[i] - adjustment.theta * (x[i] - x.mean())
            expected = SampleStats.from_values(z)
            assert adjustment.adjusted[i].sum == pytest.approx(expected.sum, rel=1e-9)
            assert adjustment.adjusted[i].sum_squares == pytest.approx(
                expected.sum_squares, rel=1e-9
            )

    def test_variance_reduction_is_squared_correlation(self):
        """Variance reduction is close to the within-arm squared correlation of y and x."""
        x, y = _experiment(4, n=5000, arms=2)
        stats = [CupedStats.from_values(y[i], x[i]) for i in range(2)]
        adjustment = cuped_adjust(stats)
        reduction = variance_reduction(*adjustment.unadjusted, *adjustment.adjusted)
        rho2 = np.mean([np.corrcoef(y[i], x[i])[0, 1] ** 2 for i in range(2)])
        assert reduction == pytest.approx(rho2, abs=0.01)
        comparison = compare_variants(stats, ["c", "t"], cuped=True)[0]
        assert comparison.variance_reduction == pytest.approx(reduction)


class TestCupedDegenerate:
    def test_constant_covariate_skips_adjustment(self):
        """A covariate constant within variants leaves the data unadjusted, with a warning."""
        rng = np.random.default_rng(5)
        y = rng.normal(size=(2, 100))
        stats = [CupedStats.from_values(y[i], np.full(100, 3.0 + i)) for i in range(2)]
        adjustment = cuped_adjust(stats)
        assert adjustment.theta is None
        assert adjustment.adjusted == adjustment.unadjusted
        comparison = compare_variants(stats, ["c", "t"], cuped=True)[0]
        assert comparison.variance_reduction == 0.0
        assert StatWarning.COVARIATE_CONSTANT in comparison.warnings

    def test_all_zero_covariate_skips_adjustment(self):
        """New units with no pre-exposure events (x = 0) give theta None, not a division by 0."""
        stats = [CupedStats(50, 10, 10, 0, 0, 0), CupedStats(50, 12, 12, 0, 0, 0)]
        assert cuped_theta(stats) is None

    def test_without_cuped_flag_reports_zero_reduction(self):
        """CupedStats analysed without CUPED use the raw outcome and report 0 reduction."""
        x, y = _experiment(6, n=300, arms=2)
        stats = [CupedStats.from_values(y[i], x[i]) for i in range(2)]
        plain = compare_variants(stats, ["c", "t"], cuped=False)[0]
        assert plain.absolute_lift == pytest.approx(y[1].mean() - y[0].mean())
        assert plain.variance_reduction == 0.0
