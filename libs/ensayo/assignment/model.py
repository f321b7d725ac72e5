"""Assignment results and queries as frozen dataclasses, independent of protobuf and Redis.

Reasons, memberships, batch results, bandit allocations and the documented request limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from ensayo.catalog.model import JsonObject

__all__ = [
    "MAX_BATCH_UNITS",
    "MAX_EXPERIMENT_KEYS",
    "MAX_UNIT_ID_CHARS",
    "AssignQuery",
    "Assignment",
    "BanditAllocation",
    "BatchQuery",
    "BatchResult",
    "Membership",
    "MembershipKind",
    "Reason",
    "Unit",
]

MAX_BATCH_UNITS = 100_000
"""Most unit ids in one ``AssignBatch`` message (or one message of ``AssignStream``)."""
MAX_EXPERIMENT_KEYS = 1000
"""Most experiment keys in one ``Assign``."""
MAX_UNIT_ID_CHARS = 512
"""Longest unit id, in characters (ids have 1 to 512)."""


class Reason(StrEnum):
    """Why a unit got the answer it got; every exit of the evaluation has its own."""

    ASSIGNED = "assigned"
    FORCED = "forced"
    STICKY = "sticky"
    HOLDOUT = "holdout"
    NOT_TARGETED = "not_targeted"
    NOT_COVERED = "not_covered"
    LAYER_EXCLUDED = "layer_excluded"
    NOT_RUNNING = "not_running"
    UNKNOWN_EXPERIMENT = "unknown_experiment"


class MembershipKind(StrEnum):
    """What a membership row describes."""

    HOLDOUT = "holdout"
    LAYER = "layer"
    EXPERIMENT = "experiment"


@dataclass(frozen=True, slots=True)
class Unit:
    """The subject of an assignment: an id (1 to 512 characters) and its attributes."""

    id: str
    attributes: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Assignment:
    """The answer for one unit and one experiment.

    ``variant_key`` is the experience to show: the variant when ``in_experiment``, else the
    control's key (empty for an unknown experiment). ``variant_index`` is the variant's
    position, -1 when not enrolled. ``probability`` is the chance that an enrolled unit gets
    this variant under the current allocation (1 for a forced unit, 0 when not enrolled);
    ``allocation_version`` names the bandit allocation the weights came from (0: fixed).

    Immutable and shared: a compiled experiment answers every unit with the same outcome
    with the same instance (adapters may cache its encoding, keyed weakly on the instance).
    """

    experiment_key: str
    variant_key: str
    in_experiment: bool
    reason: Reason
    variant_index: int = -1
    payload: JsonObject = field(default_factory=dict)
    experiment_version: int = 0
    probability: float = 0.0
    allocation_version: int = 0


@dataclass(frozen=True, slots=True)
class AssignQuery:
    """``Assign``: one unit, many experiments (empty: every running one)."""

    unit: Unit
    experiment_keys: tuple[str, ...] = ()
    log_exposure: bool = False


@dataclass(frozen=True, slots=True)
class BatchQuery:
    """``AssignBatch``: many units, one experiment.

    ``attributes`` is empty or parallel to ``unit_ids``; an element is only read for a unit
    that reaches a targeting condition, so converters may hand over a lazy sequence.
    """

    experiment_key: str
    unit_ids: Sequence[str]
    attributes: Sequence[Mapping[str, object]] = ()
    log_exposure: bool = False


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The variant of every unit of a batch: indices into ``variant_keys``, -1 when out."""

    experiment_key: str
    variant_keys: tuple[str, ...]
    variant_index: NDArray[np.int32]
    experiment_version: int = 0
    allocation_version: int = 0


@dataclass(frozen=True, slots=True)
class Membership:
    """Whether a unit is in one holdout, layer or experiment, and why.

    ``position`` is the unit's hash in the holdout's or layer's hash space, in [0, 1);
    ``owner`` is the running experiment owning that position of a layer, if any; ``reason``
    and ``variant_key`` are set for experiments only.
    """

    kind: MembershipKind
    key: str
    member: bool
    reason: Reason | None = None
    variant_key: str = ""
    position: float = 0.0
    owner: str = ""


@dataclass(frozen=True, slots=True)
class BanditAllocation:
    """The weights a bandit experiment buckets with, at one allocation version.

    Version 0 is the experiment's own weights with the exploration floor applied; the
    allocator publishes 1, 2, ... ``weights`` are parallel to ``variant_keys`` and sum to 1.
    """

    experiment_key: str
    version: int
    variant_keys: tuple[str, ...]
    weights: tuple[float, ...]
    computed_at: datetime | None = None
    seed_key: str = ""
