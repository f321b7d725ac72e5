"""Decisioning's domain model: queries, decisions, outcomes, records and settings.

Frozen dataclasses and enums only; no protobuf, no Redis.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ensayo.bandits import ExplorationPolicy, ExplorationSpec, FeatureSpec
from ensayo.catalog.model import JsonObject
from ensayo.errors import InvalidArgument

__all__ = [
    "DEFAULT_DECISION_TTL_S",
    "MAX_ACTIONS",
    "MAX_BATCH_UNITS",
    "MAX_CONTEXT_FEATURES",
    "MAX_FEATURES",
    "MAX_UNIT_ID",
    "BatchQuery",
    "DecideQuery",
    "Decision",
    "DecisionRecord",
    "DecisioningSettings",
    "FailureMode",
    "ModelKind",
    "Outcome",
    "OutcomeResult",
    "RankedAction",
    "Stage",
    "Subject",
]

MAX_ACTIONS = 100
"""Most actions one decision may return (``max_actions`` is 1 to this)."""
MAX_BATCH_UNITS = 100_000
"""Most units one DecideBatch may carry; more is RESOURCE_EXHAUSTED."""
MAX_CONTEXT_FEATURES = 1000
"""Most entries in a request's ``context``."""
MAX_FEATURES = 64
"""Most features (bias included) a linear model may use; its parameters grow as ``d²``."""
MAX_UNIT_ID = 512
"""Longest unit id, in characters."""
DEFAULT_DECISION_TTL_S = 7 * 24 * 3600.0
"""How long a decision stays known to ReportOutcome (seconds); later outcomes are NOT_FOUND."""


class ModelKind(StrEnum):
    """The response model behind the predicted rate of each action."""

    BETA = "beta"  # per-action Beta-Bernoulli, no context
    LINEAR = "linear"  # per-action ridge regression over FeatureSpec features (LinUCB / LinTS)


class FailureMode(StrEnum):
    """What a delivered decision does when Redis cannot be reached."""

    CLOSED = "closed"  # refuse with UNAVAILABLE: caps and logs are never skipped (default)
    OPEN = "open"  # decide without caps; logging is best effort (warned, not retried)


class Stage(StrEnum):
    """Where a candidate action left the funnel, or that it was ranked / chosen."""

    NOT_LIVE = "not_live"
    WRONG_PLACEMENT = "wrong_placement"
    INELIGIBLE = "ineligible"
    NO_CONSENT = "no_consent"
    EXCLUDED = "excluded"
    CAPPED = "capped"
    NO_SLOT = "no_slot"
    HOLDOUT = "holdout"
    RANKED = "ranked"
    CHOSEN = "chosen"


@dataclass(frozen=True, slots=True)
class Subject:
    """The unit a decision is for: its id and attributes (never logged in clear)."""

    id: str
    attributes: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DecideQuery:
    """One ``Decide``: a unit, a channel and placement, and request-time context."""

    unit: Subject
    channel: str
    placement: str = ""
    max_actions: int = 1
    context: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    explain: bool = False


@dataclass(frozen=True, slots=True)
class BatchQuery:
    """One ``DecideBatch``: many units, one channel, shared context, per-action budgets.

    ``budgets`` maps an action key to the most units that may get it in this batch.
    """

    units: tuple[Subject, ...]
    channel: str
    placement: str = ""
    max_actions: int = 1
    context: dict[str, float] = field(default_factory=dict)
    budgets: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class RankedAction:
    """One returned action: its score, propensity and expected value, best first.

    ``propensity`` is the probability that the policy put the action in the list (what
    off-policy evaluation divides by); the model's predicted rate is in ``explanation``.
    """

    action_key: str
    score: float
    propensity: float
    expected_value: float
    payload: JsonObject = field(default_factory=dict)
    explanation: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one unit; ``explanation`` (with explain) has every candidate's stage."""

    decision_id: str
    unit_id: str
    actions: tuple[RankedAction, ...] = ()
    holdout: bool = False
    holdout_key: str = ""
    policy_version: int = 0
    explanation: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A reward for one action of a decision; ``event_id`` makes it idempotent."""

    decision_id: str
    action_key: str
    reward: float
    event_id: str


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    """Whether the outcome's event id had been applied already (then nothing changed)."""

    duplicate: bool


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """What ReportOutcome needs of a delivered decision, kept in Redis with a TTL.

    ``features`` is the context vector of a linear model (empty for Beta), ``feature_spec``
    the id of that model's feature spec (see :meth:`DecisioningSettings.feature_spec_id`).
    """

    decision_id: str
    unit_id: str
    time: datetime
    action_keys: tuple[str, ...] = ()
    features: tuple[float, ...] = ()
    feature_spec: str = ""
    holdout_key: str = ""


def _check(field_name: str, ok: bool, reason: str) -> None:
    if not ok:
        raise InvalidArgument(field_name, reason)


@dataclass(frozen=True, slots=True)
class DecisioningSettings:
    """How decisioning scores, explores, learns and degrades; validated on construction.

    - ``model``: Beta-Bernoulli per action, or a linear model over ``features``.
    - ``exploration``: the exploration policy (``ensayo.bandits.ExplorationSpec``); with a
      linear model, Thompson sampling is linear Thompson sampling and the other policies
      rank LinUCB scores (bonus ``ucb_alpha``).
    - ``features``: the linear model's features (bias first); context keys and attributes.
    - ``ts_scale``: linear Thompson sampling's ``v`` (posterior scale).
    - ``ridge``: the linear model's λ; ``prior_alpha`` / ``prior_beta``: the Beta prior of a
      cold action; ``discount``: Beta evidence decay per outcome of the action, in (0, 1].
    - ``on_redis_down``: fail closed (UNAVAILABLE) or open (see :class:`FailureMode`).
    - ``decision_ttl_s``: how long a decision accepts outcomes; ``model_refresh_s``: how often
      replicas reload model parameters.
    - ``log_flush_s``: ``$decision`` events are shipped from a background thread in batches
      gathered for this long (0: appended inside each call; see ``ensayo.events.shipper``).
    """

    model: ModelKind = ModelKind.BETA
    exploration: ExplorationSpec = field(
        default_factory=lambda: ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.1)
    )
    features: FeatureSpec = field(default_factory=lambda: FeatureSpec(("bias",)))
    ucb_alpha: float = 1.0
    ts_scale: float = 1.0
    ridge: float = 1.0
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    discount: float = 1.0
    on_redis_down: FailureMode = FailureMode.CLOSED
    decision_ttl_s: float = DEFAULT_DECISION_TTL_S
    model_refresh_s: float = 1.0
    log_flush_s: float = 0.005

    def __post_init__(self) -> None:
        def positive(name: str, value: float) -> None:
            _check(name, math.isfinite(value) and value > 0, "must be finite and > 0")

        _check("ucb_alpha", math.isfinite(self.ucb_alpha) and self.ucb_alpha >= 0, "must be >= 0")
        _check("ts_scale", math.isfinite(self.ts_scale) and self.ts_scale >= 0, "must be >= 0")
        for name in ("ridge", "prior_alpha", "prior_beta", "decision_ttl_s", "model_refresh_s"):
            positive(name, getattr(self, name))
        _check("discount", 0.0 < self.discount <= 1.0, "must be in (0, 1]")
        _check(
            "log_flush_s",
            math.isfinite(self.log_flush_s) and 0.0 <= self.log_flush_s <= 1.0,
            "must be in [0, 1] seconds",
        )
        _check(
            "features",
            1 <= len(self.features) <= MAX_FEATURES,
            f"must name 1 to {MAX_FEATURES} features",
        )

    def feature_spec_id(self) -> str:
        """A short digest of the features and ridge: a change starts a fresh linear model."""
        text = "\n".join(self.features.names) + f"\nridge={self.ridge!r}"
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
