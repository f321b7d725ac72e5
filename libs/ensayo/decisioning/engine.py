"""The decision funnel as pure functions: validate, screen, score, choose, explain.

Screening (eligibility, consent, exclusions) runs per unit over a channel's compiled
actions; scoring is one numpy expression over every candidate (and every unit of a batch);
choosing explores within priority tiers with ``ensayo.bandits.select_batch``, so each
returned action's propensity is the policy's real probability. See ``docs/decisioning.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from ensayo.bandits import (
    MAX_MAGNITUDE,
    BetaParams,
    ExplorationPolicy,
    ExplorationSpec,
    LinearModel,
    ScoreSampler,
    beta_sampler,
    expected_rates,
    inclusion_probabilities,
    lin_ts_sampler,
    lin_ucb_scores,
    rng_for,
    select_batch,
)
from ensayo.decisioning.compiled import ChannelActions
from ensayo.decisioning.learning import ModelView
from ensayo.decisioning.model import (
    MAX_ACTIONS,
    MAX_BATCH_UNITS,
    MAX_CONTEXT_FEATURES,
    MAX_UNIT_ID,
    BatchQuery,
    DecideQuery,
    DecisioningSettings,
    Stage,
    Subject,
)
from ensayo.errors import InvalidArgument, ResourceExhausted

__all__ = [
    "LEVER_PREFIX",
    "POLICY_VERSION_BASE",
    "Choice",
    "SamplerFor",
    "Scored",
    "choose",
    "consented",
    "levers",
    "policy_version",
    "score_actions",
    "screen",
    "spend",
    "thompson_sampler",
    "tier_inclusion",
    "validate_batch",
    "validate_decide",
]

LEVER_PREFIX = "lever."
"""A context entry ``lever.<action_key>`` multiplies that action's score (a request lever)."""
POLICY_VERSION_BASE = 10**9
"""``policy_version = snapshot_version · 10⁹ + model_version mod 10⁹``."""

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
_Array = TypeVar("_Array", NDArray[np.intp], NDArray[np.float64])


# --- validation --------------------------------------------------------------------------


def _check_unit(unit: Subject, path: str) -> None:
    if not unit.id:
        raise InvalidArgument(f"{path}.id", "required")
    if len(unit.id) > MAX_UNIT_ID:
        raise InvalidArgument(f"{path}.id", f"must be at most {MAX_UNIT_ID} characters")
    if "\x00" in unit.id:  # logged in $decision, which SQL (PostgreSQL) could not store
        raise InvalidArgument(f"{path}.id", "must not contain NUL characters")


def _check_common(channel: str, max_actions: int, context: Mapping[str, float]) -> None:
    if not channel:
        raise InvalidArgument("channel", "required")
    if not 1 <= max_actions <= MAX_ACTIONS:
        raise InvalidArgument("max_actions", f"must be 1 to {MAX_ACTIONS}, got {max_actions}")
    if len(context) > MAX_CONTEXT_FEATURES:
        raise InvalidArgument("context", f"at most {MAX_CONTEXT_FEATURES} entries")
    for key, value in context.items():
        if not key:
            raise InvalidArgument("context", "keys must be non-empty")
        if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # false for nan too
            raise InvalidArgument(
                f"context[{key!r}]", f"must be finite, within ±{MAX_MAGNITUDE:g}"
            )
        if key.startswith(LEVER_PREFIX) and value < 0:
            raise InvalidArgument(f"context[{key!r}]", "a lever must be >= 0")


def validate_decide(query: DecideQuery) -> None:
    """Raise ``InvalidArgument`` naming the first bad field of a ``Decide``."""
    _check_unit(query.unit, "unit")
    _check_common(query.channel, query.max_actions, query.context)


def validate_batch(query: BatchQuery) -> None:
    """Raise for a bad ``DecideBatch``: all or nothing, naming the item (``units[3].id``).

    More than ``MAX_BATCH_UNITS`` units is ``ResourceExhausted``; none is invalid.
    """
    if len(query.units) > MAX_BATCH_UNITS:
        raise ResourceExhausted(
            "units", f"at most {MAX_BATCH_UNITS} units per call, got {len(query.units)}"
        )
    if not query.units:
        raise InvalidArgument("units", "at least one unit is required")
    _check_common(query.channel, query.max_actions, query.context)
    for i, unit in enumerate(query.units):
        _check_unit(unit, f"units[{i}]")
    for key, budget in query.budgets.items():
        if budget < 0:
            raise InvalidArgument(f"budgets[{key!r}]", "must be >= 0")


# --- screening ---------------------------------------------------------------------------


def consented(attributes: Mapping[str, object], channel: str) -> bool:
    """False only when ``attributes.consent.<channel>`` is the boolean ``false``.

    Consent is opt-out by convention: a missing ``consent`` object or channel entry means
    no objection is recorded. Send ``{"consent": {"email": false}}`` to exclude a unit.
    """
    consent = attributes.get("consent")
    return not (isinstance(consent, Mapping) and consent.get(channel) is False)


def screen(
    actions: ChannelActions,
    available: BoolArray,
    attributes: Mapping[str, object],
    stages: list[str | None] | None = None,
) -> BoolArray:
    """The unit's candidates: available, eligible, consented and not excluded.

    ``stages`` (with explain; prefilled with the availability reasons) receives why each
    dropped action left the funnel.
    """
    if not consented(attributes, actions.channel):
        if stages is not None:
            for j in np.flatnonzero(available).tolist():
                stages[j] = Stage.NO_CONSENT
        return np.zeros_like(available)
    if not actions.conditions:
        return available.copy()
    matches = actions.matches(attributes)
    has = actions.eligibility >= 0
    eligible = ~has | matches[np.where(has, actions.eligibility, 0)]
    excluded = (actions.exclusions & matches).any(axis=1)
    mask: BoolArray = available & eligible & ~excluded
    if stages is not None:
        for j in np.flatnonzero(available & ~eligible).tolist():
            stages[j] = Stage.INELIGIBLE
        for j in np.flatnonzero(available & eligible & excluded).tolist():
            stages[j] = Stage.EXCLUDED
    return mask


# --- scoring -----------------------------------------------------------------------------


def levers(context: Mapping[str, float], keys: Sequence[str]) -> FloatArray:
    """Each action's request lever: ``context['lever.<key>']``, 1 when absent."""
    if not any(name.startswith(LEVER_PREFIX) for name in context):
        return np.ones(len(keys))
    return np.array([context.get(LEVER_PREFIX + k, 1.0) for k in keys], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class Scored:
    """Scores of ``n`` units x ``K`` channel actions.

    ``rate`` is the predicted response rate (Beta mean, or ``xᵀθ``); ``rank`` what the
    model ranks by (the rate, or LinUCB's upper bound); ``multiplier`` is
    ``value x weight x lever``; ``score = rank x multiplier`` is what arbitration uses.
    """

    rate: FloatArray
    rank: FloatArray
    multiplier: FloatArray

    @property
    def score(self) -> FloatArray:
        """The arbitration score ``rank x value x weight x lever`` (``n x K``)."""
        product: FloatArray = self.rank * self.multiplier
        return product


def score_actions(
    actions: ChannelActions,
    view: ModelView,
    lever: FloatArray,
    settings: DecisioningSettings,
    features: FloatArray | None,
    n: int,
) -> Scored:
    """Score every action for ``n`` units in one vectorised pass (Pega's P·V·W·L).

    Beta: the rate is the posterior mean, the same for every unit. Linear: the rate is
    ``xᵀθ_a`` for each unit's features (``n x d``) and, unless the policy is Thompson
    sampling, the ranking adds LinUCB's bonus ``ucb_alpha·sqrt(xᵀA⁻¹x)``.
    """
    multiplier = actions.values * actions.weights * lever
    if view.linear is None or features is None:
        rate = np.broadcast_to(expected_rates(view.beta), (n, len(actions)))
        return Scored(rate, rate, multiplier)
    assert view.theta is not None  # noqa: S101 - built together with the linear model
    rate = features @ view.theta.T
    if settings.exploration.policy is ExplorationPolicy.THOMPSON:
        return Scored(rate, rate, multiplier)
    if features.shape[0] == 1:
        # Decide's hot path: LinUCB's xᵀθ + alpha·sqrt(xᵀA⁻¹x) with the view's cached θ and
        # quadratic form, two matrix-vector products, several times cheaper than
        # lin_ucb_scores (which re-derives θ); a unit test holds the two equal.
        x = features[0]
        rows, cols, q = view.quadratic_form
        quadratic = np.maximum(q @ (x[rows] * x[cols]), 0.0)
        rank = rate + settings.ucb_alpha * np.sqrt(quadratic)[None, :]
    else:
        rank = lin_ucb_scores(view.linear, features, settings.ucb_alpha)
    return Scored(rate, rank, multiplier)


def _scaled(sampler: ScoreSampler, factor: FloatArray) -> ScoreSampler:
    def sample(rng: np.random.Generator, draws: int) -> FloatArray:
        values: FloatArray = sampler(rng, draws) * factor
        return values

    return sample


def thompson_sampler(
    view: ModelView,
    multiplier: FloatArray,
    settings: DecisioningSettings,
    x: FloatArray | None,
    idx: NDArray[np.intp],
) -> ScoreSampler:
    """The posterior sampler of ``score`` for the candidates ``idx`` (one unit's ``x``)."""
    if view.linear is None or x is None:
        sub = BetaParams(view.beta.alpha[idx], view.beta.beta[idx])
        return beta_sampler(sub, multiplier[idx])
    lin = view.linear
    model = LinearModel(lin.a_inv[idx], lin.b[idx], lin.counts[idx], lin.ridge)
    return _scaled(lin_ts_sampler(model, x, settings.ts_scale), multiplier[idx])


# --- choosing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Choice:
    """One unit's returned actions (channel indices, best first) and their propensities.

    ``standard_errors`` are 0 when ``exact`` (Monte Carlo estimates otherwise).
    """

    indices: NDArray[np.intp]
    propensities: FloatArray
    standard_errors: FloatArray
    exact: bool
    explored: bool

    @classmethod
    def empty(cls) -> Choice:
        """No action (no candidate, or no slot left)."""
        none = np.zeros(0)
        return cls(none.astype(np.intp), none, none, exact=True, explored=False)


SamplerFor = Callable[[int, NDArray[np.intp]], ScoreSampler]
"""``sampler_for(row, candidate_indices)``: a Thompson sampler for one unit's candidates."""


def choose(
    settings: DecisioningSettings,
    priorities: NDArray[np.int64],
    scores: FloatArray,
    masks: BoolArray,
    slots: Sequence[int],
    decision_ids: Sequence[str],
    sampler_for: SamplerFor | None = None,
) -> list[Choice]:
    """Pick each unit's list: priority tiers first, exploration within a tier.

    Tiers are filled from the highest ``priority`` down; a tier with no more candidates
    than the slots left is taken whole (propensity 1), otherwise ``select_batch`` explores
    over its candidates with the remaining slots. Because tier membership is fixed by the
    candidates, each action's propensity is exactly its inclusion probability within its
    tier. Units with the same candidates and slots are chosen together; every unit draws
    from ``rng_for(decision_id)``, so a unit gets the same list alone or in a batch.
    """
    n = masks.shape[0]
    spec = settings.exploration
    thompson = spec.policy is ExplorationPolicy.THOMPSON
    results: list[Choice] = [Choice.empty()] * n
    for (_, m), rows in _groups(masks, slots).items():
        candidates = np.flatnonzero(masks[rows[0]])
        rngs = [rng_for(decision_ids[r]) for r in rows]
        picked: list[list[NDArray[np.intp]]] = [[] for _ in rows]
        props: list[list[FloatArray]] = [[] for _ in rows]
        errors: list[list[FloatArray]] = [[] for _ in rows]
        explored = np.zeros(len(rows), dtype=bool)
        exact = True
        left = m
        ranks = priorities[candidates]
        tiers = sorted(set(ranks.tolist()), reverse=True)
        for tier in tiers:
            if left <= 0:
                break
            idx = candidates if len(tiers) == 1 else candidates[ranks == tier]
            take = min(left, idx.size)
            samplers = None
            if thompson and take < idx.size:
                assert sampler_for is not None  # noqa: S101 - callers pass it for Thompson
                samplers = [sampler_for(r, idx) for r in rows]
            elif thompson:  # everything is taken: ranked by the posterior mean instead
                samplers = [_mean_sampler(scores[r, idx]) for r in rows]
            if n == 1:  # a 1-D index: numpy's fast path, which keeps the GIL
                tier_scores = scores[rows[0]][idx][None, :]
            else:
                tier_scores = scores[np.ix_(np.array(rows), idx)]
            sel = select_batch(spec, tier_scores, take, rngs, sampler=samplers)
            for j in range(len(rows)):
                picked[j].append(idx[sel.indices[j]])
                props[j].append(sel.propensities[j])
                errors[j].append(sel.standard_errors[j])
            explored |= sel.explored
            exact = exact and sel.exact
            left -= take
        for j, r in enumerate(rows):
            results[r] = Choice(
                _joined(picked[j]),
                _joined(props[j]),
                _joined(errors[j]),
                exact,
                bool(explored[j]),
            )
    return results


def _groups(masks: BoolArray, slots: Sequence[int]) -> dict[tuple[bytes, int], list[int]]:
    """Rows with the same candidates and slots (and at least one of each), chosen together."""
    if masks.shape[0] == 1:  # Decide: nothing to group
        return {(b"", int(slots[0])): [0]} if slots[0] > 0 and masks[0].any() else {}
    groups: dict[tuple[bytes, int], list[int]] = {}
    for r in range(masks.shape[0]):
        if slots[r] > 0 and masks[r].any():
            groups.setdefault((masks[r].tobytes(), int(slots[r])), []).append(r)
    return groups


def _joined(parts: list[_Array]) -> _Array:
    """The tiers' parts of one list, in order (most lists come from a single tier)."""
    joined: _Array = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return joined


def tier_inclusion(
    spec: ExplorationSpec,
    priorities: NDArray[np.int64],
    scores: FloatArray,
    max_actions: int,
    rng: np.random.Generator | None = None,
    *,
    sampler: ScoreSampler | None = None,
) -> FloatArray:
    """Every candidate's probability of being returned by :func:`choose`'s tiered policy.

    ``priorities`` and ``scores`` hold one entry per candidate. Whole tiers get 1, the tier
    that runs out of slots gets ``inclusion_probabilities`` over its candidates, lower
    tiers 0. Exact for epsilon-greedy and softmax with at most two slots in the split tier;
    otherwise a Monte Carlo estimate from ``rng`` (Thompson needs ``sampler`` over the
    candidates, and is only supported when a single tier is split).
    """
    out = np.zeros(scores.size)
    left = max_actions
    for tier in sorted(set(priorities.tolist()), reverse=True):
        if left <= 0:
            break
        idx = np.flatnonzero(priorities == tier)
        if idx.size <= left:
            out[idx] = 1.0
        else:
            sub = None if sampler is None else _columns(sampler, idx)
            out[idx] = inclusion_probabilities(spec, scores[idx], left, rng, sampler=sub).values
        left -= idx.size
    return out


def _columns(sampler: ScoreSampler, idx: NDArray[np.intp]) -> ScoreSampler:
    def sample(rng: np.random.Generator, draws: int) -> FloatArray:
        values: FloatArray = sampler(rng, draws)[:, idx]
        return values

    return sample


def _mean_sampler(values: FloatArray) -> ScoreSampler:
    def sample(_rng: np.random.Generator, draws: int) -> FloatArray:
        return np.broadcast_to(values, (draws, values.size)).copy()

    return sample


def spend(choices: Sequence[Choice], remaining: FloatArray) -> tuple[int, FloatArray]:
    """Walk ``choices`` in order against per-action budgets ``remaining`` (inf: none).

    Returns how many leading choices fit and the budgets after them; the next one (if any)
    would take an action whose budget is spent, so it must be chosen again without it.
    """
    left = remaining.copy()
    for row, choice in enumerate(choices):
        if np.any(left[choice.indices] < 1):
            return row, left
        left[choice.indices] -= 1
    return len(choices), left


def policy_version(snapshot_version: int, model_version: int) -> int:
    """One number for the snapshot and model that decided (see ``POLICY_VERSION_BASE``)."""
    return snapshot_version * POLICY_VERSION_BASE + model_version % POLICY_VERSION_BASE
