"""Off-policy evaluation of a decision policy from logged decisions: IPS, SNIPS and DR.

The estimators are those of the Open Bandit Pipeline (Saito et al. 2020), worked out from their
definitions; intervals are normal approximations (a bootstrap over decisions is the usual
alternative when rewards are heavy-tailed or the sample is small).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from ensayo.errors import InvalidArgument
from ensayo.stats._lift import check_alpha, finite_or_none
from ensayo.stats.model import Estimator, PolicyEstimate, PolicyEvaluation, StatWarning

__all__ = [
    "doubly_robust",
    "effective_sample_size",
    "evaluate_policy",
    "importance_weights",
    "ips",
    "snips",
]

FloatArray = NDArray[np.float64]


def _vector(field: str, values: ArrayLike, size: int | None = None) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidArgument(field, "must be one-dimensional")
    if size is not None and array.size != size:
        raise InvalidArgument(field, "must have one entry per logged decision")
    if not np.all(np.isfinite(array)):
        raise InvalidArgument(field, "must be finite")
    return array


def importance_weights(propensities: ArrayLike, target_probabilities: ArrayLike) -> FloatArray:
    """``w_i = π_e(a_i | x_i) / π_b(a_i | x_i)`` for each logged decision.

    ``propensities`` are the logging policy's probabilities of the logged actions (in (0, 1]:
    an action logged with propensity 0 cannot be reweighted) and ``target_probabilities`` the
    evaluated policy's probabilities of the same actions (in [0, 1]). Raises
    ``InvalidArgument`` naming the array otherwise.
    """
    logged = _vector("propensities", propensities)
    target = _vector("target_probabilities", target_probabilities, logged.size)
    if np.any(logged <= 0) or np.any(logged > 1):
        raise InvalidArgument("propensities", "must be in (0, 1]")
    if np.any(target < 0) or np.any(target > 1):
        raise InvalidArgument("target_probabilities", "must be in [0, 1]")
    return target / logged


def effective_sample_size(weights: ArrayLike) -> float | None:
    """Kish's effective sample size ``(Σw)² / Σw²`` of importance weights.

    ``n`` when every weight is equal, far less when a few decisions carry the estimate; a
    small value warns that IPS-type estimates are noisy. ``None`` with no weight or all 0.
    """
    w = _vector("weights", weights)
    squares = float(np.dot(w, w))
    return float(w.sum() ** 2 / squares) if squares > 0 else None


def _estimate(
    estimator: Estimator, value: float, terms: FloatArray, alpha: float
) -> PolicyEstimate:
    """Point value with a normal interval from the per-decision influence ``terms``."""
    if terms.size < 2:
        return PolicyEstimate(estimator, finite_or_none(value), None, None, None)
    se = float(np.std(terms, ddof=1) / math.sqrt(terms.size))
    half = float(sps.norm.ppf(1.0 - alpha / 2.0)) * se
    return PolicyEstimate(
        estimator,
        finite_or_none(value),
        finite_or_none(value - half),
        finite_or_none(value + half),
        finite_or_none(se),
    )


def ips(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probabilities: ArrayLike,
    *,
    alpha: float = 0.05,
) -> PolicyEstimate:
    """Inverse propensity scoring: ``V̂ = mean(w_i·r_i)`` (Horvitz & Thompson 1952).

    Unbiased when the logging propensities are right and positive wherever the target acts.
    Interval: ``V̂ ± z·sd(w·r)/√n``. With no decision the value is ``None``; with one, the
    interval is. Raises ``InvalidArgument`` for bad arrays (see :func:`importance_weights`)
    or ``alpha``.
    """
    check_alpha(alpha)
    w = importance_weights(propensities, target_probabilities)
    r = _vector("rewards", rewards, w.size)
    if r.size == 0:
        return PolicyEstimate(Estimator.IPS, None, None, None, None)
    terms = w * r
    return _estimate(Estimator.IPS, float(terms.mean()), terms, alpha)


def snips(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probabilities: ArrayLike,
    *,
    alpha: float = 0.05,
) -> PolicyEstimate:
    """Self-normalised IPS: ``V̂ = Σw_i·r_i / Σw_i`` (Swaminathan & Joachims 2015).

    Slightly biased, much lower variance than IPS when weights are large. Interval from the
    delta method: the influence of decision ``i`` is ``w_i·(r_i - V̂) / mean(w)``. ``None``
    when every weight is 0 (the target never takes a logged action).
    """
    check_alpha(alpha)
    w = importance_weights(propensities, target_probabilities)
    r = _vector("rewards", rewards, w.size)
    mean_w = float(w.mean()) if w.size else 0.0
    if mean_w <= 0:
        return PolicyEstimate(Estimator.SNIPS, None, None, None, None)
    value = float(np.dot(w, r) / w.sum())
    return _estimate(Estimator.SNIPS, value, w * (r - value) / mean_w, alpha)


def doubly_robust(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probabilities: ArrayLike,
    predicted_rewards: ArrayLike,
    target_expected_rewards: ArrayLike,
    *,
    alpha: float = 0.05,
) -> PolicyEstimate:
    """Doubly robust: ``V̂ = mean(q̂(x_i, π_e) + w_i·(r_i - q̂(x_i, a_i)))`` (Dudík et al. 2011).

    ``predicted_rewards[i]`` is the reward model's ``q̂(x_i, a_i)`` for the logged action and
    ``target_expected_rewards[i]`` its ``Σ_a π_e(a | x_i)·q̂(x_i, a)`` under the evaluated
    policy. Unbiased if either the propensities or the reward model are right. Interval:
    ``V̂ ± z·sd(terms)/√n``.
    """
    check_alpha(alpha)
    w = importance_weights(propensities, target_probabilities)
    r = _vector("rewards", rewards, w.size)
    q_logged = _vector("predicted_rewards", predicted_rewards, w.size)
    q_target = _vector("target_expected_rewards", target_expected_rewards, w.size)
    if r.size == 0:
        return PolicyEstimate(Estimator.DR, None, None, None, None)
    terms = q_target + w * (r - q_logged)
    return _estimate(Estimator.DR, float(terms.mean()), terms, alpha)


def evaluate_policy(
    rewards: ArrayLike,
    propensities: ArrayLike,
    target_probabilities: ArrayLike,
    *,
    predicted_rewards: ArrayLike | None = None,
    target_expected_rewards: ArrayLike | None = None,
    alpha: float = 0.05,
) -> PolicyEvaluation:
    """Every estimator at once, plus the effective sample size and the logged policy's value.

    DR is included only when both reward-model arrays are given. ``logged_value`` is the
    mean logged reward. With no decision every figure is ``None``, with a warning; so is
    SNIPS when the target gives every logged action probability 0.
    """
    check_alpha(alpha)
    w = importance_weights(propensities, target_probabilities)
    r = _vector("rewards", rewards, w.size)
    estimates = [
        ips(r, propensities, target_probabilities, alpha=alpha),
        snips(r, propensities, target_probabilities, alpha=alpha),
    ]
    if predicted_rewards is not None and target_expected_rewards is not None:
        estimates.append(
            doubly_robust(
                r,
                propensities,
                target_probabilities,
                predicted_rewards,
                target_expected_rewards,
                alpha=alpha,
            )
        )
    warnings: list[str] = []
    if r.size == 0:
        warnings.append(StatWarning.NO_LOGGED_DECISIONS)
    elif r.size < 2:
        warnings.append(StatWarning.TOO_FEW_DECISIONS)
    elif not np.any(w > 0):
        warnings.append(StatWarning.ZERO_TARGET_WEIGHT)
    return PolicyEvaluation(
        estimates=tuple(estimates),
        effective_sample_size=effective_sample_size(w) if w.size else None,
        logged_value=float(r.mean()) if r.size else None,
        n=int(r.size),
        warnings=tuple(str(x) for x in warnings),
    )
