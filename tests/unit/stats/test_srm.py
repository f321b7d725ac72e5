"""Sample-ratio mismatch against scipy.stats.chisquare."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from ensayo.errors import InvalidArgument
from ensayo.stats import StatWarning, srm_test, stratified_srm_test


class TestSrm:
    @pytest.mark.parametrize(
        ("observed", "weights"),
        [([5000, 5100], [1, 1]), ([3300, 3400, 3100], [1, 1, 1]), ([8000, 1900], [0.8, 0.2])],
    )
    def test_matches_scipy_chisquare(self, observed, weights):
        """Statistic and p-value equal scipy.stats.chisquare against total·normalised weights."""
        expected = np.sum(observed) * np.asarray(weights) / np.sum(weights)
        reference = sps.chisquare(observed, expected)
        result = srm_test(observed, weights)
        assert result.chi_square == pytest.approx(reference.statistic)
        assert result.p_value == pytest.approx(reference.pvalue)
        assert result.degrees_of_freedom == len(observed) - 1
        assert result.ok == (reference.pvalue >= 0.001)

    def test_mismatch_flagged(self):
        """A 50/50 split observed as 5,000 vs 5,400 is a mismatch (p < 0.001)."""
        result = srm_test([5000, 5400], [1, 1])
        assert result.p_value < 0.001
        assert not result.ok

    def test_no_units_cannot_run(self):
        """With no unit the check reports no p-value, ok, and a warning."""
        result = srm_test([0, 0], [1, 1])
        assert result.p_value is None
        assert result.ok
        assert StatWarning.NO_UNITS in result.warnings

    def test_units_in_zero_weight_variant(self):
        """Units in a variant with weight 0 are a mismatch with p = 0 and a warning."""
        result = srm_test([100, 100, 3], [1, 1, 0])
        assert result.p_value == 0.0
        assert not result.ok
        assert StatWarning.UNEXPECTED_UNITS in result.warnings

    def test_zero_weight_variant_without_units_is_ignored(self):
        """A 0-weight variant with no unit drops out: the test runs on the others."""
        assert srm_test([500, 520, 0], [1, 1, 0]).p_value == pytest.approx(
            sps.chisquare([500, 520]).pvalue
        )

    @pytest.mark.parametrize(
        ("observed", "weights", "field"),
        [
            ([1, -1], [1, 1], "observed"),
            ([1.5, 1], [1, 1], "observed"),
            ([1, 1], [1, -1], "weights"),
            ([1, 1], [0, 0], "weights"),
            ([1, 1], [1, 1, 1], "weights"),
        ],
    )
    def test_invalid_input_rejected(self, observed, weights, field):
        """Bad counts or weights raise InvalidArgument naming the field."""
        with pytest.raises(InvalidArgument) as caught:
            srm_test(observed, weights)
        assert caught.value.field == field


class TestStratifiedSrm:
    def test_sums_period_statistics(self):
        """The statistic and df are sums over periods; p from chi2 with the summed df (scipy)."""
        observed = [[500, 480], [900, 120, 150], [0, 0, 0]]
        weights = [[1, 1], [0.8, 0.1, 0.1], [1, 1, 1]]
        first = sps.chisquare(observed[0], [490, 490])
        second = sps.chisquare(observed[1], [936, 117, 117])
        result = stratified_srm_test(observed, weights)
        assert result.chi_square == pytest.approx(first.statistic + second.statistic)
        assert result.degrees_of_freedom == 3
        assert result.p_value == pytest.approx(sps.chi2.sf(first.statistic + second.statistic, 3))

    def test_changing_weights_need_stratification(self):
        """A correct bandit log passes stratified SRM; its pooled counts fail a fixed split."""
        observed = [[5000, 5000], [2000, 8000]]
        weights = [[0.5, 0.5], [0.2, 0.8]]
        assert stratified_srm_test(observed, weights).ok
        assert not srm_test([7000, 13000], [1, 1]).ok

    def test_bad_period_is_named(self):
        """An invalid period's field path carries its index."""
        with pytest.raises(InvalidArgument) as caught:
            stratified_srm_test([[1, 1], [1, -1]], [[1, 1], [1, 1]])
        assert caught.value.field == "observed[1]"
