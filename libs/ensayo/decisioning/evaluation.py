"""Off-policy evaluation inputs from logged decisions and outcomes (pure helpers).

The analysis service stores ``$decision`` and ``$outcome`` events in SQL; these helpers turn
them into the arrays ``ensayo.stats.evaluate_policy`` (IPS, SNIPS, DR) takes, for a candidate
policy: the logged one, uniform random, value only, or greedy on a Beta model snapshot.
Every candidate respects the marketer's priority tiers, as the logging policy does, so it
never puts mass where the logger could not act.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from ensayo.bandits import ExplorationPolicy, ExplorationSpec
from ensayo.catalog.model import Action
from ensayo.decisioning.engine import LEVER_PREFIX, tier_inclusion
from ensayo.decisioning.learning import ModelParams
from ensayo.errors import InvalidArgument
from ensayo.stats import evaluate_policy
from ensayo.stats.model import PolicyEvaluation

__all__ = [
    "CandidatePolicy",
    "LoggedDecision",
    "OpeArrays",
    "beta_rates",
    "build_arrays",
    "evaluate",
    "parse_decision",
    "target_probabilities",
]

_GREEDY = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.0)
_UNIFORM = ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=1.0)


class CandidatePolicy(StrEnum):
    """The policies ``EvaluatePolicy`` can estimate from the logs."""

    LOGGED = "logged"  # the logging policy itself (weights 1: the logged value)
    RANDOM = "random"  # uniformly random within the priority tiers
    VALUE_ONLY = "value_only"  # value x weight x lever, ignoring predicted rates
    GREEDY = "greedy"  # rate x value x weight x lever on a Beta model snapshot, no exploration


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """What off-policy evaluation needs of one ``$decision`` event.

    ``chosen`` pairs each returned action with its logged propensity, best first. ``slots``
    is how many actions the decision could return: ``max_actions``, or fewer when a
    channel-wide contact policy had fewer left (a target policy gets the same number).
    """

    decision_id: str
    candidates: tuple[str, ...]
    chosen: tuple[tuple[str, float], ...]
    context: Mapping[str, float] = field(default_factory=dict)
    max_actions: int = 1
    holdout: bool = False
    slots: int | None = None  # None: as many as max_actions (logs written before slots were)

    @property
    def returnable(self) -> int:
        """At most this many actions: the slots left, within ``max_actions``."""
        return self.max_actions if self.slots is None else min(self.max_actions, self.slots)


def parse_decision(event: Mapping[str, object]) -> LoggedDecision:
    """Read a ``$decision`` event given as a dict.

    Accepts ``{"decision_id" | "event_id", "properties": {...}}`` or the properties with a
    ``decision_id`` key beside them. Raises ``InvalidArgument`` naming a missing field.
    """
    raw = event.get("properties")
    props: Mapping[str, object] = raw if isinstance(raw, Mapping) else event
    decision_id = event.get("decision_id") or event.get("event_id") or props.get("decision_id")
    if not isinstance(decision_id, str) or not decision_id:
        raise InvalidArgument("decision_id", "required")
    candidates = props.get("candidates")
    chosen = props.get("chosen")
    if not isinstance(candidates, list) or not isinstance(chosen, list):
        raise InvalidArgument("properties", "a $decision needs candidates and chosen lists")
    pairs = []
    for i, item in enumerate(chosen):
        if not isinstance(item, Mapping):
            raise InvalidArgument(f"properties.chosen[{i}]", "must be an object")
        propensity = item.get("propensity")
        if not isinstance(propensity, int | float):
            raise InvalidArgument(f"properties.chosen[{i}].propensity", "must be a number")
        pairs.append((str(item.get("action_key", "")), float(propensity)))
    context = props.get("context")
    max_actions = props.get("max_actions", len(pairs) or 1)
    slots = props.get("slots")
    return LoggedDecision(
        decision_id=decision_id,
        candidates=tuple(str(c) for c in candidates),
        chosen=tuple(pairs),
        context=dict(context) if isinstance(context, Mapping) else {},
        max_actions=int(max_actions) if isinstance(max_actions, int | float) else 1,
        holdout=bool(props.get("holdout", False)),
        slots=int(slots) if isinstance(slots, int | float) else None,
    )


def beta_rates(params: ModelParams, prior: tuple[float, float] = (1.0, 1.0)) -> dict[str, float]:
    """Posterior mean rate of every action with evidence; unknown actions use the prior."""
    a0, b0 = prior
    return {key: (a0 + s) / (a0 + b0 + s + f) for key, (s, f) in params.beta.items()}


def _terms(
    decision: LoggedDecision,
    actions: Mapping[str, Action],
    rates: Mapping[str, float],
    default_rate: float,
    levers: Mapping[str, float] | None,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Per candidate: priority, predicted rate, and value x weight x lever."""
    priorities, rate, multiplier = [], [], []
    for key in decision.candidates:
        action = actions.get(key) or Action(key)
        lever = (levers or {}).get(key, decision.context.get(LEVER_PREFIX + key, 1.0))
        priorities.append(action.priority)
        rate.append(rates.get(key, default_rate))
        multiplier.append(action.value * action.weight * lever)
    return (
        np.array(priorities, dtype=np.int64),
        np.array(rate, dtype=np.float64),
        np.array(multiplier, dtype=np.float64),
    )


def target_probabilities(
    policy: CandidatePolicy,
    decision: LoggedDecision,
    actions: Mapping[str, Action],
    rates: Mapping[str, float],
    *,
    default_rate: float = 0.5,
    levers: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Each candidate's probability of being returned by ``policy`` in this decision.

    ``actions`` are the catalog's (value, weight, priority; an unknown key counts as value
    1, weight 1, priority 0); ``rates`` the Beta snapshot's rates, ``default_rate`` for an
    action without evidence; ``levers`` override the logged ``lever.<key>`` context. Ties
    are split evenly. For ``logged`` the chosen actions keep their logged propensities.
    """
    if policy is CandidatePolicy.LOGGED:
        return dict(decision.chosen)
    if not decision.candidates:
        return {}
    priorities, rate, multiplier = _terms(decision, actions, rates, default_rate, levers)
    m = max(decision.returnable, 1)
    if policy is CandidatePolicy.RANDOM:
        values = tier_inclusion(_UNIFORM, priorities, np.zeros(multiplier.size), m)
    elif policy is CandidatePolicy.VALUE_ONLY:
        values = tier_inclusion(_GREEDY, priorities, multiplier, m)
    else:
        values = tier_inclusion(_GREEDY, priorities, rate * multiplier, m)
    return dict(zip(decision.candidates, values.tolist(), strict=True))


@dataclass(frozen=True, slots=True, eq=False)
class OpeArrays:
    """Parallel arrays, one entry per (decision, returned action), for ``ensayo.stats``.

    ``predicted_rewards`` is the reward model's rate of the logged action and
    ``target_expected_rewards`` ``Σ_a π(a | x)·rate(a) / m`` over the decision's candidates
    (per returned slot, so each of the decision's ``m`` rows carries its share). With one
    action per decision these are the textbook IPS / SNIPS / DR inputs; with more, the
    estimate is the mean reward per returned slot (item-position independence).
    ``skipped`` counts holdout decisions and decisions without actions.
    """

    rewards: NDArray[np.float64]
    propensities: NDArray[np.float64]
    target_probabilities: NDArray[np.float64]
    predicted_rewards: NDArray[np.float64]
    target_expected_rewards: NDArray[np.float64]
    decisions: int
    skipped: int


def _rewards(outcomes: Iterable[Mapping[str, object]]) -> dict[tuple[str, str], float]:
    """Sum of rewards per (decision id, action key) from ``$outcome`` events given as dicts.

    Each needs ``decision_id``, ``value`` (the reward) and ``properties.action_key`` (or an
    ``action_key`` key).
    """
    totals: dict[tuple[str, str], float] = {}
    for i, outcome in enumerate(outcomes):
        props = outcome.get("properties")
        key = (props if isinstance(props, Mapping) else outcome).get("action_key")
        decision_id = outcome.get("decision_id")
        value = outcome.get("value", 1.0)
        if not isinstance(decision_id, str) or not isinstance(key, str):
            raise InvalidArgument(f"outcomes[{i}]", "needs decision_id and action_key")
        if not isinstance(value, int | float):
            raise InvalidArgument(f"outcomes[{i}].value", "must be a number")
        totals[(decision_id, key)] = totals.get((decision_id, key), 0.0) + float(value)
    return totals


def build_arrays(
    decisions: Sequence[LoggedDecision | Mapping[str, object]],
    outcomes: Iterable[Mapping[str, object]],
    policy: CandidatePolicy,
    actions: Mapping[str, Action] | Sequence[Action],
    rates: Mapping[str, float],
    *,
    default_rate: float = 0.5,
    levers: Mapping[str, float] | None = None,
) -> OpeArrays:
    """The IPS / SNIPS / DR inputs for ``policy`` from logged decisions and outcomes.

    ``decisions`` are :class:`LoggedDecision` or ``$decision`` event dicts (see
    :func:`parse_decision`); an action without an outcome has reward 0. ``rates`` is also
    the DR reward model (a Beta snapshot, e.g. :func:`beta_rates`).
    """
    catalog = actions if isinstance(actions, Mapping) else {a.key: a for a in actions}
    totals = _rewards(outcomes)
    cols: list[list[float]] = [[], [], [], [], []]
    used = skipped = 0
    # Logs repeat candidate sets: the target's probabilities depend only on these inputs.
    memo: dict[tuple[object, ...], tuple[dict[str, float], float]] = {}
    for item in decisions:
        decision = item if isinstance(item, LoggedDecision) else parse_decision(item)
        if decision.holdout or not decision.chosen:
            skipped += 1
            continue
        used += 1
        lever_keys = tuple(decision.context.get(LEVER_PREFIX + k) for k in decision.candidates)
        memo_key = (decision.candidates, decision.returnable, lever_keys)
        if policy is CandidatePolicy.LOGGED or memo_key not in memo:
            target = target_probabilities(
                policy, decision, catalog, rates, default_rate=default_rate, levers=levers
            )
            expected = sum(p * rates.get(k, default_rate) for k, p in target.items())
            memo[memo_key] = (target, expected)
        target, expected = memo[memo_key]
        share = expected / len(decision.chosen)
        for key, propensity in decision.chosen:
            predicted = rates.get(key, default_rate)
            cols[0].append(totals.get((decision.decision_id, key), 0.0))
            cols[1].append(propensity)
            cols[2].append(target.get(key, 0.0))
            cols[3].append(predicted)
            # The logged policy's unlogged propensities are unknown; with weights of 1 its
            # DR term is then exactly the logged reward.
            cols[4].append(predicted if policy is CandidatePolicy.LOGGED else share)
    rewards, propensities, targets, q_logged, q_target = (
        np.array(c, dtype=np.float64) for c in cols
    )
    return OpeArrays(rewards, propensities, targets, q_logged, q_target, used, skipped)


def evaluate(
    decisions: Sequence[LoggedDecision | Mapping[str, object]],
    outcomes: Iterable[Mapping[str, object]],
    policy: CandidatePolicy,
    actions: Mapping[str, Action] | Sequence[Action],
    rates: Mapping[str, float],
    *,
    alpha: float = 0.05,
    default_rate: float = 0.5,
    levers: Mapping[str, float] | None = None,
) -> PolicyEvaluation:
    """IPS, SNIPS and DR estimates of ``policy``'s mean reward (``ensayo.stats``)."""
    arrays = build_arrays(
        decisions, outcomes, policy, actions, rates, default_rate=default_rate, levers=levers
    )
    return evaluate_policy(
        arrays.rewards,
        arrays.propensities,
        arrays.target_probabilities,
        predicted_rewards=arrays.predicted_rewards,
        target_expected_rewards=arrays.target_expected_rewards,
        alpha=alpha,
    )
