"""What the decisioning use cases need from the outside: contacts, models, decisions, ids.

Redis adapters in ``ensayo.state`` implement them; tests pass in-memory fakes. The event
log is ``ensayo.events.ports.EventLog`` and the clock ``ensayo.catalog.ports.Clock``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ensayo.decisioning.contacts import ContactReply, ContactRequest
from ensayo.decisioning.learning import ModelParams
from ensayo.decisioning.model import DecisionRecord

__all__ = ["ContactStore", "DecisionStore", "IdFactory", "ModelStore"]

IdFactory = Callable[[str], str]
"""Makes a new decision id for a unit id: random, but the Redis adapters prefix the unit's
hash tag so the decision's record lives in the same Redis Cluster slot as its contacts
(tests inject a deterministic factory)."""


class ContactStore(Protocol):
    """Units' contact histories: check the policies and record deliveries atomically."""

    def settle(self, requests: Sequence[ContactRequest]) -> list[ContactReply]:
        """Settle each request atomically: compare states, and reserve when they agree.

        When the unit's state is the expected one and ``reserve`` is set, the chosen actions
        are recorded, and so is the request's decision ``record`` if it has one (so a record
        exists exactly when its contacts were reserved). Raises ``DependencyUnavailable``
        when the store cannot be reached.
        """
        ...


class ModelStore(Protocol):
    """Versioned model parameters with exactly-once updates per outcome event id."""

    def versions(self, feature_spec: str) -> tuple[int, int]:
        """The Beta model's version and that of the linear model of ``feature_spec``."""
        ...

    def load(self, feature_spec: str, n_features: int) -> ModelParams:
        """Every action's parameters (the linear ones of ``feature_spec`` with ``d`` features)."""
        ...

    def apply_outcome(
        self,
        event_id: str,
        action_key: str,
        reward: float,
        *,
        features: Sequence[float],
        feature_spec: str,
        ridge: float,
        discount: float,
        ttl_s: float,
    ) -> bool:
        """Apply one reward unless ``event_id`` was applied before; True when applied.

        Beta evidence always (the reward clipped into [0, 1], earlier evidence times
        ``discount``); the linear model of ``feature_spec`` too when ``features`` is not
        empty (Sherman-Morrison). The event id is remembered for ``ttl_s`` seconds.
        """
        ...


class DecisionStore(Protocol):
    """Delivered decisions, kept for a while so outcomes can be joined to them."""

    def save(self, records: Sequence[DecisionRecord], ttl_s: float) -> None:
        """Store records, each expiring after ``ttl_s`` seconds."""
        ...

    def get(self, decision_id: str) -> DecisionRecord | None:
        """The record of ``decision_id``, or None when unknown or expired."""
        ...
