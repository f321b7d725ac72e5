"""Allocation weights of bandit experiments against closed forms, integrals and simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from ensayo.bandits import (
    ArmStats,
    BanditAlgorithm,
    BanditSpec,
    allocate,
    apply_floor,
    probability_best,
    top_two_weights,
    ucb1_index,
)
from ensayo.errors import InvalidArgument


def bernoulli(n: int, successes: int) -> ArmStats:
    return ArmStats(n, float(successes), float(successes))


class TestApplyFloor:
    def test_affine_formula(self):
        """w' = floor + (1 - k·floor)·w for normalised w."""
        weights = np.array([0.7, 0.2, 0.1, 0.0])
        np.testing.assert_allclose(
            apply_floor(weights, 0.05), 0.05 + 0.8 * weights, rtol=0, atol=1e-15
        )

    def test_floor_sum_and_order(self):
        """Every arm gets ≥ floor, the weights sum to 1 and keep their order."""
        weights = np.array([5.0, 0.0, 1.0, 3.0, 3.0])
        floored = apply_floor(weights, 0.1)
        assert floored.min() >= 0.1
        assert floored.sum() == pytest.approx(1.0, abs=1e-15)
        assert list(np.argsort(floored, kind="stable")) == list(np.argsort(weights, kind="stable"))
        assert floored[3] == floored[4]

    def test_zero_floor_only_normalises(self):
        """At floor 0 the result is the normalised input."""
        np.testing.assert_allclose(apply_floor(np.array([2.0, 6.0]), 0.0), [0.25, 0.75])

    def test_maximal_floor_is_uniform(self):
        """At floor 1/k every arm gets exactly 1/k."""
        np.testing.assert_allclose(apply_floor(np.array([1.0, 0.0, 0.0, 0.0]), 0.25), 0.25)

    @pytest.mark.parametrize(
        ("weights", "floor"),
        [([0.0, 0.0], 0.1), ([-1.0, 2.0], 0.1), ([np.nan, 1.0], 0.1), ([1.0, 1.0], 0.6)],
    )
    def test_bad_input_is_rejected(self, weights, floor):
        """All-zero, negative or NaN weights and k·floor > 1 raise InvalidArgument."""
        with pytest.raises(InvalidArgument):
            apply_floor(np.array(weights), floor)


class TestThompsonBernoulli:
    def test_clearly_better_arm_gets_most_traffic(self):
        """A 15% arm against two 5% arms (1,000 units each) gets > 95%; the others the floor."""
        arms = [bernoulli(1000, 50), bernoulli(1000, 150), bernoulli(1000, 50)]
        spec = BanditSpec(BanditAlgorithm.THOMPSON_BERNOULLI, exploration_floor=0.02)
        weights = allocate(spec, arms, np.random.default_rng(7))
        assert weights[1] > 0.95
        assert weights.min() >= 0.02
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)

    def test_two_arm_probability_matches_the_exact_integral(self):
        """P(B best) equals ∫ f_B(x)·F_A(x) dx (scipy quad over Beta pdf x cdf) within 4 SE."""
        a, b = bernoulli(40, 12), bernoulli(50, 20)
        post_a, post_b = stats.beta(1 + 12, 1 + 28), stats.beta(1 + 20, 1 + 30)
        exact, _ = integrate.quad(lambda x: post_b.pdf(x) * post_a.cdf(x), 0.0, 1.0)
        draws = 200_000
        spec = BanditSpec(BanditAlgorithm.THOMPSON_BERNOULLI, exploration_floor=0.0)
        weights = allocate(spec, [a, b], np.random.default_rng(11), draws=draws)
        se = math.sqrt(exact * (1 - exact) / draws)
        assert round(exact, 4) == 0.8326
        assert abs(weights[1] - exact) < 4 * se

    def test_arms_without_data_get_the_prior(self):
        """With no data at all the prior is symmetric, so traffic is uniform within MC error."""
        spec = BanditSpec(BanditAlgorithm.THOMPSON_BERNOULLI)
        weights = allocate(spec, [ArmStats()] * 4, np.random.default_rng(3), draws=40_000)
        np.testing.assert_allclose(weights, 0.25, atol=4 * 0.5 / math.sqrt(40_000))

    def test_same_seed_same_weights(self):
        """The same generator seed reproduces the weights exactly."""
        arms = [bernoulli(30, 3), bernoulli(30, 5)]
        spec = BanditSpec(BanditAlgorithm.THOMPSON_BERNOULLI)
        first = allocate(spec, arms, np.random.default_rng(5))
        np.testing.assert_array_equal(first, allocate(spec, arms, np.random.default_rng(5)))


class TestThompsonGaussian:
    def test_two_arm_probability_matches_the_normal_closed_form(self):
        """With a known variance, P(B best) = Φ((μ_B - μ_A) / sqrt(v_A + v_B)) (scipy norm)."""
        spec = BanditSpec(
            BanditAlgorithm.THOMPSON_GAUSSIAN,
            exploration_floor=0.0,
            reward_variance=4.0,
            prior_mean=0.0,
            prior_n=1.0,
        )
        a, b = ArmStats(30, 30.0, 30 * (1.0 + 4.0)), ArmStats(20, 32.0, 20 * (1.6**2 + 4.0))
        mean_a, var_a = 30 * 1.0 / 31, 4.0 / 31
        mean_b, var_b = 20 * 1.6 / 21, 4.0 / 21
        exact = stats.norm.cdf((mean_b - mean_a) / math.sqrt(var_a + var_b))
        draws = 200_000
        weights = allocate(spec, [a, b], np.random.default_rng(2), draws=draws)
        assert abs(weights[1] - exact) < 4 * math.sqrt(exact * (1 - exact) / draws)

    def test_estimated_variance_prefers_the_better_mean(self):
        """With estimated variances a clearly higher mean revenue gets most of the traffic."""
        rng = np.random.default_rng(8)
        low, high = rng.normal(10, 3, 400), rng.normal(12, 3, 400)
        arms = [ArmStats(x.size, float(x.sum()), float((x**2).sum())) for x in (low, high)]
        weights = allocate(BanditSpec(BanditAlgorithm.THOMPSON_GAUSSIAN), arms, rng)
        assert weights[1] > 0.98


class TestTopTwo:
    def test_two_arms_split_evenly(self):
        """With two arms and β = 1/2 top-two Thompson plays each half the time (Russo 2016)."""
        np.testing.assert_allclose(top_two_weights(np.array([0.9, 0.1]), 0.5), [0.5, 0.5])

    def test_matches_a_literal_simulation_of_the_algorithm(self):
        """ψ from the formula matches simulating leader/resample-until-different (3 arms)."""
        alpha = np.array([21.0, 25.0, 23.0])
        beta = np.array([81.0, 77.0, 79.0])
        rng = np.random.default_rng(13)
        p_best = probability_best(rng.beta(alpha, beta, size=(400_000, 3)))
        expected = top_two_weights(p_best, 0.5)
        trials = 100_000
        leader = rng.beta(alpha, beta, size=(trials, 3)).argmax(axis=1)
        played = leader.copy()
        challenge = rng.random(trials) >= 0.5
        pending = challenge.copy()
        while pending.any():
            fresh = rng.beta(alpha, beta, size=(int(pending.sum()), 3)).argmax(axis=1)
            idx = np.flatnonzero(pending)
            found = fresh != leader[idx]
            played[idx[found]] = fresh[found]
            pending[idx[found]] = False
        observed = np.bincount(played, minlength=3) / trials
        se = np.sqrt(expected * (1 - expected) / trials)
        assert np.all(np.abs(observed - expected) < 3 * se + 0.002)

    def test_certain_leader_hands_challenges_to_the_runner_up(self):
        """When one arm wins every draw, challenges follow how often each arm came second."""
        weights = top_two_weights(np.array([1.0, 0.0, 0.0]), 0.5, np.array([0.0, 3.0, 1.0]))
        np.testing.assert_allclose(weights, [0.5, 0.375, 0.125])

    def test_allocation_with_top_two_keeps_floor_and_sum(self):
        """allocate(top_two=True) sums to 1, keeps the floor and gives the leader about half."""
        arms = [bernoulli(2000, 100), bernoulli(2000, 200), bernoulli(2000, 120)]
        spec = BanditSpec(BanditAlgorithm.THOMPSON_BERNOULLI, top_two=True)
        weights = allocate(spec, arms, np.random.default_rng(4))
        assert weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert weights.min() >= 0.01
        assert weights[1] == pytest.approx(0.01 + 0.97 * 0.5, abs=0.01)


class TestUCB1:
    def test_index_matches_auer_closed_form(self):
        """Index = x̄_i + sqrt(2 ln N / n_i) (Auer, Cesa-Bianchi, Fischer 2002, fig. 1)."""
        arms = [bernoulli(10, 6), bernoulli(5, 4), bernoulli(20, 9)]
        total = 35
        expected = [
            s / n + math.sqrt(2 * math.log(total) / n) for n, s in [(10, 6), (5, 4), (20, 9)]
        ]
        np.testing.assert_allclose(ucb1_index(arms), expected, rtol=1e-14)
        np.testing.assert_allclose(ucb1_index(arms), [1.443249, 1.992535, 1.046267], atol=1e-6)

    def test_all_spare_mass_to_the_best_index(self):
        """Arms off the top index get exactly the floor; the top gets the rest."""
        arms = [bernoulli(10, 6), bernoulli(5, 4), bernoulli(20, 9)]
        weights = allocate(BanditSpec(BanditAlgorithm.UCB1), arms, np.random.default_rng(0))
        np.testing.assert_allclose(weights, [0.01, 0.98, 0.01])

    def test_unplayed_arms_come_first_and_tie(self):
        """Unplayed arms have an infinite index (play each once) and split the spare mass."""
        arms = [bernoulli(10, 9), ArmStats(), ArmStats()]
        weights = allocate(BanditSpec(BanditAlgorithm.UCB1), arms, np.random.default_rng(0))
        np.testing.assert_allclose(weights, [0.01, 0.495, 0.495])


class TestEpsilonGreedy:
    def test_epsilon_spread_and_greedy_share(self):
        """Weights are ε/k for every arm plus 1 - ε on the best mean, then the floor."""
        arms = [bernoulli(100, 10), bernoulli(100, 30), bernoulli(100, 20)]
        spec = BanditSpec(BanditAlgorithm.EPSILON_GREEDY, epsilon=0.3, exploration_floor=0.0)
        weights = allocate(spec, arms, np.random.default_rng(0))
        np.testing.assert_allclose(weights, [0.1, 0.8, 0.1])

    def test_tied_best_means_split(self):
        """Two arms tied on the best mean share 1 - ε evenly."""
        arms = [bernoulli(100, 30), bernoulli(50, 15), bernoulli(100, 20)]
        spec = BanditSpec(BanditAlgorithm.EPSILON_GREEDY, epsilon=0.3, exploration_floor=0.0)
        weights = allocate(spec, arms, np.random.default_rng(0))
        np.testing.assert_allclose(weights, [0.45, 0.45, 0.1])

    def test_arm_without_data_uses_the_prior_mean(self):
        """An unplayed arm counts as the prior mean: above the best, it takes the greedy share."""
        arms = [bernoulli(100, 10), ArmStats()]
        spec = BanditSpec(
            BanditAlgorithm.EPSILON_GREEDY, epsilon=0.2, exploration_floor=0.0, prior_mean=0.5
        )
        weights = allocate(spec, arms, np.random.default_rng(0))
        np.testing.assert_allclose(weights, [0.1, 0.9])


class TestAllocate:
    def test_burn_in_is_uniform(self):
        """Until burn_in_units rewards exist, traffic is uniform whatever the data say."""
        arms = [bernoulli(10, 0), bernoulli(10, 10)]
        spec = BanditSpec(BanditAlgorithm.UCB1, burn_in_units=100)
        np.testing.assert_allclose(allocate(spec, arms, np.random.default_rng(0)), [0.5, 0.5])

    def test_every_algorithm_respects_floor_and_sum(self):
        """For every algorithm the weights sum to 1 and each arm gets at least the floor."""
        arms = [bernoulli(500, 20), bernoulli(500, 80), ArmStats(), bernoulli(3, 1)]
        for algorithm in BanditAlgorithm:
            spec = BanditSpec(algorithm, exploration_floor=0.05)
            weights = allocate(spec, arms, np.random.default_rng(1))
            assert weights.sum() == pytest.approx(1.0, abs=1e-12), algorithm
            assert weights.min() >= 0.05 - 1e-15, algorithm

    def test_too_high_floor_for_the_arms_is_rejected(self):
        """k · floor > 1 raises InvalidArgument on bandit.exploration_floor."""
        spec = BanditSpec(BanditAlgorithm.UCB1, exploration_floor=0.3)
        with pytest.raises(InvalidArgument) as info:
            allocate(spec, [ArmStats()] * 4, np.random.default_rng(0))
        assert info.value.field == "bandit.exploration_floor"

    def test_single_arm_gets_everything(self):
        """One arm gets weight 1."""
        spec = BanditSpec(BanditAlgorithm.THOMPSON_GAUSSIAN)
        np.testing.assert_allclose(allocate(spec, [ArmStats()], np.random.default_rng(0)), [1.0])


class TestProbabilityBest:
    def test_ties_split_evenly(self):
        """A draw where two arms tie for the maximum credits each with half."""
        samples = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
        np.testing.assert_allclose(probability_best(samples), [0.25, 0.75, 0.0])
