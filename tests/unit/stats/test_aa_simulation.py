"""A/A and peeking simulations, vectorised over sufficient statistics (2,000 experiments)."""

from __future__ import annotations

import numpy as np

from ensayo.stats import SampleStatsArrays, sequential_test_arrays, welch_test_arrays

EXPERIMENTS = 2000
LOOKS = 20
UNITS_PER_ARM_PER_LOOK = 150


def _cumulative_conversions(seed: int, rate_c: float, rate_t: float):
    """Conversions per arm accumulated over daily looks: arrays (experiments, looks)."""
    rng = np.random.default_rng(seed)
    shape = (EXPERIMENTS, LOOKS)
    daily_c = rng.binomial(UNITS_PER_ARM_PER_LOOK, rate_c, size=shape)
    daily_t = rng.binomial(UNITS_PER_ARM_PER_LOOK, rate_t, size=shape)
    n = np.broadcast_to(UNITS_PER_ARM_PER_LOOK * np.arange(1, LOOKS + 1), shape)
    sums_c, sums_t = np.cumsum(daily_c, axis=1), np.cumsum(daily_t, axis=1)
    # 0/1 outcomes: the sum of squares equals the sum.
    return SampleStatsArrays.of(n, sums_c, sums_c), SampleStatsArrays.of(n, sums_t, sums_t)


def _binomial_band(rate: float, trials: int, sds: float = 3.5) -> tuple[float, float]:
    sd = np.sqrt(rate * (1 - rate) / trials)
    return rate - sds * sd, rate + sds * sd


class TestFixedHorizonAA:
    def test_false_positive_rate_is_alpha(self):
        """Welch at the final look rejects 5% of 2,000 A/A tests, within a 3.5-sd binomial band."""
        control, treatment = _cumulative_conversions(11, 0.1, 0.1)
        result = welch_test_arrays(control, treatment, alpha=0.05)
        rate = float(np.mean(result.p_value[:, -1] < 0.05))
        low, high = _binomial_band(0.05, EXPERIMENTS)
        assert low <= rate <= high

    def test_peeking_inflates_fixed_horizon_tests(self):
        """Stopping at the first of 20 looks with p < 0.05 rejects far more than 5% of A/A."""
        control, treatment = _cumulative_conversions(12, 0.1, 0.1)
        result = welch_test_arrays(control, treatment, alpha=0.05)
        rate = float(np.mean(np.any(result.p_value < 0.05, axis=1)))
        assert rate > 0.12


class TestSequentialUnderPeeking:
    def test_false_positive_rate_with_daily_peeks(self):
        """Rejecting at any of 20 looks keeps the A/A false-positive rate at or below alpha."""
        control, treatment = _cumulative_conversions(13, 0.1, 0.1)
        result = sequential_test_arrays(control, treatment, alpha=0.05)
        rate = float(np.mean(np.any(result.p_value < 0.05, axis=1)))
        assert rate <= _binomial_band(0.05, EXPERIMENTS)[1]

    def test_sequence_covers_true_lift_at_every_look(self):
        """With a real +2pt lift, the CS misses it at some look in at most alpha of experiments."""
        control, treatment = _cumulative_conversions(14, 0.10, 0.12)
        result = sequential_test_arrays(control, treatment, alpha=0.05)
        missed = (result.ci_low > 0.02) | (result.ci_high < 0.02)
        rate = float(np.mean(np.any(missed, axis=1)))
        assert rate <= _binomial_band(0.05, EXPERIMENTS)[1]

    def test_has_power_against_a_real_lift(self):
        """The same sequential test detects a +3pt lift in most experiments by the last look."""
        control, treatment = _cumulative_conversions(15, 0.10, 0.13)
        result = sequential_test_arrays(control, treatment, alpha=0.05)
        assert float(np.mean(np.any(result.p_value < 0.05, axis=1))) > 0.6
