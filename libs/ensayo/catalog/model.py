"""Catalog definitions as frozen dataclasses.

What experiments, holdouts, layers, metrics, actions and contact policies are, independent of
protobuf and SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

# One definition each: the catalog names the algorithms the bandit library implements and the
# metric kinds the statistics library analyses.
from ensayo.bandits.model import BanditAlgorithm
from ensayo.stats.model import MetricKind

__all__ = [
    "Action",
    "Allocation",
    "AuditOperation",
    "AuditRecord",
    "BanditAlgorithm",
    "BanditConfig",
    "CLASS_OF",
    "ContactPolicy",
    "Definition",
    "Experiment",
    "ExperimentState",
    "Holdout",
    "JsonObject",
    "KIND_OF",
    "Kind",
    "Layer",
    "LayerRange",
    "Metric",
    "MetricKind",
    "Snapshot",
    "Variant",
]

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = dict[str, "JsonValue"]


class Kind(StrEnum):
    """The kinds of catalog object; also their names in the audit log and in SQL."""

    EXPERIMENT = "experiment"
    HOLDOUT = "holdout"
    LAYER = "layer"
    METRIC = "metric"
    ACTION = "action"
    CONTACT_POLICY = "contact_policy"


class ExperimentState(StrEnum):
    """Lifecycle of an experiment."""

    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class Allocation(StrEnum):
    """Fixed weights, or weights a bandit recomputes."""

    FIXED = "fixed"
    BANDIT = "bandit"


class AuditOperation(StrEnum):
    """What a write did."""

    CREATE = "create"
    UPDATE = "update"
    SET_STATE = "set_state"


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm; ``weight`` is relative (normalised across variants)."""

    key: str
    weight: float = 1.0
    payload: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LayerRange:
    """The [start, end) slice of a layer's hash space an experiment owns."""

    start: float = 0.0
    end: float = 0.0


@dataclass(frozen=True, slots=True)
class BanditConfig:
    """Bandit settings of an experiment with bandit allocation."""

    algorithm: BanditAlgorithm | None = None
    reward_metric: str = ""
    exploration_floor: float = 0.01
    update_period_s: float = 3600.0
    burn_in_units: int = 0


@dataclass(frozen=True, slots=True)
class Experiment:
    """An A/B/n test or bandit; the first variant is the control."""

    key: str
    variants: tuple[Variant, ...] = ()
    name: str = ""
    description: str = ""
    unit_type: str = ""
    coverage: float = 1.0
    salt: str = ""
    layer: str = ""
    layer_range: LayerRange | None = None
    holdouts: tuple[str, ...] = ()
    targeting: JsonObject = field(default_factory=dict)
    forced: dict[str, str] = field(default_factory=dict)
    sticky: bool = False
    allocation: Allocation = Allocation.FIXED
    bandit: BanditConfig | None = None
    metrics: tuple[str, ...] = ()
    state: ExperimentState = ExperimentState.DRAFT
    version: int = 0
    update_time: datetime | None = None

    @property
    def seed(self) -> str:
        """The hashing seed: the salt, else the key (as GrowthBook uses the key)."""
        return self.salt or self.key

    @property
    def weights(self) -> tuple[float, ...]:
        """Variant weights normalised to sum 1."""
        total = sum(v.weight for v in self.variants)
        return tuple(v.weight / total for v in self.variants) if total > 0 else ()


@dataclass(frozen=True, slots=True)
class Holdout:
    """A reusable population kept out of the experiments (and decisions) that respect it."""

    key: str
    fraction: float = 0.0
    salt: str = ""
    targeting: JsonObject = field(default_factory=dict)
    covers_decisioning: bool = False
    name: str = ""
    version: int = 0
    update_time: datetime | None = None

    @property
    def seed(self) -> str:
        """The hashing seed, distinct from any experiment's by default."""
        return self.salt or f"holdout:{self.key}"


@dataclass(frozen=True, slots=True)
class Layer:
    """A namespace whose experiments own disjoint ranges of one hash."""

    key: str
    salt: str = ""
    description: str = ""
    version: int = 0
    update_time: datetime | None = None

    @property
    def seed(self) -> str:
        """The hashing seed, distinct from any experiment's by default."""
        return self.salt or f"layer:{self.key}"


@dataclass(frozen=True, slots=True)
class Metric:
    """A KPI computed from events."""

    key: str
    event_name: str = ""
    kind: MetricKind | None = None
    denominator_event: str = ""
    covariate_event: str = ""
    lower_is_better: bool = False
    name: str = ""
    version: int = 0
    update_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """Something the decisioning service may recommend."""

    key: str
    channel: str = ""
    name: str = ""
    placements: tuple[str, ...] = ()
    value: float = 1.0
    weight: float = 1.0
    priority: int = 0
    eligibility: JsonObject = field(default_factory=dict)
    exclusions: tuple[JsonObject, ...] = ()
    start_time: datetime | None = None
    end_time: datetime | None = None
    payload: JsonObject = field(default_factory=dict)
    version: int = 0
    update_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    """At most ``max_contacts`` deliveries in any rolling ``window_s`` seconds."""

    key: str
    channel: str = ""
    action_key: str = ""
    max_contacts: int = 0
    window_s: float = 0.0
    version: int = 0
    update_time: datetime | None = None


Definition: TypeAlias = Experiment | Holdout | Layer | Metric | Action | ContactPolicy

KIND_OF: Mapping[type, Kind] = {
    Experiment: Kind.EXPERIMENT,
    Holdout: Kind.HOLDOUT,
    Layer: Kind.LAYER,
    Metric: Kind.METRIC,
    Action: Kind.ACTION,
    ContactPolicy: Kind.CONTACT_POLICY,
}
CLASS_OF: Mapping[Kind, type[Definition]] = {kind: cls for cls, kind in KIND_OF.items()}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One committed write: who, when, what, and the changed fields."""

    actor: str
    time: datetime
    kind: Kind
    key: str
    version: int
    operation: AuditOperation
    diff: JsonObject


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every current definition at one catalog version; what the data plane serves from.

    ``version`` rises with every catalog write, so a holder can tell newer from older.
    """

    version: int
    experiments: tuple[Experiment, ...] = ()
    holdouts: tuple[Holdout, ...] = ()
    layers: tuple[Layer, ...] = ()
    metrics: tuple[Metric, ...] = ()
    actions: tuple[Action, ...] = ()
    contact_policies: tuple[ContactPolicy, ...] = ()
    created_at: datetime | None = None

    def experiment(self, key: str) -> Experiment | None:
        """The experiment with ``key``, if any (linear scan; index it when hot)."""
        return next((e for e in self.experiments if e.key == key), None)
