"""Beta-Bernoulli scoring of decisioning actions.

Posterior parameters per action, expected rates, vectorised draws and the discounted update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ensayo.errors import InvalidArgument

__all__ = [
    "BetaParams",
    "ScoreSampler",
    "beta_prior",
    "beta_sampler",
    "expected_rates",
    "gaussian_sampler",
    "sample_rates",
    "update_beta",
]

ScoreSampler: TypeAlias = Callable[[np.random.Generator, int], NDArray[np.float64]]
"""``sampler(rng, draws)`` returns a ``draws x k`` matrix of independent score draws for ``k``
candidates; Thompson-sampling exploration calls it with the decision's generator."""


@dataclass(frozen=True, slots=True, eq=False)
class BetaParams:
    """Beta(alpha, beta) posteriors of ``k`` actions' success rates, as two parallel vectors.

    Both must be 1-D, of equal length, finite and > 0; ``InvalidArgument`` otherwise. The
    arrays are treated as immutable: every function returns new ones.
    """

    alpha: NDArray[np.float64]
    beta: NDArray[np.float64]

    def __post_init__(self) -> None:
        alpha = np.asarray(self.alpha, dtype=np.float64)
        beta = np.asarray(self.beta, dtype=np.float64)
        if alpha.ndim != 1 or alpha.shape != beta.shape:
            raise InvalidArgument("alpha", "alpha and beta must be vectors of equal length")
        for name, values in (("alpha", alpha), ("beta", beta)):
            if not np.all(np.isfinite(values) & (values > 0)):
                raise InvalidArgument(name, "must be finite and > 0")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)

    def __len__(self) -> int:
        return int(self.alpha.size)

    def take(self, indices: ArrayLike) -> BetaParams:
        """Select the actions at ``indices`` (e.g. the eligible candidates), in order."""
        idx = np.asarray(indices, dtype=np.intp)
        return BetaParams(self.alpha[idx], self.beta[idx])


def beta_prior(k: int, alpha: float = 1.0, beta: float = 1.0) -> BetaParams:
    """``k`` identical Beta(alpha, beta) priors; Beta(1, 1) is uniform on [0, 1]."""
    if k < 0:
        raise InvalidArgument("k", "must be non-negative")
    return BetaParams(np.full(k, float(alpha)), np.full(k, float(beta)))


def expected_rates(params: BetaParams) -> NDArray[np.float64]:
    """Posterior mean success rate ``alpha / (alpha + beta)`` of each action, in (0, 1)."""
    rates: NDArray[np.float64] = params.alpha / (params.alpha + params.beta)
    return rates


def sample_rates(
    params: BetaParams, rng: np.random.Generator, draws: int | None = None
) -> NDArray[np.float64]:
    """Posterior draws of every action's rate in one call: shape ``(k,)``, or ``(draws, k)``."""
    size = params.alpha.shape if draws is None else (draws, len(params))
    samples: NDArray[np.float64] = rng.beta(params.alpha, params.beta, size=size)
    return samples


def update_beta(
    params: BetaParams,
    successes: ArrayLike,
    failures: ArrayLike,
    *,
    discount: float = 1.0,
    prior: BetaParams | None = None,
) -> BetaParams:
    """Posterior after ``successes`` and ``failures`` per action (vectors of length ``k``).

    ``alpha' = alpha0 + gamma · (alpha - alpha0) + successes``, likewise for beta: with
    ``gamma = discount < 1`` the evidence so far decays geometrically toward the prior
    ``(alpha0, beta0)`` once per call,
    so the model follows drifting rates (discounted Thompson sampling, Raj and Kalyani 2017,
    "Taming non-stationary bandits: a Bayesian approach"); ``gamma = 1`` is the plain conjugate
    update. Fractional rewards in [0, 1] count as ``r`` successes and ``1 - r`` failures.
    ``prior`` defaults to Beta(1, 1). Raises ``InvalidArgument`` on negative or non-finite
    counts, mismatched lengths or ``discount ∉ (0, 1]``.
    """
    k = len(params)
    s = np.broadcast_to(np.asarray(successes, dtype=np.float64), (k,))
    f = np.broadcast_to(np.asarray(failures, dtype=np.float64), (k,))
    for name, values in (("successes", s), ("failures", f)):
        if not np.all(np.isfinite(values) & (values >= 0)):
            raise InvalidArgument(name, "must be finite and non-negative")
    if not 0.0 < discount <= 1.0:
        raise InvalidArgument("discount", f"must be in (0, 1], got {discount!r}")
    base = beta_prior(k) if prior is None else prior
    if len(base) != k:
        raise InvalidArgument("prior", f"has {len(base)} actions, expected {k}")
    alpha = base.alpha + discount * (params.alpha - base.alpha) + s
    beta = base.beta + discount * (params.beta - base.beta) + f
    return BetaParams(alpha, beta)


def beta_sampler(params: BetaParams, values: ArrayLike | None = None) -> ScoreSampler:
    """Make a Thompson sampler of ``rate x value`` per candidate (``values`` default to 1)."""
    scale = None if values is None else np.asarray(values, dtype=np.float64)

    def sample(rng: np.random.Generator, draws: int) -> NDArray[np.float64]:
        rates = sample_rates(params, rng, draws)
        return rates if scale is None else rates * scale

    return sample


def gaussian_sampler(mean: ArrayLike, sd: ArrayLike) -> ScoreSampler:
    """Make a Thompson sampler of independent ``N(mean_i, sd_i²)`` scores (LinTS marginals)."""
    mu = np.asarray(mean, dtype=np.float64)
    sigma = np.asarray(sd, dtype=np.float64)

    def sample(rng: np.random.Generator, draws: int) -> NDArray[np.float64]:
        noise: NDArray[np.float64] = rng.standard_normal((draws, mu.size))
        return mu + sigma * noise

    return sample
