"""Sufficient statistics: merging with ``+``, moments, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensayo.errors import InvalidArgument
from ensayo.stats import CupedStats, RatioStats, SampleStats, SampleStatsArrays

values = st.lists(
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False),
    max_size=30,
)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


class TestSampleStats:
    def test_moments_match_numpy(self):
        """Mean and unbiased variance equal numpy's mean and var(ddof=1)."""
        data = np.random.default_rng(1).normal(3.0, 2.0, 500)
        stats = SampleStats.from_values(data)
        assert stats.n == 500
        assert stats.mean == pytest.approx(np.mean(data), rel=1e-12)
        assert stats.variance == pytest.approx(np.var(data, ddof=1), rel=1e-9)

    def test_degenerate_counts_give_none(self):
        """No unit leaves the mean None; one unit leaves the variance None."""
        assert SampleStats().mean is None
        assert SampleStats().variance is None
        one = SampleStats(1, 4.0, 16.0)
        assert one.mean == 4.0
        assert one.variance is None

    def test_rounding_never_gives_negative_variance(self):
        """A constant sample whose sums round badly still has variance 0, not negative."""
        stats = SampleStats(3, 0.3, 0.3**2 / 3 - 1e-15)
        assert stats.variance == 0.0

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"n": -1}, "n"),
            ({"n": 1.5}, "n"),
            ({"n": True}, "n"),
            ({"n": 2, "sum": math.nan}, "sum"),
            ({"n": 2, "sum_squares": -1.0}, "sum_squares"),
            ({"n": 2, "sum_squares": math.inf}, "sum_squares"),
        ],
    )
    def test_invalid_fields_are_rejected(self, kwargs, field):
        """Negative, fractional or non-finite statistics raise InvalidArgument naming the field."""
        with pytest.raises(InvalidArgument) as caught:
            SampleStats(**kwargs)
        assert caught.value.field == field

    @settings(max_examples=60, deadline=None)
    @given(values, values)
    def test_merge_equals_concatenation(self, left, right):
        """Stats of two disjoint samples added with + equal the stats of their concatenation."""
        merged = SampleStats.from_values(left) + SampleStats.from_values(right)
        whole = SampleStats.from_values(left + right)
        assert merged.n == whole.n
        assert _close(merged.sum, whole.sum)
        assert _close(merged.sum_squares, whole.sum_squares)


class TestRatioStats:
    def test_delta_variance_matches_linearisation(self):
        """Ratio variance equals var(N - R·D)/(n·mean(D)²) computed on the raw units."""
        rng = np.random.default_rng(2)
        den = rng.poisson(3.0, 800) + 1.0
        num = rng.binomial(den.astype(int), 0.3).astype(float)
        stats = RatioStats.from_values(num, den)
        ratio = num.sum() / den.sum()
        linear = num - ratio * den
        expected = np.var(linear, ddof=1) / (den.size * den.mean() ** 2)
        assert stats.ratio == pytest.approx(ratio)
        assert stats.ratio_variance == pytest.approx(expected, rel=1e-9)

    def test_zero_denominator_gives_none(self):
        """A denominator summing to 0 leaves the ratio and its variance None."""
        stats = RatioStats(3, 1.0, 1.0, 0.0, 0.0, 0.0)
        assert stats.ratio is None
        assert stats.ratio_variance is None

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=20))
    def test_merge_equals_concatenation(self, pairs):
        """Ratio stats merged with + equal the stats of all units together."""
        half = len(pairs) // 2
        num = [float(a) for a, _ in pairs]
        den = [float(b) for _, b in pairs]
        merged = RatioStats.from_values(num[:half], den[:half]) + RatioStats.from_values(
            num[half:], den[half:]
        )
        assert merged == RatioStats.from_values(num, den)

    def test_mismatched_lengths_rejected(self):
        """Numerator and denominator arrays of different lengths raise InvalidArgument."""
        with pytest.raises(InvalidArgument):
            RatioStats.from_values([1.0, 2.0], [1.0])


class TestCupedStats:
    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.tuples(st.integers(-20, 20), st.integers(-20, 20)), max_size=20))
    def test_merge_equals_concatenation(self, pairs):
        """CUPED stats merged with + equal the stats of all units together."""
        y = [float(a) for a, _ in pairs]
        x = [float(b) for _, b in pairs]
        half = len(pairs) // 2
        merged = CupedStats.from_values(y[:half], x[:half]) + CupedStats.from_values(
            y[half:], x[half:]
        )
        assert merged == CupedStats.from_values(y, x)

    def test_covariance_matches_numpy(self):
        """Outcome-covariate covariance equals numpy.cov on the raw units."""
        rng = np.random.default_rng(3)
        x = rng.normal(size=300)
        y = 2 * x + rng.normal(size=300)
        stats = CupedStats.from_values(y, x)
        assert stats.covariance == pytest.approx(np.cov(y, x)[0, 1], rel=1e-9)
        assert stats.outcome == SampleStats.from_values(y)


class TestSampleStatsArrays:
    def test_matches_scalar_stats(self):
        """Vectorised mean and variance equal SampleStats', with NaN where it gives None."""
        arrays = SampleStatsArrays.of([0, 1, 5], [0.0, 2.0, 10.0], [0.0, 4.0, 30.0])
        scalar = SampleStats(5, 10.0, 30.0)
        assert np.isnan(arrays.mean[0])
        assert arrays.mean[2] == pytest.approx(scalar.mean)
        assert np.isnan(arrays.variance[1])
        assert arrays.variance[2] == pytest.approx(scalar.variance)
