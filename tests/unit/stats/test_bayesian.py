"""Gaussian Bayesian test: closed forms against numerical integration and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from ensayo.errors import InvalidArgument
from ensayo.stats import (
    Prior,
    SampleStats,
    StatTest,
    StatWarning,
    bayesian_test,
    beta_binomial_test,
    chance_to_win,
    expected_loss,
)


def _arms(seed: int):
    rng = np.random.default_rng(seed)
    control = rng.normal(20.0, 6.0, 800)
    treatment = rng.normal(20.6, 6.0, 800)
    return control, treatment


class TestClosedForms:
    @pytest.mark.parametrize(("mu", "sd"), [(0.0, 1.0), (0.3, 0.2), (-0.5, 0.4), (2.0, 0.1)])
    def test_expected_loss_matches_numerical_integral(self, mu, sd):
        """E[max(0, -X)] for X ~ N(mu, sd²) equals scipy.integrate.quad of the same integrand."""
        reference, _ = integrate.quad(
            lambda x: -x * sps.norm.pdf(x, mu, sd), -np.inf, 0.0, epsabs=1e-12
        )
        assert expected_loss(mu, sd) == pytest.approx(reference, abs=1e-9)
        upper, _ = integrate.quad(lambda x: x * sps.norm.pdf(x, mu, sd), 0.0, np.inf)
        assert expected_loss(mu, sd, lower_is_better=True) == pytest.approx(upper, abs=1e-9)

    def test_chance_to_win_is_normal_tail(self):
        """Chance to win is P(X > 0) = Φ(mu/sd), and its complement when lower is better."""
        assert chance_to_win(0.2, 0.1) == pytest.approx(sps.norm.cdf(2.0))
        assert chance_to_win(0.2, 0.1, lower_is_better=True) == pytest.approx(sps.norm.cdf(-2.0))


class TestGaussianBayes:
    def test_flat_prior_posterior_is_the_likelihood(self):
        """With the flat prior, CTW = Φ(lift/se) and the CI is lift ± z·se with Welch's se."""
        control, treatment = _arms(1)
        lift = treatment.mean() - control.mean()
        se = math.sqrt(control.var(ddof=1) / 800 + treatment.var(ddof=1) / 800)
        result = bayesian_test(
            SampleStats.from_values(control), SampleStats.from_values(treatment)
        )
        assert result.test is StatTest.BAYES_GAUSSIAN
        assert result.p_value is None
        assert result.absolute_lift == pytest.approx(lift)
        assert result.chance_to_win == pytest.approx(sps.norm.cdf(lift / se))
        assert result.ci_low == pytest.approx(lift - sps.norm.ppf(0.975) * se)
        assert result.expected_loss == pytest.approx(expected_loss(lift, se))
        assert result.significant == (result.ci_low > 0 or result.ci_high < 0)

    def test_proper_prior_matches_grid_posterior(self):
        """A proper prior's relative interval equals a numerically integrated grid posterior."""
        control, treatment = _arms(2)
        prior = Prior(mean=0.0, variance=0.02**2, proper=True)
        flat = bayesian_test(SampleStats.from_values(control), SampleStats.from_values(treatment))
        shrunk = bayesian_test(
            SampleStats.from_values(control), SampleStats.from_values(treatment), prior=prior
        )
        z = sps.norm.ppf(0.975)
        rel_se = (flat.relative_ci_high - flat.relative_ci_low) / (2 * z)
        grid = np.linspace(-0.3, 0.3, 200_001)
        density = sps.norm.pdf(flat.relative_lift, grid, rel_se) * sps.norm.pdf(grid, 0, 0.02)
        density /= density.sum()
        post_mean = float(grid @ density)
        post_sd = math.sqrt(float((grid - post_mean) ** 2 @ density))
        assert shrunk.relative_ci_low == pytest.approx(post_mean - z * post_sd, abs=1e-6)
        assert shrunk.relative_ci_high == pytest.approx(post_mean + z * post_sd, abs=1e-6)
        assert abs(shrunk.chance_to_win - 0.5) < abs(flat.chance_to_win - 0.5)

    def test_lower_is_better_flips_chance_to_win(self):
        """For a lower-is-better metric chance to win is the complement."""
        control, treatment = _arms(3)
        stats = SampleStats.from_values(control), SampleStats.from_values(treatment)
        higher = bayesian_test(*stats)
        lower = bayesian_test(*stats, lower_is_better=True)
        assert lower.chance_to_win == pytest.approx(1 - higher.chance_to_win)

    def test_proper_prior_with_zero_control_mean_warns(self):
        """A proper prior cannot be scaled by a 0 control mean: flat absolute prior, warning."""
        zero = bayesian_test(
            SampleStats(100, 0.0, 100.0),
            SampleStats(200, 30.0, 60.0),
            prior=Prior(variance=0.1, proper=True),
        )
        assert StatWarning.PRIOR_IGNORED_FOR_ABSOLUTE in zero.warnings
        assert StatWarning.CONTROL_MEAN_ZERO in zero.warnings
        assert zero.relative_lift is None
        assert zero.relative_ci_low is None
        assert zero.chance_to_win is not None

    def test_bad_prior_rejected(self):
        """A non-positive prior variance raises InvalidArgument naming prior.variance."""
        with pytest.raises(InvalidArgument) as caught:
            Prior(variance=0.0)
        assert caught.value.field == "prior.variance"


class TestBetaBinomial:
    def test_agrees_with_gaussian_approximation(self):
        """Monte Carlo CTW, loss and CI agree with the Gaussian closed forms at n = 5,000."""
        control, treatment = SampleStats(5000, 500, 500), SampleStats(5000, 540, 540)
        sampled = beta_binomial_test(control, treatment, rng=np.random.default_rng(9))
        gaussian = bayesian_test(control, treatment)
        assert sampled.comparison.test is StatTest.BETA_BINOMIAL_MONTE_CARLO
        assert sampled.comparison.chance_to_win == pytest.approx(gaussian.chance_to_win, abs=0.01)
        assert sampled.comparison.expected_loss == pytest.approx(gaussian.expected_loss, rel=0.1)
        assert sampled.comparison.ci_low == pytest.approx(gaussian.ci_low, abs=1e-3)
        assert sampled.comparison.ci_high == pytest.approx(gaussian.ci_high, abs=1e-3)

    def test_recorded_seed_reproduces_the_draws(self):
        """Re-drawing the Beta posteriors from the recorded seed gives the same chance to win."""
        control, treatment = SampleStats(300, 30, 30), SampleStats(310, 41, 41)
        sampled = beta_binomial_test(control, treatment, rng=np.random.default_rng(10), draws=5000)
        rng = np.random.default_rng(sampled.seed)
        p_c = rng.beta(1 + 30, 1 + 270, size=5000)
        p_t = rng.beta(1 + 41, 1 + 269, size=5000)
        assert sampled.draws == 5000
        assert sampled.comparison.chance_to_win == float(np.mean(p_t > p_c))

    def test_non_binary_data_rejected(self):
        """A conversion arm whose sum_squares differ from its sum raises InvalidArgument."""
        with pytest.raises(InvalidArgument) as caught:
            beta_binomial_test(
                SampleStats(10, 3, 5), SampleStats(10, 3, 3), rng=np.random.default_rng(0)
            )
        assert caught.value.field == "control.sum_squares"

    def test_small_arms_still_sample(self):
        """One unit per arm is enough for Beta posteriors: figures present, no variance warning."""
        sampled = beta_binomial_test(
            SampleStats(1, 1, 1), SampleStats(1, 0, 0), rng=np.random.default_rng(1), draws=1000
        )
        assert sampled.comparison.chance_to_win is not None
        assert sampled.comparison.warnings == ()
