"""Pure bandit algorithms for experiments and decisioning.

Allocation weights for bandit experiments; per-action scoring and exploration with exact
propensities for decisioning. No I/O; randomness is always injected.
"""

from __future__ import annotations

from ensayo.bandits.allocation import (
    allocate,
    apply_floor,
    probability_best,
    top_two_weights,
    ucb1_index,
)
from ensayo.bandits.contextual import (
    BIAS,
    MAX_MAGNITUDE,
    FeatureSpec,
    LinearModel,
    coefficients,
    featurize,
    featurize_batch,
    lin_ts_sample,
    lin_ts_sampler,
    lin_ucb_scores,
    linear_prior,
    predict,
    update,
    update_batch,
    update_inplace,
)
from ensayo.bandits.exploration import (
    BatchSelection,
    Propensities,
    Selection,
    inclusion_probabilities,
    rng_for,
    seed_for,
    select,
    select_batch,
)
from ensayo.bandits.model import (
    ArmStats,
    BanditAlgorithm,
    BanditSpec,
    ExplorationPolicy,
    ExplorationSpec,
)
from ensayo.bandits.scoring import (
    BetaParams,
    ScoreSampler,
    beta_prior,
    beta_sampler,
    expected_rates,
    gaussian_sampler,
    sample_rates,
    update_beta,
)

__all__ = [
    "MAX_MAGNITUDE",
    # experiment allocation
    "ArmStats",
    "BanditAlgorithm",
    "BanditSpec",
    "allocate",
    "apply_floor",
    "probability_best",
    "top_two_weights",
    "ucb1_index",
    # per-action Beta-Bernoulli scoring
    "BetaParams",
    "ScoreSampler",
    "beta_prior",
    "beta_sampler",
    "expected_rates",
    "gaussian_sampler",
    "sample_rates",
    "update_beta",
    # linear contextual bandits
    "BIAS",
    "FeatureSpec",
    "LinearModel",
    "coefficients",
    "featurize",
    "featurize_batch",
    "lin_ts_sample",
    "lin_ts_sampler",
    "lin_ucb_scores",
    "linear_prior",
    "predict",
    "update",
    "update_batch",
    "update_inplace",
    # exploration with propensities
    "BatchSelection",
    "ExplorationPolicy",
    "ExplorationSpec",
    "Propensities",
    "Selection",
    "inclusion_probabilities",
    "rng_for",
    "seed_for",
    "select",
    "select_batch",
]
