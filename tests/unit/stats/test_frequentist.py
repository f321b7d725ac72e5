"""Welch's t-test and the delta-method ratio test against scipy and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from ensayo.errors import InvalidArgument
from ensayo.stats import (
    RatioStats,
    SampleStats,
    SampleStatsArrays,
    StatTest,
    StatWarning,
    ratio_test,
    welch_test,
    welch_test_arrays,
)


class TestWelchAgainstScipy:
    @pytest.mark.parametrize(("seed", "alpha"), [(1, 0.05), (2, 0.1), (3, 0.01)])
    def test_matches_ttest_ind_unequal_variances(self, seed, alpha):
        """p-value and CI equal scipy.stats.ttest_ind(equal_var=False) on the raw data."""
        rng = np.random.default_rng(seed)
        control = rng.normal(10.0, 3.0, 400)
        treatment = rng.normal(10.5, 5.0, 650)
        reference = sps.ttest_ind(treatment, control, equal_var=False)
        ci = reference.confidence_interval(confidence_level=1 - alpha)
        result = welch_test(
            SampleStats.from_values(control),
            SampleStats.from_values(treatment),
            alpha=alpha,
            variant_key="b",
        )
        assert result.variant_key == "b"
        assert result.test is StatTest.WELCH_T
        assert result.p_value == pytest.approx(reference.pvalue, rel=1e-8)
        assert result.ci_low == pytest.approx(ci.low, rel=1e-8)
        assert result.ci_high == pytest.approx(ci.high, rel=1e-8)
        assert result.absolute_lift == pytest.approx(treatment.mean() - control.mean())
        assert result.significant == (reference.pvalue < alpha)
        assert result.chance_to_win is None
        assert result.expected_loss is None
        assert result.variance_reduction == 0.0

    def test_conversions_match_ttest_on_binary_data(self):
        """On 0/1 data the test equals scipy's Welch test on the same zeros and ones."""
        rng = np.random.default_rng(4)
        control = (rng.random(3000) < 0.10).astype(float)
        treatment = (rng.random(3000) < 0.12).astype(float)
        reference = sps.ttest_ind(treatment, control, equal_var=False)
        result = welch_test(
            SampleStats(3000, control.sum(), control.sum()),
            SampleStats(3000, treatment.sum(), treatment.sum()),
        )
        assert result.p_value == pytest.approx(reference.pvalue, rel=1e-8)

    def test_relative_lift_uses_delta_method(self):
        """Relative CI half-width is t·sqrt(v_t/m_c² + m_t²·v_c/m_c⁴) (Kohavi et al. 2020)."""
        control, treatment = SampleStats(500, 5000.0, 260000.0), SampleStats(480, 5040.0, 275000.0)
        result = welch_test(control, treatment)
        m_c, m_t = control.mean, treatment.mean
        v_c, v_t = control.variance / 500, treatment.variance / 480
        df = (v_c + v_t) ** 2 / (v_c**2 / 499 + v_t**2 / 479)
        half = sps.t.ppf(0.975, df) * math.sqrt(v_t / m_c**2 + m_t**2 * v_c / m_c**4)
        assert result.relative_lift == pytest.approx(m_t / m_c - 1)
        assert result.relative_ci_low == pytest.approx(result.relative_lift - half)
        assert result.relative_ci_high == pytest.approx(result.relative_lift + half)

    def test_a_negative_control_mean_keeps_the_sign_of_the_change(self):
        """Profit from -10 to -5 is a rise: scipy's t is positive, and so is the relative
        lift, +50% of |control| (it was -50%, and the report advised shipping a 'drop')."""
        rng = np.random.default_rng(7)
        control, treatment = rng.normal(-10.0, 2.0, 400), rng.normal(-5.0, 2.0, 400)
        reference = sps.ttest_ind(treatment, control, equal_var=False)
        result = welch_test(SampleStats.from_values(control), SampleStats.from_values(treatment))
        assert reference.statistic > 0
        assert result.relative_lift == pytest.approx(
            (treatment.mean() - control.mean()) / abs(control.mean())
        )
        assert result.relative_lift > 0
        assert result.relative_ci_low < result.relative_lift < result.relative_ci_high

    def test_relative_interval_covers_true_lift(self):
        """Across 1,000 seeded replicates the 95% relative CI covers the true +5% lift 93-97%."""
        rng = np.random.default_rng(5)
        control = rng.lognormal(1.0, 0.8, size=(1000, 600))
        treatment = rng.lognormal(1.0, 0.8, size=(1000, 600)) * 1.05
        hits = 0
        for c, t in zip(control, treatment, strict=True):
            result = welch_test(SampleStats.from_values(c), SampleStats.from_values(t))
            hits += result.relative_ci_low <= 0.05 <= result.relative_ci_high
        assert 930 <= hits <= 970

    def test_invalid_alpha_rejected(self):
        """alpha outside (0, 1) raises InvalidArgument on field alpha."""
        with pytest.raises(InvalidArgument) as caught:
            welch_test(SampleStats(2, 1, 1), SampleStats(2, 1, 1), alpha=1.0)
        assert caught.value.field == "alpha"


class TestWelchArrays:
    def test_vectorised_equals_scalar(self):
        """welch_test_arrays gives the same p-values and CIs as welch_test entry by entry."""
        rng = np.random.default_rng(6)
        n = rng.integers(2, 200, size=(2, 50))
        sums = rng.binomial(n, 0.3).astype(float)
        arrays = welch_test_arrays(
            SampleStatsArrays.of(n[0], sums[0], sums[0]),
            SampleStatsArrays.of(n[1], sums[1], sums[1]),
        )
        for i in range(50):
            scalar = welch_test(
                SampleStats(int(n[0, i]), sums[0, i], sums[0, i]),
                SampleStats(int(n[1, i]), sums[1, i], sums[1, i]),
            )
            if scalar.p_value is None:
                assert np.isnan(arrays.p_value[i])
            else:
                assert arrays.p_value[i] == pytest.approx(scalar.p_value, rel=1e-9)
                assert arrays.ci_low[i] == pytest.approx(scalar.ci_low, rel=1e-9)


class TestRatioTest:
    def test_constant_denominator_is_a_z_test_of_means(self):
        """With every denominator 1 the ratio test is the z test on Welch's statistic (scipy)."""
        rng = np.random.default_rng(7)
        control, treatment = rng.normal(2.0, 1.0, 900), rng.normal(2.1, 1.5, 1100)
        reference = sps.ttest_ind(treatment, control, equal_var=False)
        result = ratio_test(
            RatioStats.from_values(control, np.ones(900)),
            RatioStats.from_values(treatment, np.ones(1100)),
        )
        assert result.test is StatTest.Z_DELTA_METHOD
        assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(reference.statistic)))
        se = (result.ci_high - result.ci_low) / (2 * sps.norm.ppf(0.975))
        assert se == pytest.approx(
            math.sqrt(control.var(ddof=1) / 900 + treatment.var(ddof=1) / 1100)
        )

    def test_delta_standard_error_matches_simulation(self):
        """Delta-method SE of a ratio is within 6% of the SD of ratios over 2,000 replicates."""
        rng = np.random.default_rng(8)
        den = rng.poisson(4.0, size=(2000, 600)) + 1
        num = rng.binomial(den, 0.25).astype(float)
        ratios = num.sum(axis=1) / den.sum(axis=1)
        predicted = [
            math.sqrt(RatioStats.from_values(num[i], den[i]).ratio_variance) for i in range(200)
        ]
        assert np.mean(predicted) == pytest.approx(np.std(ratios, ddof=1), rel=0.06)

    def test_zero_denominator_is_explained(self):
        """A control whose denominator sums to 0 gives None figures and a warning."""
        result = ratio_test(RatioStats(5, 0, 0, 0, 0, 0), RatioStats(5, 3, 3, 5, 5, 3))
        assert result.absolute_lift is None
        assert result.p_value is None
        assert StatWarning.DENOMINATOR_ZERO in result.warnings
