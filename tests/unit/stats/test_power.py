"""Sample-size planning against statsmodels.stats.power."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import NormalIndPower, TTestIndPower

from ensayo.errors import InvalidArgument
from ensayo.stats import MetricKind, sample_size


class TestConversion:
    @pytest.mark.parametrize(
        ("rate", "mde", "alpha", "power"),
        [(0.1, 0.1, 0.05, 0.8), (0.02, 0.2, 0.05, 0.9), (0.5, -0.05, 0.01, 0.8)],
    )
    def test_matches_normal_ind_power(self, rate, mde, alpha, power):
        """Units per arm equal NormalIndPower at effect size delta/sqrt(mean arm variance)."""
        treated = rate * (1 + mde)
        pooled_sd = math.sqrt((rate * (1 - rate) + treated * (1 - treated)) / 2)
        effect = abs(rate * mde) / pooled_sd
        reference = NormalIndPower().solve_power(
            effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
        )
        plan = sample_size(
            MetricKind.CONVERSION,
            baseline_mean=rate,
            minimum_detectable_effect=mde,
            alpha=alpha,
            power=power,
        )
        assert 0 <= plan.units_per_variant - math.ceil(reference) <= 1
        assert plan.total_units == 2 * plan.units_per_variant

    def test_literal_ten_percent_baseline(self):
        """10% baseline, +10% relative, alpha 0.05, power 0.8: 14,749 per variant."""
        plan = sample_size(MetricKind.CONVERSION, baseline_mean=0.1, minimum_detectable_effect=0.1)
        assert plan.units_per_variant == 14_749

    def test_bonferroni_for_more_variants(self):
        """Four variants split alpha over three comparisons, as NormalIndPower at alpha/3."""
        plan = sample_size(
            MetricKind.CONVERSION, baseline_mean=0.1, minimum_detectable_effect=0.1, variants=4
        )
        effect = 0.01 / math.sqrt((0.09 + 0.11 * 0.89) / 2)
        reference = NormalIndPower().solve_power(effect_size=effect, alpha=0.05 / 3, power=0.8)
        assert plan.alpha_per_comparison == pytest.approx(0.05 / 3)
        assert 0 <= plan.units_per_variant - math.ceil(reference) <= 1
        assert plan.total_units == 4 * plan.units_per_variant


class TestMean:
    def test_close_to_t_test_power(self):
        """The normal approximation is within 2 units below TTestIndPower's t-based answer."""
        plan = sample_size(
            MetricKind.MEAN,
            baseline_mean=50.0,
            baseline_variance=400.0,
            minimum_detectable_effect=0.05,
        )
        normal = NormalIndPower().solve_power(effect_size=2.5 / 20.0, alpha=0.05, power=0.8)
        t_based = TTestIndPower().solve_power(effect_size=2.5 / 20.0, alpha=0.05, power=0.8)
        assert 0 <= plan.units_per_variant - math.ceil(normal) <= 1
        assert 0 <= math.ceil(t_based) - plan.units_per_variant <= 2


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"alpha": 0.0}, "alpha"),
            ({"power": 1.0}, "power"),
            ({"variants": 1}, "variants"),
            ({"minimum_detectable_effect": 0.0}, "minimum_detectable_effect"),
            ({"minimum_detectable_effect": 12.0}, "minimum_detectable_effect"),
            ({"baseline_mean": 1.5}, "baseline_mean"),
        ],
    )
    def test_conversion_errors_name_the_field(self, kwargs, field):
        """Out-of-range inputs raise InvalidArgument naming the request field."""
        arguments = {"baseline_mean": 0.1, "minimum_detectable_effect": 0.1, **kwargs}
        with pytest.raises(InvalidArgument) as caught:
            sample_size(MetricKind.CONVERSION, **arguments)
        assert caught.value.field == field

    def test_mean_needs_variance_and_non_zero_mean(self):
        """Mean metrics need a positive baseline variance and a non-zero baseline mean."""
        with pytest.raises(InvalidArgument) as caught:
            sample_size(MetricKind.MEAN, baseline_mean=5.0, minimum_detectable_effect=0.1)
        assert caught.value.field == "baseline_variance"
        with pytest.raises(InvalidArgument) as caught:
            sample_size(
                MetricKind.MEAN,
                baseline_mean=0.0,
                baseline_variance=1.0,
                minimum_detectable_effect=0.1,
            )
        assert caught.value.field == "baseline_mean"
