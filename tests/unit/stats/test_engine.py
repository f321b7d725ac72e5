"""compare_variants: method dispatch, CUPED handling and input checks for one metric."""

from __future__ import annotations

import numpy as np
import pytest

from ensayo.errors import InvalidArgument
from ensayo.stats import (
    AnalysisMethod,
    CupedStats,
    Prior,
    RatioStats,
    SampleStats,
    StatTest,
    StatWarning,
    bayesian_test,
    compare_variants,
    sequential_test,
    welch_test,
)

ARMS = [SampleStats(1000, 100, 100), SampleStats(1000, 118, 118), SampleStats(990, 95, 95)]


class TestDispatch:
    @pytest.mark.parametrize(
        ("method", "test"),
        [
            (AnalysisMethod.FREQUENTIST, StatTest.WELCH_T),
            (AnalysisMethod.BAYESIAN, StatTest.BAYES_GAUSSIAN),
            (AnalysisMethod.SEQUENTIAL, StatTest.CONFIDENCE_SEQUENCE),
        ],
    )
    def test_each_method_compares_every_variant_to_control(self, method, test):
        """One comparison per treatment, in order, made by the chosen method."""
        comparisons = compare_variants(ARMS, ["control", "a", "b"], method=method)
        assert [c.variant_key for c in comparisons] == ["a", "b"]
        assert all(c.test is test for c in comparisons)
        assert all(c.variance_reduction == 0.0 for c in comparisons)

    def test_results_equal_the_direct_calls(self):
        """The engine's numbers are exactly those of welch/bayesian/sequential_test."""
        keys = ["control", "a", "b"]
        welch = compare_variants(ARMS, keys)[0]
        bayes = compare_variants(
            ARMS, keys, method=AnalysisMethod.BAYESIAN, prior=Prior(variance=0.05, proper=True)
        )[0]
        seq = compare_variants(
            ARMS, keys, method=AnalysisMethod.SEQUENTIAL, planned_units_per_arm=2000
        )[0]
        assert welch == welch_test(ARMS[0], ARMS[1], variant_key="a")
        assert bayes == bayesian_test(
            ARMS[0], ARMS[1], prior=Prior(variance=0.05, proper=True), variant_key="a"
        )
        assert seq == sequential_test(
            ARMS[0], ARMS[1], planned_units_per_arm=2000, variant_key="a"
        )

    def test_ratio_metrics_use_z(self):
        """Ratio statistics go to the delta-method z test under the frequentist method."""
        rng = np.random.default_rng(1)
        den = rng.poisson(2, (2, 500)) + 1
        stats = [RatioStats.from_values(rng.binomial(den[i], 0.3), den[i]) for i in range(2)]
        (comparison,) = compare_variants(stats, ["c", "t"])
        assert comparison.test is StatTest.Z_DELTA_METHOD


class TestCupedRequests:
    def test_cuped_on_ratio_warns(self):
        """Asking CUPED for a ratio metric warns and reports 0 reduction."""
        stats = [RatioStats(10, 3, 3, 12, 16, 4), RatioStats(10, 4, 4, 11, 13, 5)]
        (comparison,) = compare_variants(stats, ["c", "t"], cuped=True)
        assert StatWarning.CUPED_NOT_FOR_RATIO in comparison.warnings
        assert comparison.variance_reduction == 0.0

    def test_cuped_without_covariate_warns(self):
        """Asking CUPED for plain statistics warns that the metric has no covariate."""
        (comparison, _) = compare_variants(ARMS, ["c", "a", "b"], cuped=True)
        assert StatWarning.NO_COVARIATE in comparison.warnings

    def test_cuped_with_bayesian_method(self):
        """CUPED feeds adjusted statistics to the Bayesian test and reports the reduction."""
        rng = np.random.default_rng(2)
        x = rng.normal(10, 3, (2, 400))
        y = x + rng.normal(0, 1, (2, 400))
        stats = [CupedStats.from_values(y[i], x[i]) for i in range(2)]
        (plain,) = compare_variants(stats, ["c", "t"], method=AnalysisMethod.BAYESIAN)
        (adjusted,) = compare_variants(
            stats, ["c", "t"], method=AnalysisMethod.BAYESIAN, cuped=True
        )
        assert adjusted.variance_reduction > 0.8
        assert adjusted.ci_high - adjusted.ci_low < 0.5 * (plain.ci_high - plain.ci_low)


class TestInputChecks:
    def test_needs_two_variants(self):
        """A single variant raises InvalidArgument."""
        with pytest.raises(InvalidArgument):
            compare_variants(ARMS[:1], ["c"])

    def test_keys_must_match(self):
        """Keys and statistics of different lengths raise InvalidArgument on variant_keys."""
        with pytest.raises(InvalidArgument) as caught:
            compare_variants(ARMS, ["c", "a"])
        assert caught.value.field == "variant_keys"

    def test_mixed_kinds_rejected(self):
        """Mixing SampleStats and RatioStats raises InvalidArgument naming the odd one."""
        with pytest.raises(InvalidArgument) as caught:
            compare_variants([ARMS[0], RatioStats(3, 1, 1, 3, 3, 1)], ["c", "t"])
        assert caught.value.field == "stats[1]"
