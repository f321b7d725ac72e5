"""Bandit specs and arm statistics: validation, merging, derived moments."""

from __future__ import annotations

import numpy as np
import pytest

from ensayo.bandits import (
    ArmStats,
    BanditAlgorithm,
    BanditSpec,
    ExplorationPolicy,
    ExplorationSpec,
)
from ensayo.errors import InvalidArgument


class TestArmStats:
    def test_merge_adds_every_statistic(self):
        """Two windows merged with + equal the statistics of the concatenated rewards."""
        a = np.array([1.0, 0.0, 2.5])
        b = np.array([4.0, -1.0])
        left = ArmStats(a.size, float(a.sum()), float((a**2).sum()))
        right = ArmStats(b.size, float(b.sum()), float((b**2).sum()))
        both = np.concatenate([a, b])
        assert left + right == ArmStats(both.size, float(both.sum()), float((both**2).sum()))

    def test_mean_and_variance_match_numpy(self):
        """mean and variance equal numpy's mean and var(ddof=1) of the same rewards."""
        rewards = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
        stats = ArmStats(rewards.size, float(rewards.sum()), float((rewards**2).sum()))
        assert stats.mean == pytest.approx(rewards.mean())
        assert stats.variance == pytest.approx(rewards.var(ddof=1))

    def test_degenerate_moments_are_zero(self):
        """An empty arm has mean 0 and a single reward has variance 0."""
        assert ArmStats().mean == 0.0
        assert ArmStats(1, 0.7, 0.49).variance == 0.0

    def test_numpy_count_is_accepted(self):
        """A numpy integer count (from a SQL aggregate) is stored as a Python int."""
        stats = ArmStats(np.int64(3), 1.0, 1.0)
        assert stats.n == 3
        assert type(stats.n) is int

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"n": -1}, "n"),
            ({"n": 1.5}, "n"),
            ({"n": 2, "reward_sum": float("nan")}, "reward_sum"),
            ({"n": 2, "reward_sum_squares": -1.0}, "reward_sum_squares"),
            ({"n": 0, "reward_sum": 1.0}, "n"),
        ],
    )
    def test_bad_statistics_name_the_field(self, kwargs, field):
        """Impossible statistics raise InvalidArgument naming the bad field."""
        with pytest.raises(InvalidArgument) as info:
            ArmStats(**kwargs)
        assert info.value.field == field


class TestBanditSpec:
    def test_defaults_follow_the_contract(self):
        """The default exploration floor is the contract's 0.01."""
        spec = BanditSpec(BanditAlgorithm.UCB1)
        assert spec.exploration_floor == 0.01

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"exploration_floor": -0.1}, "bandit.exploration_floor"),
            ({"exploration_floor": 1.5}, "bandit.exploration_floor"),
            ({"epsilon": 2.0}, "bandit.epsilon"),
            ({"prior_alpha": 0.0}, "bandit.prior_alpha"),
            ({"prior_beta": float("inf")}, "bandit.prior_beta"),
            ({"top_two_beta": -0.5}, "bandit.top_two_beta"),
            ({"reward_variance": 0.0}, "bandit.reward_variance"),
            ({"burn_in_units": -1}, "bandit.burn_in_units"),
        ],
    )
    def test_bad_values_name_the_field(self, kwargs, field):
        """Each out-of-range setting raises InvalidArgument with its bandit.* path."""
        with pytest.raises(InvalidArgument) as info:
            BanditSpec(BanditAlgorithm.THOMPSON_BERNOULLI, **kwargs)
        assert info.value.field == field

    def test_unknown_algorithm_is_rejected(self):
        """An algorithm name outside the enum raises on bandit.algorithm."""
        with pytest.raises(InvalidArgument) as info:
            BanditSpec("greedy")  # type: ignore[arg-type]
        assert info.value.field == "bandit.algorithm"

    def test_top_two_needs_thompson(self):
        """top_two with UCB1 is rejected: it only has meaning for Thompson sampling."""
        with pytest.raises(InvalidArgument) as info:
            BanditSpec(BanditAlgorithm.UCB1, top_two=True)
        assert info.value.field == "bandit.top_two"

    def test_floor_times_arms_above_one_is_rejected(self):
        """validate_for(k) rejects k · floor > 1 on bandit.exploration_floor."""
        spec = BanditSpec(BanditAlgorithm.UCB1, exploration_floor=0.3)
        spec.validate_for(3)
        with pytest.raises(InvalidArgument) as info:
            spec.validate_for(4)
        assert info.value.field == "bandit.exploration_floor"

    def test_floor_of_exactly_one_over_k_is_allowed(self):
        """A floor of 1/3 with three arms passes despite floating-point rounding."""
        BanditSpec(BanditAlgorithm.UCB1, exploration_floor=1 / 3).validate_for(3)

    def test_no_arms_is_rejected(self):
        """validate_for(0) raises on arms."""
        with pytest.raises(InvalidArgument) as info:
            BanditSpec(BanditAlgorithm.UCB1).validate_for(0)
        assert info.value.field == "arms"


class TestExplorationSpec:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"epsilon": -0.1}, "exploration.epsilon"),
            ({"temperature": 0.0}, "exploration.temperature"),
            ({"uniform_mix": 1.1}, "exploration.uniform_mix"),
            ({"propensity_draws": 10}, "exploration.propensity_draws"),
        ],
    )
    def test_bad_values_name_the_field(self, kwargs, field):
        """Each out-of-range setting raises InvalidArgument with its exploration.* path."""
        with pytest.raises(InvalidArgument) as info:
            ExplorationSpec(ExplorationPolicy.SOFTMAX, **kwargs)
        assert info.value.field == field

    def test_propensity_floor_is_mix_times_share(self):
        """The guaranteed floor is η · m / k, and 1 when every candidate is returned."""
        spec = ExplorationSpec(ExplorationPolicy.SOFTMAX, uniform_mix=0.2)
        assert spec.propensity_floor(10, 1) == pytest.approx(0.02)
        assert spec.propensity_floor(10, 3) == pytest.approx(0.06)
        assert spec.propensity_floor(3, 5) == 1.0
