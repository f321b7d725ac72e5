"""Allocation weights for bandit experiments.

Per-arm reward statistics in, traffic shares out, every arm at or above the exploration floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from ensayo.bandits.model import ArmStats, BanditAlgorithm, BanditSpec
from ensayo.errors import InvalidArgument

__all__ = [
    "allocate",
    "apply_floor",
    "probability_best",
    "top_two_weights",
    "ucb1_index",
]

_Allocator = Callable[
    [BanditSpec, Sequence[ArmStats], np.random.Generator, int], NDArray[np.float64]
]


def allocate(
    spec: BanditSpec,
    arms: Sequence[ArmStats],
    rng: np.random.Generator,
    draws: int = 10_000,
) -> NDArray[np.float64]:
    """Traffic share of each arm for the next update period, summing to 1.

    The algorithm's raw weights (see ``docs/bandits.md``) go through :func:`apply_floor`, so
    every arm gets at least ``spec.exploration_floor``. Until the arms hold
    ``spec.burn_in_units`` rewards in total the raw weights are uniform. Thompson sampling
    estimates each arm's probability of being best from ``draws`` posterior draws (its
    Monte Carlo standard error is at most ``0.5 / sqrt(draws)``); the other algorithms do not
    use ``rng``. Arms without data get the prior, never zero traffic.

    Raises ``InvalidArgument`` when there are no arms, ``k · floor > 1`` or ``draws < 1``.
    """
    spec.validate_for(len(arms))
    if draws < 1:
        raise InvalidArgument("draws", "must be at least 1")
    k = len(arms)
    if sum(arm.n for arm in arms) < spec.burn_in_units:
        raw = np.full(k, 1.0 / k)
    else:
        raw = _ALLOCATORS[spec.algorithm](spec, arms, rng, draws)
    return apply_floor(raw, spec.exploration_floor)


def apply_floor(weights: NDArray[np.float64], floor: float) -> NDArray[np.float64]:
    """Mix weights with the uniform share so each of the ``k`` arms gets at least ``floor``.

    ``w'_i = floor + (1 - k · floor) · w_i`` after normalising ``w`` to sum 1: an affine map,
    so it keeps the order of the arms (and their ties), sums to exactly 1, gives an arm
    with ``w_i = 0`` exactly ``floor``, and is the identity at ``floor = 0``. Raises
    ``InvalidArgument`` on negative, non-finite or all-zero weights, or ``k · floor > 1``.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise InvalidArgument("weights", "must be a non-empty vector")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InvalidArgument("weights", "must be finite and non-negative")
    total = float(w.sum())
    if total <= 0:
        raise InvalidArgument("weights", "must not all be zero")
    k = w.size
    if not (math.isfinite(floor) and floor >= 0.0 and k * floor <= 1.0 + 1e-12):
        raise InvalidArgument("exploration_floor", f"must be in [0, 1/{k}], got {floor!r}")
    spare = max(1.0 - k * floor, 0.0)
    return floor + spare * (w / total)


def probability_best(samples: NDArray[np.float64]) -> NDArray[np.float64]:
    """Share of rows (draws) in which each column (arm) is the largest; ties split evenly.

    ``samples`` is a ``draws x k`` matrix of posterior draws; the result sums to 1.
    """
    s = np.asarray(samples, dtype=np.float64)
    is_max = s == s.max(axis=1, keepdims=True)
    share = is_max / is_max.sum(axis=1, keepdims=True)
    result: NDArray[np.float64] = share.mean(axis=0)
    return result


def top_two_weights(
    p_best: NDArray[np.float64],
    beta: float,
    runner_up: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Allocation of top-two Thompson sampling given each arm's probability of being best.

    Russo (2016), "Simple Bayesian algorithms for best-arm identification": the leader ``j``
    (drawn with ``p_j``) is played with probability ``beta``, else a challenger, the best arm of
    fresh draws conditioned to differ from ``j`` (probability ``p_i / (1 - p_j)``). So
    ``ψ_i = beta · p_i + (1 - beta) · p_i · Σ_{j≠i} p_j / (1 - p_j)``. When one arm has
    ``p_j = 1`` the conditioning is empty; its challenger is then drawn from ``runner_up``
    (how often each arm comes second, normalised over the other arms; uniform when ``None``
    or all zero). The result sums to 1.
    """
    p = np.asarray(p_best, dtype=np.float64)
    k = p.size
    if k == 1:
        return np.ones(1)
    rest = 1.0 - p
    certain = rest <= 1e-12
    fallback = np.ones(k) if runner_up is None else np.asarray(runner_up, dtype=np.float64)
    # Row j: the challenger distribution over arms i when j leads.
    safe_rest = np.where(certain, 1.0, rest)
    challenger = np.where(certain[:, None], fallback[None, :], p[None, :] / safe_rest[:, None])
    np.fill_diagonal(challenger, 0.0)
    row_sums = challenger.sum(axis=1, keepdims=True)
    uniform = (1.0 - np.eye(k)) / (k - 1)
    challenger = np.where(
        row_sums > 0, challenger / np.where(row_sums > 0, row_sums, 1.0), uniform
    )
    weights: NDArray[np.float64] = beta * p + (1.0 - beta) * (p @ challenger)
    normalised: NDArray[np.float64] = weights / weights.sum()
    return normalised


def ucb1_index(arms: Sequence[ArmStats], scale: float = 1.0) -> NDArray[np.float64]:
    """UCB1 index ``x̄_i + scale · sqrt(2 ln N / n_i)`` of each arm; ``+inf`` when ``n_i = 0``.

    Auer, Cesa-Bianchi and Fischer (2002), "Finite-time analysis of the multiarmed bandit
    problem", fig. 1, with ``N`` the total number of plays; ``scale = 1`` is the paper's
    bonus for rewards in [0, 1]. An unplayed arm's infinite index is the paper's
    "play each machine once" initialisation.
    """
    n = np.array([arm.n for arm in arms], dtype=np.float64)
    sums = np.array([arm.reward_sum for arm in arms], dtype=np.float64)
    total = float(n.sum())
    played = n > 0
    safe_n = np.where(played, n, 1.0)
    bonus = scale * np.sqrt(2.0 * math.log(max(total, 1.0)) / safe_n)
    index: NDArray[np.float64] = np.where(played, sums / safe_n + bonus, np.inf)
    return index


def _split_ties(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """All mass to the largest value(s), split evenly among ties."""
    best = values == values.max()
    result: NDArray[np.float64] = best / best.sum()
    return result


def _thompson_bernoulli(
    spec: BanditSpec, arms: Sequence[ArmStats], rng: np.random.Generator, draws: int
) -> NDArray[np.float64]:
    n = np.array([arm.n for arm in arms], dtype=np.float64)
    # Rewards are in [0, 1], so successes lie in [0, n]; a stray duplicate is clipped.
    successes = np.clip([arm.reward_sum for arm in arms], 0.0, n)
    alpha = spec.prior_alpha + successes
    beta = spec.prior_beta + (n - successes)
    samples = rng.beta(alpha, beta, size=(draws, len(arms)))
    return _thompson_weights(spec, samples)


def _pooled_mean(arms: Sequence[ArmStats]) -> float:
    total = sum(arm.n for arm in arms)
    return sum(arm.reward_sum for arm in arms) / total if total else 0.0


def _thompson_gaussian(
    spec: BanditSpec, arms: Sequence[ArmStats], rng: np.random.Generator, draws: int
) -> NDArray[np.float64]:
    # Normal likelihood with a plug-in variance sigma_i² and a conjugate N(m0, sigma_i² / n0) prior
    # on the mean: the posterior is N((n0·m0 + S_i) / (n0 + n_i), sigma_i² / (n0 + n_i)).
    n = np.array([arm.n for arm in arms], dtype=np.float64)
    sums = np.array([arm.reward_sum for arm in arms], dtype=np.float64)
    prior_mean = _pooled_mean(arms) if spec.prior_mean is None else spec.prior_mean
    variance = _reward_variances(spec, arms)
    post_n = spec.prior_n + n
    post_mean = (spec.prior_n * prior_mean + sums) / post_n
    post_sd = np.sqrt(variance / post_n)
    samples = post_mean + post_sd * rng.standard_normal((draws, len(arms)))
    return _thompson_weights(spec, samples)


def _reward_variances(spec: BanditSpec, arms: Sequence[ArmStats]) -> NDArray[np.float64]:
    """Per-arm variance when it has two rewards or more, else the pooled within-arm one."""
    k = len(arms)
    if spec.reward_variance is not None:
        return np.full(k, spec.reward_variance)
    within = sum(arm.variance * (arm.n - 1) for arm in arms if arm.n >= 2)
    dof = sum(arm.n - 1 for arm in arms if arm.n >= 2)
    pooled = within / dof if dof > 0 and within > 0 else 1.0
    own = np.array([arm.variance if arm.n >= 2 else 0.0 for arm in arms])
    return np.where(own > 0, own, pooled)


def _thompson_weights(spec: BanditSpec, samples: NDArray[np.float64]) -> NDArray[np.float64]:
    p_best = probability_best(samples)
    if not spec.top_two or samples.shape[1] < 2:
        return p_best
    second = np.argpartition(-samples, 1, axis=1)[:, 1]
    runner_up = np.bincount(second, minlength=samples.shape[1]).astype(np.float64)
    return top_two_weights(p_best, spec.top_two_beta, runner_up)


def _ucb1(
    spec: BanditSpec, arms: Sequence[ArmStats], rng: np.random.Generator, draws: int
) -> NDArray[np.float64]:
    del rng, draws  # deterministic
    return _split_ties(ucb1_index(arms, spec.ucb_scale))


def _epsilon_greedy(
    spec: BanditSpec, arms: Sequence[ArmStats], rng: np.random.Generator, draws: int
) -> NDArray[np.float64]:
    del rng, draws  # deterministic
    prior_mean = _pooled_mean(arms) if spec.prior_mean is None else spec.prior_mean
    means = np.array([arm.mean if arm.n else prior_mean for arm in arms], dtype=np.float64)
    k = len(arms)
    return spec.epsilon / k + (1.0 - spec.epsilon) * _split_ties(means)


_ALLOCATORS: dict[BanditAlgorithm, _Allocator] = {
    BanditAlgorithm.THOMPSON_BERNOULLI: _thompson_bernoulli,
    BanditAlgorithm.THOMPSON_GAUSSIAN: _thompson_gaussian,
    BanditAlgorithm.UCB1: _ucb1,
    BanditAlgorithm.EPSILON_GREEDY: _epsilon_greedy,
}
