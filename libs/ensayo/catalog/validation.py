"""Validation of catalog definitions: every broken rule is named with its field path.

Checks are pure; references to other objects (metrics, layers, holdouts, actions) are checked
against a ``Known`` view the use case fills from storage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ensayo.catalog.model import (
    Action,
    Allocation,
    ContactPolicy,
    Definition,
    Experiment,
    ExperimentState,
    Holdout,
    JsonObject,
    Layer,
    LayerRange,
    Metric,
    MetricKind,
)
from ensayo.conditions import validate_condition
from ensayo.errors import FieldViolation, InvalidArgument

__all__ = ["KEY_PATTERN", "Known", "validate", "validate_key"]

KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,127}")
_MAX_NAME = 200
_MAX_TEXT = 10_000
_MAX_UNIT_ID = 512
_MAX_EVENT_NAME = 128
_MAX_SCORE_FACTOR = 1e9  # an action's value and weight: products of scores stay finite


@dataclass(frozen=True, slots=True)
class Known:
    """What exists in the catalog, for reference checks."""

    metrics: frozenset[str] = frozenset()
    layers: frozenset[str] = frozenset()
    holdouts: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    layer_ranges: Mapping[str, tuple[tuple[str, LayerRange], ...]] = field(default_factory=dict)


class _Problems:
    def __init__(self, root: str) -> None:
        self.root = root
        self.items: list[FieldViolation] = []

    def add(self, path: str, reason: str) -> None:
        full = f"{self.root}.{path}" if path and not path.startswith("[") else self.root + path
        self.items.append(FieldViolation(full, reason))

    def condition(self, path: str, condition: JsonObject) -> None:
        try:
            validate_condition(condition, field=f"{self.root}.{path}")
        except InvalidArgument as exc:
            self.items.extend(exc.violations)

    def raise_if_any(self) -> None:
        if self.items:
            first, *rest = self.items
            raise InvalidArgument(first.field, first.reason, *rest)


def validate_key(key: str, path: str = "key") -> None:
    """Raise InvalidArgument unless ``key`` matches ``[a-z0-9][a-z0-9_.-]{0,127}``."""
    problems = _Problems("")
    _check_key(problems, path, key)
    problems.raise_if_any()


def _check_key(p: _Problems, path: str, key: str) -> None:
    if not key:
        p.add(path, "required")
    elif not KEY_PATTERN.fullmatch(key):
        p.add(path, f"{key!r} must match [a-z0-9][a-z0-9_.-]{{0,127}}")


def _finite_nonneg(p: _Problems, path: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        p.add(path, "must be finite and non-negative")


def _share(p: _Problems, path: str, value: float) -> None:
    if not math.isfinite(value) or not 0 <= value <= 1:
        p.add(path, "must be in [0, 1]")


def _text(p: _Problems, path: str, value: str, limit: int) -> None:
    if len(value) > limit:
        p.add(path, f"must be at most {limit} characters")


def _label(p: _Problems, path: str, value: str) -> None:
    """A channel or placement: plain text (stored contacts are split on a control byte)."""
    _text(p, path, value, _MAX_NAME)
    if any(c < " " or c == "\x7f" for c in value):
        p.add(path, "must not contain control characters")


def _experiment(p: _Problems, e: Experiment, known: Known) -> None:
    _text(p, "name", e.name, _MAX_NAME)
    _text(p, "description", e.description, _MAX_TEXT)
    if len(e.variants) < 2:
        p.add("variants", "at least two variants are required (the first is the control)")
    seen: set[str] = set()
    for i, v in enumerate(e.variants):
        _check_key(p, f"variants[{i}].key", v.key)
        if v.key in seen:
            p.add(f"variants[{i}].key", f"duplicate variant key {v.key!r}")
        seen.add(v.key)
        _finite_nonneg(p, f"variants[{i}].weight", v.weight)
    weights = [v.weight for v in e.variants]
    if e.variants and all(math.isfinite(w) and w >= 0 for w in weights) and sum(weights) <= 0:
        p.add("variants", "weights must not all be zero")
    _share(p, "coverage", e.coverage)
    _layer(p, e, known)
    for i, h in enumerate(e.holdouts):
        if h not in known.holdouts:
            p.add(f"holdouts[{i}]", f"holdout {h!r} does not exist")
    p.condition("targeting", e.targeting)
    for unit, variant in e.forced.items():
        if not unit or len(unit) > _MAX_UNIT_ID:
            p.add("forced", f"unit ids must have 1 to {_MAX_UNIT_ID} characters")
        if variant not in seen:
            p.add(
                f"forced[{unit!r}]" if len(unit) <= 64 else "forced",
                f"unknown variant {variant!r}",
            )
    if len(set(e.metrics)) != len(e.metrics):
        p.add("metrics", "duplicate metric keys")
    for i, m in enumerate(e.metrics):
        if m not in known.metrics:
            p.add(f"metrics[{i}]", f"metric {m!r} does not exist")
    _bandit(p, e)


def _layer(p: _Problems, e: Experiment, known: Known) -> None:
    r = e.layer_range
    if not e.layer:
        if r is not None:
            p.add("layer_range", "only allowed with a layer")
        return
    if e.layer not in known.layers:
        p.add("layer", f"layer {e.layer!r} does not exist")
    if r is None:
        p.add("layer_range", "required with a layer")
        return
    if not (math.isfinite(r.start) and math.isfinite(r.end) and 0 <= r.start < r.end <= 1):
        p.add("layer_range", "must satisfy 0 <= start < end <= 1")
        return
    for other, o in known.layer_ranges.get(e.layer, ()):
        if other != e.key and r.start < o.end and o.start < r.end:
            p.add(
                "layer_range",
                f"overlaps experiment {other!r} [{o.start}, {o.end}) in layer {e.layer!r}",
            )


def _bandit(p: _Problems, e: Experiment) -> None:
    if e.allocation is not Allocation.BANDIT:
        if e.bandit is not None:  # unused, but stored: its numbers must at least be storable
            for path, value in (
                ("bandit.exploration_floor", e.bandit.exploration_floor),
                ("bandit.update_period_s", e.bandit.update_period_s),
            ):
                if not math.isfinite(value):
                    p.add(path, "must be finite")
        return
    b = e.bandit
    if b is None or b.algorithm is None:
        p.add("bandit.algorithm", "required with ALLOCATION_BANDIT")
        return
    if not b.reward_metric:
        p.add("bandit.reward_metric", "required with ALLOCATION_BANDIT")
    elif b.reward_metric not in e.metrics:
        p.add("bandit.reward_metric", "must be one of the experiment's metrics")
    _share(p, "bandit.exploration_floor", b.exploration_floor)
    if math.isfinite(b.exploration_floor) and len(e.variants) * b.exploration_floor > 1:
        p.add("bandit.exploration_floor", "variants x exploration_floor must be at most 1")
    if not math.isfinite(b.update_period_s) or b.update_period_s <= 0:
        p.add("bandit.update_period_s", "must be finite and > 0")
    if b.burn_in_units < 0:
        p.add("bandit.burn_in_units", "must be >= 0")


def _holdout(p: _Problems, h: Holdout, _known: Known) -> None:
    _share(p, "fraction", h.fraction)
    _text(p, "name", h.name, _MAX_NAME)
    p.condition("targeting", h.targeting)


def _layer_def(p: _Problems, layer: Layer, _known: Known) -> None:
    _text(p, "description", layer.description, _MAX_TEXT)


def _metric(p: _Problems, m: Metric, _known: Known) -> None:
    _text(p, "name", m.name, _MAX_NAME)
    for path, value in (
        ("event_name", m.event_name),
        ("denominator_event", m.denominator_event),
        ("covariate_event", m.covariate_event),
    ):
        _text(p, path, value, _MAX_EVENT_NAME)
    if not m.event_name:
        p.add("event_name", "required")
    if m.kind is None:
        p.add("kind", "required (METRIC_KIND_CONVERSION, _MEAN or _RATIO)")
    elif m.kind is MetricKind.RATIO and not m.denominator_event:
        p.add("denominator_event", "required for a ratio metric")
    elif m.kind is not MetricKind.RATIO and m.denominator_event:
        p.add("denominator_event", "only allowed for a ratio metric")


def _action(p: _Problems, a: Action, _known: Known) -> None:
    _text(p, "name", a.name, _MAX_NAME)
    if not a.channel:
        p.add("channel", "required")
    _label(p, "channel", a.channel)
    for i, placement in enumerate(a.placements):
        if not placement:
            p.add(f"placements[{i}]", "must not be empty")
        _label(p, f"placements[{i}]", placement)
    for path, number in (("value", a.value), ("weight", a.weight)):
        _finite_nonneg(p, path, number)
        if number > _MAX_SCORE_FACTOR:
            p.add(path, f"must be at most {_MAX_SCORE_FACTOR:g}")
    p.condition("eligibility", a.eligibility)
    for i, exclusion in enumerate(a.exclusions):
        if not exclusion:
            p.add(f"exclusions[{i}]", "an empty exclusion would exclude everyone")
        p.condition(f"exclusions[{i}]", exclusion)
    if a.start_time and a.end_time and a.start_time >= a.end_time:
        p.add("end_time", "must be after start_time")


def _contact_policy(p: _Problems, c: ContactPolicy, known: Known) -> None:
    _label(p, "channel", c.channel)
    if c.max_contacts < 0:
        p.add("max_contacts", "must be >= 0")
    if not math.isfinite(c.window_s) or c.window_s <= 0:
        p.add("window_s", "must be finite and > 0")
    if c.action_key and c.action_key not in known.actions:
        p.add("action_key", f"action {c.action_key!r} does not exist")


_CHECKS: Mapping[type, Callable[[_Problems, object, Known], None]] = {
    Experiment: _experiment,  # type: ignore[dict-item]
    Holdout: _holdout,  # type: ignore[dict-item]
    Layer: _layer_def,  # type: ignore[dict-item]
    Metric: _metric,  # type: ignore[dict-item]
    Action: _action,  # type: ignore[dict-item]
    ContactPolicy: _contact_policy,  # type: ignore[dict-item]
}


def validate(definition: Definition, root: str, known: Known = Known()) -> None:
    """Raise one InvalidArgument listing every broken rule, paths under ``root``."""
    p = _Problems(root)
    _check_key(p, "key", definition.key)
    _CHECKS[type(definition)](p, definition, known)
    p.raise_if_any()


def legal_moves() -> Mapping[ExperimentState, Iterable[ExperimentState]]:
    """Experiment state machine: DRAFT -> RUNNING, RUNNING <-> PAUSED, any -> STOPPED (final)."""
    s = ExperimentState
    return {
        s.DRAFT: (s.RUNNING, s.STOPPED),
        s.RUNNING: (s.PAUSED, s.STOPPED),
        s.PAUSED: (s.RUNNING, s.STOPPED),
        s.STOPPED: (),
    }
