"""The event model shared by intake, exposure logging and decision logs.

Validation and reserved names (``$exposure``, ``$decision``, ``$outcome``) live here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ensayo.catalog.model import JsonObject
from ensayo.errors import FieldViolation, InvalidArgument

__all__ = [
    "DECISION",
    "EXPOSURE",
    "MAX_EVENTS_PER_CALL",
    "OUTCOME",
    "Event",
    "exposure_id",
    "validate_events",
]

EXPOSURE = "$exposure"
# A delivered decision: event_id = decision_id; properties hold channel, placement, context,
# candidates and the chosen actions with their propensities (see the decisioning service).
DECISION = "$decision"
# An outcome reported through DecisioningService.ReportOutcome: value = reward.
OUTCOME = "$outcome"
MAX_EVENTS_PER_CALL = 10_000
_MAX_ID = 1024
_MAX_UNIT = 512
_MAX_NAME = 128
_MAX_FUTURE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a unit did or was shown; ``event_id`` makes it idempotent."""

    event_id: str
    unit_id: str
    name: str
    time: datetime
    value: float = 1.0
    experiment_key: str = ""
    experiment_version: int = 0
    variant_key: str = ""
    probability: float = 0.0
    decision_id: str = ""
    properties: JsonObject = field(default_factory=dict)
    allocation_version: int = 0


def exposure_id(experiment_key: str, experiment_version: int, unit_id: str) -> str:
    """The contract's exposure id: repeated exposures of a unit to one version collapse."""
    return f"{EXPOSURE}:{experiment_key}:{experiment_version}:{unit_id}"


_NUL_REASON = "must not contain NUL characters (the SQL store cannot hold them)"


def _holds_nul(value: object) -> bool:
    """Whether a JSON-like value has a NUL in any string or key (PostgreSQL refuses them)."""
    kind = type(value)
    if kind is str:
        return "\x00" in value  # type: ignore[operator]
    if kind is dict or isinstance(value, Mapping):
        return _mapping_holds_nul(value)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        return any(_holds_nul(v) for v in value)  # type: ignore[attr-defined]
    return False


def _mapping_holds_nul(value: Mapping[object, object]) -> bool:
    """:func:`_holds_nul` of a mapping, in a plain loop over strings, skipping numbers.

    Every tracked event's properties pass through here: no generator, no ABC checks.
    """
    for k, v in value.items():
        inner = type(v)
        if "\x00" in str(k) or (inner is str and "\x00" in v):  # type: ignore[operator]
            return True
        if inner is not str and inner is not float and inner is not int and _holds_nul(v):
            return True
    return False


def _check_nul(event: Event, bad: Callable[[str, str], None]) -> None:
    for name, value in (
        ("event_id", event.event_id),
        ("unit_id", event.unit_id),
        ("name", event.name),
        ("experiment_key", event.experiment_key),
        ("variant_key", event.variant_key),
        ("decision_id", event.decision_id),
    ):
        if "\x00" in value:
            bad(name, _NUL_REASON)
    if event.properties and _holds_nul(event.properties):
        bad("properties", _NUL_REASON)


def _check(event: Event, path: str, now: datetime, out: list[FieldViolation]) -> None:
    def bad(name: str, reason: str) -> None:
        out.append(FieldViolation(f"{path}.{name}", reason))

    for name, value, limit in (
        ("event_id", event.event_id, _MAX_ID),
        ("unit_id", event.unit_id, _MAX_UNIT),
        ("name", event.name, _MAX_NAME),
    ):
        if not value:
            bad(name, "required")
        elif len(value) > limit:
            bad(name, f"must be at most {limit} characters")
    _check_nul(event, bad)
    if not math.isfinite(event.value):
        bad("value", "must be finite")
    if not 0 <= event.probability <= 1:
        bad("probability", "must be in [0, 1]")
    if event.time - now > _MAX_FUTURE:
        bad("time", "must not be more than 1 day in the future")
    if event.experiment_version < 0:
        bad("experiment_version", "must be >= 0")
    if event.name == EXPOSURE:
        if not event.experiment_key:
            bad("experiment_key", "required for $exposure")
        if not event.variant_key:
            bad("variant_key", "required for $exposure")


def validate_events(events: list[Event], now: datetime, root: str = "events") -> None:
    """Raise one InvalidArgument naming every bad event field (``events[3].value``)."""
    if not events:
        raise InvalidArgument(root, "at least one event is required")
    latest = now + _MAX_FUTURE
    isfinite = math.isfinite
    first_bad = 0
    for event in events:
        # One expression for a valid event (every Track event goes through here); the first
        # one that fails it, and every later one, get the field by field check.
        event_id, unit_id, name = event.event_id, event.unit_id, event.name
        if not (
            event_id
            and len(event_id) <= _MAX_ID
            and unit_id
            and len(unit_id) <= _MAX_UNIT
            and name
            and len(name) <= _MAX_NAME
            and isfinite(event.value)
            and 0 <= event.probability <= 1
            and event.time <= latest
            and event.experiment_version >= 0
            and (name != EXPOSURE or (event.experiment_key and event.variant_key))
            and "\x00" not in f"{event_id}{unit_id}{name}{event.experiment_key}"
            and "\x00" not in f"{event.variant_key}{event.decision_id}"
            and (not event.properties or not _holds_nul(event.properties))
        ):
            break
        first_bad += 1
    else:
        return
    violations: list[FieldViolation] = []
    for i in range(first_bad, len(events)):
        _check(events[i], f"{root}[{i}]", now, violations)
    if violations:
        first, *rest = violations
        raise InvalidArgument(first.field, first.reason, *rest)
