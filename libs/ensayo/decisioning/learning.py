"""Decision models' parameters and their per-channel views for scoring.

The store keeps evidence per action key: Beta successes and failures (the prior is added
here, so a cold action starts from it), and each linear model's ``count, b, A⁻¹``. A view
aligns them with one channel's actions, cold actions at the prior.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ensayo.bandits import BetaParams, LinearModel, coefficients, linear_prior

__all__ = [
    "LinearParams",
    "ModelParams",
    "ModelView",
    "beta_reward",
    "model_view",
]


@dataclass(frozen=True, slots=True, eq=False)
class LinearParams:
    """One action's linear model: observations, ``b = Σ r·x`` and ``A⁻¹`` (``d x d``)."""

    count: float
    b: NDArray[np.float64]
    a_inv: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ModelParams:
    """Every action's evidence as the store holds it, with each model's version.

    ``beta[key] = (successes, failures)`` (discounted); ``linear`` belongs to the linear
    model of the current feature spec. A version rises with every outcome applied.
    """

    beta_version: int = 0
    beta: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    linear_version: int = 0
    linear: Mapping[str, LinearParams] = field(default_factory=dict)


def beta_reward(reward: float) -> float:
    """A reward as a Beta success fraction: clipped into [0, 1] (1 = a response)."""
    return min(max(reward, 0.0), 1.0)


@dataclass(frozen=True, eq=False)
class ModelView:
    """Parameters of one channel's actions, in channel order, ready for vectorised scoring.

    ``beta`` always (it also feeds off-policy evaluation); ``linear`` and its coefficients
    ``theta`` (``K x d``) only for a linear model.
    """

    beta: BetaParams
    linear: LinearModel | None
    theta: NDArray[np.float64] | None
    version: int

    @functools.cached_property
    def quadratic_form(self) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
        """``(rows, cols, Q)`` with ``xᵀA⁻¹_a x = Q[a] · (x[rows] * x[cols])`` for every action.

        The upper triangle of ``A⁻¹ + A⁻¹ᵀ`` (the diagonal once): one matrix-vector product
        over ``d(d+1)/2`` columns gives every action's LinUCB width, a fraction of the
        memory a stacked ``A⁻¹ @ x`` reads. Built on first use, once per view.
        """
        assert self.linear is not None  # noqa: S101 - linear views only
        a_inv = self.linear.a_inv
        rows, cols = np.triu_indices(a_inv.shape[1])
        both = a_inv[:, rows, cols] + a_inv[:, cols, rows]
        q = np.where(rows == cols, both / 2, both)
        return rows, cols, np.ascontiguousarray(q)


def model_view(
    params: ModelParams,
    keys: Sequence[str],
    *,
    prior: tuple[float, float],
    linear_features: int = 0,
    ridge: float = 1.0,
) -> ModelView:
    """Align ``params`` with ``keys``; actions without evidence start at the prior.

    ``linear_features = d > 0`` builds the linear model too (a stored action with another
    ``d`` is treated as cold); its version is then the view's version, else Beta's.
    """
    alpha0, beta0 = prior
    evidence = np.array([params.beta.get(k, (0.0, 0.0)) for k in keys], dtype=np.float64)
    evidence = evidence.reshape(len(keys), 2)
    beta = BetaParams(alpha0 + evidence[:, 0], beta0 + evidence[:, 1])
    if linear_features <= 0:
        return ModelView(beta, None, None, params.beta_version)
    d = linear_features
    model = linear_prior(len(keys), d, ridge)
    for i, key in enumerate(keys):
        stored = params.linear.get(key)
        if stored is None or stored.b.shape != (d,) or stored.a_inv.shape != (d, d):
            continue
        model.a_inv[i] = stored.a_inv
        model.b[i] = stored.b
        model.counts[i] = math.floor(stored.count)
    return ModelView(beta, model, coefficients(model), params.linear_version)
