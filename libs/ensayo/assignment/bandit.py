"""Bandit experiments: allocation versions, when the next one is due, and what it holds.

Pure glue between catalog experiments and ``ensayo.bandits``; the allocator use case does
the I/O. See ``docs/assignment.md`` ("Bandits").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ensayo.assignment.model import BanditAllocation
from ensayo.bandits import ArmStats, BanditAlgorithm, BanditSpec, allocate, apply_floor, rng_for
from ensayo.catalog.model import (
    Allocation,
    BanditConfig,
    Experiment,
    ExperimentState,
    MetricKind,
    Snapshot,
)

__all__ = [
    "Credit",
    "RewardRule",
    "allocation_for",
    "bandit_spec",
    "burned_in",
    "initial_allocation",
    "is_due",
    "next_allocation",
    "reward_rules",
]


def _config(exp: Experiment) -> BanditConfig:
    return exp.bandit if exp.bandit is not None else BanditConfig()


def bandit_spec(exp: Experiment) -> BanditSpec:
    """The ``ensayo.bandits`` spec of a bandit experiment.

    Burn-in is handled here (the allocation stays at version 0 until enough units are
    enrolled), so the spec's own ``burn_in_units`` is 0.
    """
    config = _config(exp)
    algorithm = config.algorithm.value if config.algorithm else BanditAlgorithm.THOMPSON_BERNOULLI
    return BanditSpec(
        algorithm=BanditAlgorithm(algorithm), exploration_floor=config.exploration_floor
    )


def initial_allocation(exp: Experiment) -> BanditAllocation:
    """Version 0: the experiment's own normalised weights with the exploration floor applied."""
    keys = tuple(v.key for v in exp.variants)
    weights = exp.weights
    if weights:
        floored = apply_floor(
            np.asarray(weights, dtype=np.float64), _config(exp).exploration_floor
        )
        weights = tuple(float(w) for w in floored)
    return BanditAllocation(exp.key, 0, keys, weights)


def allocation_for(exp: Experiment, stored: BanditAllocation | None) -> BanditAllocation:
    """The allocation to bucket with: ``stored`` if it fits the experiment, else version 0.

    ``stored`` fits when it has the experiment's variant keys, in order, and weights summing
    to 1; when it does not (the variants changed), its version number is kept with the
    version-0 weights until the allocator publishes a new one.
    """
    keys = tuple(v.key for v in exp.variants)
    if (
        stored is not None
        and stored.variant_keys == keys
        and len(stored.weights) == len(keys)
        and all(math.isfinite(w) and w >= 0 for w in stored.weights)
        and abs(math.fsum(stored.weights) - 1.0) <= 1e-9
    ):
        return stored
    initial = initial_allocation(exp)
    if stored is not None:  # keep counting versions up even when the variants changed
        return BanditAllocation(exp.key, stored.version, keys, initial.weights, stored.computed_at)
    return initial


def is_due(exp: Experiment, current: BanditAllocation | None, now: datetime) -> bool:
    """Whether ``update_period_s`` has passed since ``current`` was computed.

    True when there is no allocation, or it has no start time yet.
    """
    if current is None or current.computed_at is None:
        return True
    return (now - current.computed_at).total_seconds() >= _config(exp).update_period_s


def burned_in(exp: Experiment, arms: Sequence[ArmStats]) -> bool:
    """Whether the arms hold ``burn_in_units`` enrolled units in total (no update before)."""
    return sum(arm.n for arm in arms) >= _config(exp).burn_in_units


def next_allocation(
    exp: Experiment,
    current: BanditAllocation | None,
    arms: Sequence[ArmStats],
    now: datetime,
) -> BanditAllocation:
    """The next version: ``allocate`` over the arms' statistics, every arm at the floor or above.

    The generator is seeded from ``allocation:{key}:{version}``, so any replica computing the
    same version from the same statistics gets the same weights (``seed_key`` records it).
    """
    version = (current.version if current is not None else 0) + 1
    seed_key = f"allocation:{exp.key}:{version}"
    weights = allocate(bandit_spec(exp), arms, rng_for(seed_key))
    keys = tuple(v.key for v in exp.variants)
    return BanditAllocation(
        exp.key, version, keys, tuple(float(w) for w in weights), now, seed_key
    )


@dataclass(frozen=True, slots=True)
class RewardRule:
    """Which events reward a running bandit experiment, and how.

    ``conversion``: the arm's reward sum grows by 1 the first time a unit has the event
    (Bernoulli rewards); otherwise (mean, ratio) by the event's value.
    """

    experiment_key: str
    event_name: str
    conversion: bool
    variant_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Credit:
    """One reward to add to one arm, exactly once per ``event_id``."""

    experiment_key: str
    variant_key: str
    unit_id: str
    event_id: str
    value: float
    conversion: bool


def reward_rules(snapshot: Snapshot) -> dict[str, list[RewardRule]]:
    """Running bandit experiments by the event name of their reward metric."""
    metrics = {m.key: m for m in snapshot.metrics}
    rules: dict[str, list[RewardRule]] = {}
    for exp in snapshot.experiments:
        if exp.state is not ExperimentState.RUNNING or exp.allocation is not Allocation.BANDIT:
            continue
        metric = metrics.get(_config(exp).reward_metric)
        if metric is None or not metric.event_name:
            continue
        rules.setdefault(metric.event_name, []).append(
            RewardRule(
                exp.key,
                metric.event_name,
                metric.kind is MetricKind.CONVERSION,
                tuple(v.key for v in exp.variants),
            )
        )
    return rules
