"""In-memory fakes of decisioning's ports, and a small world to decide in.

The integration tier runs the same port contract against these and the Redis adapters, so
the fakes cannot drift from production.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from ensayo.bandits import linear_prior, update_inplace
from ensayo.catalog.model import Action, ContactPolicy, Holdout, Snapshot
from ensayo.decisioning.contacts import (
    Contact,
    ContactReply,
    ContactRequest,
    count_contacts,
    derive_state,
    member,
    parse_member,
)
from ensayo.decisioning.holder import ModelHolder
from ensayo.decisioning.learning import LinearParams, ModelParams, beta_reward
from ensayo.decisioning.model import DecisioningSettings
from ensayo.decisioning.usecases import DecisioningUseCases
from ensayo.errors import DependencyUnavailable, FailedPrecondition

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Ids:
    """Decision ids d-0, d-1, ... (deterministic, so choices are reproducible)."""

    def __init__(self, prefix: str = "d") -> None:
        self._counter = itertools.count()
        self._prefix = prefix
        self._lock = threading.Lock()

    def __call__(self, _unit_id: str = "") -> str:
        with self._lock:
            return f"{self._prefix}-{next(self._counter)}"


class Snapshots:
    """A settable snapshot (``current`` raises FailedPrecondition while there is none)."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.snapshot = snapshot

    @property
    def current(self) -> Snapshot:
        if self.snapshot is None:
            raise FailedPrecondition("no catalog snapshot loaded yet")
        return self.snapshot


class Down:
    """Mixin switch: when ``down`` is set every call raises DependencyUnavailable."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise DependencyUnavailable("redis", "fake outage")


@dataclass
class FakeContactStore(Down):
    """``ContactStore`` in memory, with the rules of ``ensayo.decisioning.contacts``."""

    contacts: dict[str, dict[str, float]] = field(default_factory=dict)  # unit -> member -> t
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0
    records: FakeDecisionStore | None = None  # where records reserved with contacts go

    def settle(self, requests):
        self._check()
        replies = []
        with self.lock:
            self.calls += 1
            for request in requests:
                replies.append(self._one(request))
        return replies

    def _one(self, request: ContactRequest) -> ContactReply:
        now = request.now.timestamp()
        # Time at millisecond resolution, like the Lua script.
        now = np.floor(now * 1000) / 1000
        stored = self.contacts.setdefault(request.unit_id, {})
        entries = [Contact(t, *parse_member(m)) for m, t in stored.items()]
        counts = count_contacts(request.policies, entries, now)
        state = derive_state(request.policies, counts, request.watched, request.max_actions)
        matched = state == request.expected
        if matched and request.reserve:
            for key in request.chosen:
                stored[member(request.decision_id, request.channel, key)] = now
            if request.record is not None and self.records is not None:
                self.records.records[request.record.decision_id] = request.record
        return ContactReply(state, tuple(counts), matched)


@dataclass
class FakeModelStore(Down):
    """``ModelStore`` in memory: Beta evidence and Sherman-Morrison via ensayo.bandits."""

    beta: dict[str, tuple[float, float]] = field(default_factory=dict)
    linear: dict[str, dict[str, LinearParams]] = field(default_factory=dict)
    versions_: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def versions(self, feature_spec):
        self._check()
        return self.versions_.get("beta", 0), self.versions_.get(feature_spec, 0)

    def load(self, feature_spec, n_features):
        self._check()
        with self.lock:
            linear = {
                k: v
                for k, v in self.linear.get(feature_spec, {}).items()
                if v.b.shape == (n_features,)
            }
            return ModelParams(
                self.versions_.get("beta", 0),
                dict(self.beta),
                self.versions_.get(feature_spec, 0),
                linear,
            )

    def apply_outcome(
        self, event_id, action_key, reward, *, features, feature_spec, ridge, discount, ttl_s
    ):
        self._check()
        with self.lock:
            if event_id in self.seen:
                return False
            self.seen.add(event_id)
            s, f = self.beta.get(action_key, (0.0, 0.0))
            r = beta_reward(reward)
            self.beta[action_key] = (discount * s + r, discount * f + (1 - r))
            self.versions_["beta"] = self.versions_.get("beta", 0) + 1
            if feature_spec and len(features):
                d = len(features)
                models = self.linear.setdefault(feature_spec, {})
                old = models.get(action_key)
                model = linear_prior(1, d, ridge)
                if old is not None:
                    model.a_inv[0], model.b[0], model.counts[0] = old.a_inv, old.b, old.count
                update_inplace(model, 0, np.asarray(features), reward)
                models[action_key] = LinearParams(
                    float(model.counts[0]), model.b[0].copy(), model.a_inv[0].copy()
                )
                self.versions_[feature_spec] = self.versions_.get(feature_spec, 0) + 1
            return True


@dataclass
class FakeDecisionStore(Down):
    """``DecisionStore`` in memory (TTL ignored)."""

    records: dict = field(default_factory=dict)

    def save(self, records, ttl_s):
        self._check()
        for record in records:
            self.records[record.decision_id] = record

    def get(self, decision_id):
        self._check()
        return self.records.get(decision_id)


@dataclass
class FakeEventLog(Down):
    """``EventLog`` in memory, de-duplicating by event id."""

    events: list = field(default_factory=list)
    ids: set = field(default_factory=set)

    def append(self, events):
        self._check()
        flags = []
        for event in events:
            new = event.event_id not in self.ids
            if new:
                self.ids.add(event.event_id)
                self.events.append(event)
            flags.append(new)
        return flags


@dataclass
class World:
    """Use cases wired to fakes, with handles on every fake."""

    usecases: DecisioningUseCases
    snapshots: Snapshots
    contacts: FakeContactStore
    models: FakeModelStore
    holder: ModelHolder
    decisions: FakeDecisionStore
    events: FakeEventLog
    clock: Clock
    ids: Ids


def world(
    snapshot: Snapshot | None,
    settings: DecisioningSettings | None = None,
    *,
    contacts=None,
    models=None,
    decisions=None,
    events=None,
    ids=None,
    decision_log=None,
) -> World:
    """Use cases over fakes (any of which may be replaced, e.g. by a Redis adapter)."""
    settings = settings or DecisioningSettings()
    snapshots = Snapshots(snapshot)
    contacts = contacts if contacts is not None else FakeContactStore()
    models = models if models is not None else FakeModelStore()
    decisions = decisions if decisions is not None else FakeDecisionStore()
    events = events if events is not None else FakeEventLog()
    if isinstance(contacts, FakeContactStore) and isinstance(decisions, FakeDecisionStore):
        contacts.records = decisions
    holder = ModelHolder(models, settings.feature_spec_id(), len(settings.features))
    clock, ids = Clock(), ids or Ids()
    usecases = DecisioningUseCases(
        snapshots=snapshots,
        models=holder,
        model_store=models,
        contacts=contacts,
        decisions=decisions,
        events=events,
        clock=clock,
        ids=ids,
        settings=settings,
        decision_log=decision_log,
    )
    return World(usecases, snapshots, contacts, models, holder, decisions, events, clock, ids)


def actions(n: int, channel: str = "email", **overrides) -> tuple[Action, ...]:
    """``n`` actions a0..a{n-1} with values 1..n."""
    return tuple(
        Action(key=f"a{i}", channel=channel, value=float(i + 1), **overrides) for i in range(n)
    )


def snapshot(
    acts=(),
    policies: tuple[ContactPolicy, ...] = (),
    holdouts: tuple[Holdout, ...] = (),
    version: int = 1,
) -> Snapshot:
    """A snapshot with the given actions, contact policies and holdouts."""
    return Snapshot(
        version=version,
        actions=tuple(acts),
        contact_policies=tuple(policies),
        holdouts=tuple(holdouts),
    )
