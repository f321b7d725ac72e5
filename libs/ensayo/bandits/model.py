"""Bandit models: validated specs and per-arm sufficient statistics.

Specs for experiment allocation and for decisioning exploration, separate from the code.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from enum import StrEnum

from ensayo.errors import InvalidArgument

__all__ = [
    "ArmStats",
    "BanditAlgorithm",
    "BanditSpec",
    "ExplorationPolicy",
    "ExplorationSpec",
]


class BanditAlgorithm(StrEnum):
    """How a bandit experiment turns per-arm reward statistics into allocation weights."""

    THOMPSON_BERNOULLI = "thompson_bernoulli"
    THOMPSON_GAUSSIAN = "thompson_gaussian"
    UCB1 = "ucb1"
    EPSILON_GREEDY = "epsilon_greedy"


class ExplorationPolicy(StrEnum):
    """How decisioning turns per-candidate scores into a returned list with propensities."""

    EPSILON_GREEDY = "epsilon_greedy"
    SOFTMAX = "softmax"
    THOMPSON = "thompson"


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Sufficient statistics of one arm's rewards: count, sum and sum of squares.

    Merge two windows (or two replicas' counters) with ``+``. For Bernoulli rewards
    ``reward_sum`` is the number of successes and ``reward_sum_squares`` equals it.
    Raises ``InvalidArgument`` on a negative count, non-finite sums, negative sum of squares
    or non-zero sums with ``n = 0``.
    """

    n: int = 0
    reward_sum: float = 0.0
    reward_sum_squares: float = 0.0

    def __post_init__(self) -> None:
        try:
            n = operator.index(self.n)  # accepts numpy integers from SQL aggregates
        except TypeError:
            raise InvalidArgument("n", f"must be an integer, got {self.n!r}") from None
        if n < 0:
            raise InvalidArgument("n", f"must be non-negative, got {n}")
        object.__setattr__(self, "n", n)
        if not math.isfinite(self.reward_sum):
            raise InvalidArgument("reward_sum", "must be finite")
        if not math.isfinite(self.reward_sum_squares) or self.reward_sum_squares < 0:
            raise InvalidArgument("reward_sum_squares", "must be finite and non-negative")
        if self.n == 0 and (self.reward_sum != 0 or self.reward_sum_squares != 0):
            raise InvalidArgument("n", "is 0 but the reward sums are not")

    def __add__(self, other: ArmStats) -> ArmStats:
        if not isinstance(other, ArmStats):
            return NotImplemented
        return ArmStats(
            self.n + other.n,
            self.reward_sum + other.reward_sum,
            self.reward_sum_squares + other.reward_sum_squares,
        )

    @property
    def mean(self) -> float:
        """Sample mean of the rewards; 0 when ``n = 0`` (callers apply a prior instead)."""
        return self.reward_sum / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Unbiased sample variance (``n - 1`` denominator); 0 when ``n < 2``, never negative."""
        if self.n < 2:
            return 0.0
        centred = self.reward_sum_squares - self.reward_sum * self.reward_sum / self.n
        return max(centred, 0.0) / (self.n - 1)


def _check_probability(field: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidArgument(field, f"must be in [0, 1], got {value!r}")


def _check_positive(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise InvalidArgument(field, f"must be finite and > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class BanditSpec:
    """A bandit experiment's allocation policy, validated on construction.

    - ``exploration_floor``: each arm's minimum share of traffic, in [0, 1]; with ``k`` arms
      it must satisfy ``k · floor ≤ 1`` (checked by :meth:`validate_for`, since ``k`` belongs
      to the experiment, not the spec).
    - ``epsilon``: epsilon-greedy's uniformly spread share, in [0, 1].
    - ``top_two`` / ``top_two_beta``: Russo's (2016) top-two Thompson sampling; the leader
      keeps ``top_two_beta`` of its probability and the rest goes to challengers. Thompson only.
    - ``prior_alpha`` / ``prior_beta``: the Beta prior of Bernoulli Thompson sampling (> 0).
    - ``prior_mean``: the prior mean reward of Gaussian Thompson sampling and the mean that
      epsilon-greedy assumes for an arm without data; ``None`` is the pooled mean of all
      observed rewards (0 when there is none).
    - ``prior_n``: how many observations the Gaussian prior is worth (> 0).
    - ``reward_variance``: the Gaussian reward variance; ``None`` estimates it per arm (pooled
      across arms for arms with fewer than two rewards).
    - ``ucb_scale``: multiplies UCB1's exploration bonus; 1 is Auer et al. (2002), meant for
      rewards in [0, 1].
    - ``burn_in_units``: until the arms hold this many rewards in total, traffic is uniform.

    Every violation raises ``InvalidArgument`` whose field is ``bandit.<name>``.
    """

    algorithm: BanditAlgorithm
    exploration_floor: float = 0.01
    epsilon: float = 0.1
    top_two: bool = False
    top_two_beta: float = 0.5
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    prior_mean: float | None = None
    prior_n: float = 1.0
    reward_variance: float | None = None
    ucb_scale: float = 1.0
    burn_in_units: int = 0

    def __post_init__(self) -> None:
        try:
            BanditAlgorithm(self.algorithm)
        except ValueError:
            raise InvalidArgument(
                "bandit.algorithm", f"unknown algorithm {self.algorithm!r}"
            ) from None
        _check_probability("bandit.exploration_floor", self.exploration_floor)
        _check_probability("bandit.epsilon", self.epsilon)
        _check_probability("bandit.top_two_beta", self.top_two_beta)
        thompson = (BanditAlgorithm.THOMPSON_BERNOULLI, BanditAlgorithm.THOMPSON_GAUSSIAN)
        if self.top_two and self.algorithm not in thompson:
            raise InvalidArgument("bandit.top_two", "applies to Thompson sampling only")
        _check_positive("bandit.prior_alpha", self.prior_alpha)
        _check_positive("bandit.prior_beta", self.prior_beta)
        _check_positive("bandit.prior_n", self.prior_n)
        _check_positive("bandit.ucb_scale", self.ucb_scale)
        if self.prior_mean is not None and not math.isfinite(self.prior_mean):
            raise InvalidArgument("bandit.prior_mean", "must be finite")
        if self.reward_variance is not None:
            _check_positive("bandit.reward_variance", self.reward_variance)
        if self.burn_in_units < 0:
            raise InvalidArgument("bandit.burn_in_units", "must be non-negative")

    def validate_for(self, k: int) -> None:
        """Check the spec against an experiment with ``k`` arms (``k ≥ 1``, ``k · floor ≤ 1``).

        Raises ``InvalidArgument`` naming ``arms`` or ``bandit.exploration_floor``.
        """
        if k < 1:
            raise InvalidArgument("arms", "a bandit needs at least one arm")
        # A tolerance keeps floor = 1/k (e.g. 3 arms at 1/3) legal despite rounding.
        if k * self.exploration_floor > 1.0 + 1e-12:
            raise InvalidArgument(
                "bandit.exploration_floor",
                f"{k} arms x floor {self.exploration_floor} = "
                f"{k * self.exploration_floor:g} exceeds 1",
            )


@dataclass(frozen=True, slots=True)
class ExplorationSpec:
    """How decisioning explores over its ranked candidates, validated on construction.

    - ``policy``: epsilon-greedy, softmax (Plackett-Luce) or Thompson sampling.
    - ``epsilon``: for epsilon-greedy, each slot's chance of a uniform pick, in [0, 1].
    - ``temperature``: softmax's τ (> 0), in score units: lower is greedier.
    - ``uniform_mix``: the floor mixture η in [0, 1]; with probability η the whole list is a
      uniformly random ordered subset, so every candidate's propensity is at least
      ``η · m / k`` for ``m`` returned out of ``k`` (``η / k`` when ``m = 1``).
    - ``propensity_draws``: Monte Carlo draws behind an estimated propensity (Thompson
      sampling, and softmax with more than two slots), ≥ 100.

    Every violation raises ``InvalidArgument`` whose field is ``exploration.<name>``.
    """

    policy: ExplorationPolicy
    epsilon: float = 0.1
    temperature: float = 1.0
    uniform_mix: float = 0.0
    propensity_draws: int = 2000

    def __post_init__(self) -> None:
        try:
            ExplorationPolicy(self.policy)
        except ValueError:
            raise InvalidArgument(
                "exploration.policy", f"unknown policy {self.policy!r}"
            ) from None
        _check_probability("exploration.epsilon", self.epsilon)
        _check_probability("exploration.uniform_mix", self.uniform_mix)
        _check_positive("exploration.temperature", self.temperature)
        if self.propensity_draws < 100:
            raise InvalidArgument("exploration.propensity_draws", "must be at least 100")

    def propensity_floor(self, k: int, max_actions: int) -> float:
        """Return the least propensity of ``k`` candidates when ``max_actions`` are returned."""
        if k <= 0:
            return 0.0
        m = min(max_actions, k)
        return 1.0 if m == k else self.uniform_mix * m / k
