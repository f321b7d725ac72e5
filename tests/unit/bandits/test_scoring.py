"""Beta-Bernoulli action scoring: posterior means, vectorised draws and (discounted) updates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ensayo.bandits import (
    BetaParams,
    beta_prior,
    beta_sampler,
    expected_rates,
    sample_rates,
    update_beta,
)
from ensayo.errors import InvalidArgument


class TestBetaParams:
    @pytest.mark.parametrize(
        ("alpha", "beta", "field"),
        [
            ([1.0, 0.0], [1.0, 1.0], "alpha"),
            ([1.0], [1.0, 1.0], "alpha"),
            ([1.0], [np.nan], "beta"),
        ],
    )
    def test_invalid_parameters_are_rejected(self, alpha, beta, field):
        """Non-positive, non-finite or mismatched parameters raise InvalidArgument."""
        with pytest.raises(InvalidArgument) as info:
            BetaParams(np.array(alpha), np.array(beta))
        assert info.value.field == field

    def test_take_selects_candidates_in_order(self):
        """take() returns the posteriors of the given actions in the given order."""
        params = BetaParams(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
        picked = params.take([2, 0])
        np.testing.assert_array_equal(picked.alpha, [3.0, 1.0])
        np.testing.assert_array_equal(picked.beta, [6.0, 4.0])


class TestExpectedRates:
    def test_posterior_mean(self):
        """The expected rate is alpha / (alpha + β), scipy's Beta mean."""
        params = BetaParams(np.array([2.0, 9.0]), np.array([8.0, 1.0]))
        np.testing.assert_allclose(
            expected_rates(params), stats.beta(params.alpha, params.beta).mean()
        )


class TestSampleRates:
    def test_draws_match_scipy_beta_moments(self):
        """100,000 draws per action have scipy's Beta mean and variance within 4 SE."""
        params = BetaParams(np.array([2.0, 30.0, 0.5]), np.array([5.0, 70.0, 0.5]))
        draws = sample_rates(params, np.random.default_rng(1), draws=100_000)
        assert draws.shape == (100_000, 3)
        reference = stats.beta(params.alpha, params.beta)
        se_mean = np.sqrt(reference.var() / 100_000)
        assert np.all(np.abs(draws.mean(axis=0) - reference.mean()) < 4 * se_mean)
        np.testing.assert_allclose(draws.var(axis=0), reference.var(), rtol=0.03)

    def test_single_draw_has_one_rate_per_action(self):
        """Without draws, one rate per action comes back."""
        assert sample_rates(beta_prior(5), np.random.default_rng(0)).shape == (5,)

    def test_sampler_scales_by_value(self):
        """beta_sampler multiplies each draw by the action's value."""
        params = BetaParams(np.array([1.0, 1.0]), np.array([1.0, 1.0]))
        plain = beta_sampler(params)(np.random.default_rng(4), 10)
        scaled = beta_sampler(params, [2.0, 10.0])(np.random.default_rng(4), 10)
        np.testing.assert_allclose(scaled, plain * [2.0, 10.0])


class TestUpdateBeta:
    def test_conjugate_update_adds_counts(self):
        """Without discount, alpha gains the successes and β the failures."""
        updated = update_beta(beta_prior(3), [2, 0, 1], [1, 4, 0])
        np.testing.assert_array_equal(updated.alpha, [3.0, 1.0, 2.0])
        np.testing.assert_array_equal(updated.beta, [2.0, 5.0, 1.0])

    def test_fractional_rewards_count_as_partial_successes(self):
        """A reward of 0.25 adds 0.25 to alpha and 0.75 to β."""
        updated = update_beta(beta_prior(1), [0.25], [0.75])
        np.testing.assert_allclose([updated.alpha[0], updated.beta[0]], [1.25, 1.75])

    def test_discount_converges_to_the_geometric_series(self):
        """With gamma and a constant batch s, alpha - alpha0 tends to the sum s / (1 - gamma)."""
        params = beta_prior(1)
        for _ in range(400):
            params = update_beta(params, [3.0], [7.0], discount=0.9)
        np.testing.assert_allclose(params.alpha - 1.0, 3.0 / (1 - 0.9), rtol=1e-12)
        np.testing.assert_allclose(params.beta - 1.0, 7.0 / (1 - 0.9), rtol=1e-12)

    def test_discount_forgets_old_evidence(self):
        """After a change in rate, a discounted model tracks the new rate, a plain one lags."""
        plain = discounted = beta_prior(1)
        for _ in range(200):  # rate 0.8
            plain = update_beta(plain, [8.0], [2.0])
            discounted = update_beta(discounted, [8.0], [2.0], discount=0.9)
        for _ in range(50):  # rate 0.2
            plain = update_beta(plain, [2.0], [8.0])
            discounted = update_beta(discounted, [2.0], [8.0], discount=0.9)
        assert expected_rates(discounted)[0] == pytest.approx(0.2, abs=0.01)
        assert expected_rates(plain)[0] > 0.65

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"successes": [-1.0], "failures": [0.0]}, "successes"),
            ({"successes": [1.0], "failures": [np.inf]}, "failures"),
            ({"successes": [1.0], "failures": [0.0], "discount": 0.0}, "discount"),
            ({"successes": [1.0], "failures": [0.0], "prior": beta_prior(2)}, "prior"),
        ],
    )
    def test_bad_updates_are_rejected(self, kwargs, field):
        """Negative or infinite counts, gamma ∉ (0, 1] or a mismatched prior are rejected."""
        with pytest.raises(InvalidArgument) as info:
            update_beta(beta_prior(1), **kwargs)
        assert info.value.field == field
