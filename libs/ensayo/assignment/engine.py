"""The pure assignment engine: a snapshot compiled once into an index, units evaluated against it.

Order of evaluation (one pass, one reason per exit): not running → forced → holdouts the
experiment respects → layer range → targeting → sticky lookup → coverage → variant. The
sticky lookup is the caller's I/O, so the pass is split: ``screen`` runs the steps before it,
``candidate`` computes the bucket, ``resolve`` combines both with the stored variant. The
``*_many`` functions do the same for a whole batch with numpy (no Python loop per unit for
hashing and bucketing; targeting is evaluated per unit only where attributes are needed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import structlog
from numpy.typing import NDArray

from ensayo.assignment.bandit import allocation_for
from ensayo.assignment.model import (
    Assignment,
    BanditAllocation,
    Membership,
    MembershipKind,
    Reason,
    Unit,
)
from ensayo.catalog.model import (
    Allocation,
    Experiment,
    ExperimentState,
    Holdout,
    JsonObject,
    Layer,
    Snapshot,
)
from ensayo.conditions import Evaluator, compile_condition
from ensayo.errors import InvalidArgument
from ensayo.hashing import (
    bucket_ranges,
    choose_variant,
    choose_variants,
    hash_v2,
    hash_v2_many,
    in_range,
    in_range_many,
)

__all__ = [
    "CompiledExperiment",
    "CompiledHoldout",
    "CompiledLayer",
    "Index",
    "Screened",
    "build_index",
    "candidate",
    "candidates_many",
    "evaluate",
    "memberships",
    "resolve",
    "screen",
    "screen_many",
    "unknown",
]

_log = structlog.get_logger()
_NO_ATTRIBUTES: Mapping[str, object] = {}


@dataclass(frozen=True, slots=True)
class CompiledHoldout:
    """A holdout ready to test units: its seed, fraction and compiled targeting."""

    key: str
    version: int
    seed: str
    fraction: float
    targeting: Evaluator | None = None


@dataclass(frozen=True, slots=True)
class CompiledLayer:
    """A layer: its seed and the ranges its running experiments own, by start."""

    key: str
    seed: str
    owners: tuple[tuple[float, float, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledExperiment:
    """Everything ``Assign`` needs about one experiment, computed once per snapshot.

    ``ranges`` come from ``weights`` (the catalog's, or the bandit allocation's) and
    ``coverage`` exactly as GrowthBook lays them out; ``stores`` says whether assignments go
    through the sticky store (sticky experiments and every bandit).
    """

    key: str
    version: int
    running: bool
    seed: str
    variant_keys: tuple[str, ...]
    payloads: tuple[JsonObject, ...]
    weights: tuple[float, ...]
    coverage: float
    ranges: tuple[tuple[float, float], ...]
    positions: Mapping[str, int]
    forced: Mapping[str, int] = field(default_factory=dict)
    holdouts: tuple[CompiledHoldout, ...] = ()
    layer: CompiledLayer | None = None
    layer_range: tuple[float, float] = (0.0, 1.0)
    targeting: Evaluator | None = None
    stores: bool = False
    bandit: bool = False
    allocation_version: int = 0

    @property
    def control_key(self) -> str:
        """The control's variant key: the experience of every unit outside."""
        return self.variant_keys[0] if self.variant_keys else ""


@dataclass(frozen=True, slots=True)
class Index:
    """A snapshot compiled for assignment, with the bandit allocations it was built with."""

    snapshot_version: int
    experiments: Mapping[str, CompiledExperiment]
    running: tuple[CompiledExperiment, ...]
    holdouts: tuple[CompiledHoldout, ...]
    layers: tuple[CompiledLayer, ...]
    allocations: Mapping[str, BanditAllocation] = field(default_factory=dict)
    conditions: Mapping[str, Evaluator] = field(default_factory=dict)


def build_index(
    snapshot: Snapshot,
    allocations: Mapping[str, BanditAllocation] | None = None,
    previous: Index | None = None,
) -> Index:
    """Compile ``snapshot`` (conditions, ranges, forced maps) for fast evaluation.

    ``allocations`` holds the latest published allocation of bandit experiments by key
    (missing or stale ones fall back to version 0, the experiment's weights with the
    floor). Conditions already compiled in ``previous`` (equal canonical JSON) are
    reused. An experiment whose definition cannot be bucketed (which the catalog's
    validation prevents) is served as not running and logged, never failing the index.
    """
    allocations = allocations or {}
    conditions = _Conditions(previous.conditions if previous is not None else {})
    holdouts = {h.key: _compile_holdout(h, conditions) for h in snapshot.holdouts}
    layer_defs = {layer.key: layer for layer in snapshot.layers}
    owners: dict[str, list[tuple[float, float, str]]] = {}
    for e in snapshot.experiments:
        if e.state is ExperimentState.RUNNING and e.layer and e.layer_range is not None:
            owners.setdefault(e.layer, []).append((e.layer_range.start, e.layer_range.end, e.key))
    layers = {
        key: CompiledLayer(
            key,
            layer_defs[key].seed if key in layer_defs else _layer_seed(key),
            tuple(sorted(owners.get(key, ()))),
        )
        for key in [*layer_defs, *(k for k in owners if k not in layer_defs)]
    }
    experiments: dict[str, CompiledExperiment] = {}
    for e in snapshot.experiments:
        experiments[e.key] = _compile_experiment(
            e, holdouts, layers, allocations.get(e.key), conditions
        )
    return Index(
        snapshot_version=snapshot.version,
        experiments=experiments,
        running=tuple(c for c in experiments.values() if c.running),
        holdouts=tuple(holdouts.values()),
        layers=tuple(layers.values()),
        allocations=dict(allocations),
        conditions=conditions.compiled,
    )


class _Conditions:
    """Compiles conditions once: by canonical JSON, reusing a previous index's evaluators."""

    def __init__(self, previous: Mapping[str, Evaluator]) -> None:
        self._previous = previous
        self.compiled: dict[str, Evaluator] = {}

    def get(self, condition: JsonObject, field_name: str) -> Evaluator | None:
        """The evaluator of ``condition`` (None when empty); raises InvalidArgument if bad."""
        if not condition:
            return None
        key = json.dumps(condition, sort_keys=True, separators=(",", ":"))
        evaluator = self.compiled.get(key) or self._previous.get(key)
        if evaluator is None:
            evaluator = compile_condition(condition, field_name)
        self.compiled[key] = evaluator
        return evaluator


def _layer_seed(key: str) -> str:
    return Layer(key).seed


def _compile_holdout(h: Holdout, conditions: _Conditions) -> CompiledHoldout:
    try:
        targeting = conditions.get(h.targeting, "holdout.targeting")
    except InvalidArgument as exc:  # the catalog validates; never hold anyone out on a bad one
        _log.error("holdout_not_servable", holdout=h.key, error=str(exc))
        return CompiledHoldout(h.key, h.version, h.seed, 0.0)
    return CompiledHoldout(h.key, h.version, h.seed, h.fraction, targeting)


def _compile_experiment(
    e: Experiment,
    holdouts: Mapping[str, CompiledHoldout],
    layers: Mapping[str, CompiledLayer],
    stored: BanditAllocation | None,
    conditions: _Conditions,
) -> CompiledExperiment:
    keys = tuple(v.key for v in e.variants)
    positions = {k: i for i, k in enumerate(keys)}
    bandit = e.allocation is Allocation.BANDIT
    running = e.state is ExperimentState.RUNNING
    allocation_version = 0
    try:
        weights = e.weights
        if bandit:
            allocation = allocation_for(e, stored)
            weights, allocation_version = allocation.weights, allocation.version
        ranges = tuple(bucket_ranges(weights, e.coverage)) if weights else ()
        targeting = conditions.get(e.targeting, "targeting")
    except InvalidArgument as exc:
        _log.error("experiment_not_servable", experiment=e.key, error=str(exc))
        running, weights, ranges, targeting = False, (), (), None
    layer = None
    layer_range = (0.0, 1.0)
    if e.layer:
        layer = layers.get(e.layer, CompiledLayer(e.layer, _layer_seed(e.layer)))
        r = e.layer_range
        layer_range = (r.start, r.end) if r is not None else (0.0, 0.0)
    return CompiledExperiment(
        key=e.key,
        version=e.version,
        running=running,
        seed=e.seed,
        variant_keys=keys,
        payloads=tuple(v.payload for v in e.variants),
        weights=tuple(weights),
        coverage=e.coverage,
        ranges=ranges,
        positions=positions,
        forced={unit: positions[v] for unit, v in e.forced.items() if v in positions},
        holdouts=tuple(holdouts[k] for k in e.holdouts if k in holdouts),
        layer=layer,
        layer_range=layer_range,
        targeting=targeting,
        stores=e.sticky or bandit,
        bandit=bandit,
        allocation_version=allocation_version,
    )


# -- one unit ------------------------------------------------------------------------------


def unknown(key: str) -> Assignment:
    """The answer for a key no experiment has (not an error in ``Assign``)."""
    return Assignment(key, "", False, Reason.UNKNOWN_EXPERIMENT)


def _out(exp: CompiledExperiment, reason: Reason) -> Assignment:
    return Assignment(
        exp.key,
        exp.control_key,
        False,
        reason,
        payload=exp.payloads[0] if exp.payloads else {},
        experiment_version=exp.version,
        allocation_version=exp.allocation_version,
    )


def _in(exp: CompiledExperiment, index: int, reason: Reason, probability: float) -> Assignment:
    return Assignment(
        exp.key,
        exp.variant_keys[index],
        True,
        reason,
        variant_index=index,
        payload=exp.payloads[index],
        experiment_version=exp.version,
        probability=probability,
        allocation_version=exp.allocation_version,
    )


def _held_out(h: CompiledHoldout, unit_id: str, attributes: Mapping[str, object]) -> bool:
    if hash_v2(h.seed, unit_id) >= h.fraction:
        return False
    return h.targeting is None or h.targeting(attributes)


def screen(
    exp: CompiledExperiment, unit_id: str, attributes: Mapping[str, object]
) -> Assignment | None:
    """The steps before the sticky lookup; None when the unit is eligible for a variant.

    Not running → NOT_RUNNING; forced → FORCED (probability 1); a holdout the experiment
    respects holds the unit (its hash under the holdout's seed below the fraction and its
    targeting matched) → HOLDOUT; outside the experiment's range of its layer →
    LAYER_EXCLUDED; targeting not matched → NOT_TARGETED.
    """
    if not exp.running:
        return _out(exp, Reason.NOT_RUNNING)
    forced = exp.forced.get(unit_id)
    if forced is not None:
        return _in(exp, forced, Reason.FORCED, 1.0)
    for h in exp.holdouts:
        if _held_out(h, unit_id, attributes):
            return _out(exp, Reason.HOLDOUT)
    if exp.layer is not None:
        start, end = exp.layer_range
        if not in_range(hash_v2(exp.layer.seed, unit_id), start, end):
            return _out(exp, Reason.LAYER_EXCLUDED)
    if exp.targeting is not None and not exp.targeting(attributes):
        return _out(exp, Reason.NOT_TARGETED)
    return None


def candidate(exp: CompiledExperiment, unit_id: str) -> int:
    """The variant index the unit's bucket falls in (-1: outside the coverage).

    ``choose_variant(hash_v2(seed, id), ranges)``: GrowthBook's bucket for the same seed,
    weights and coverage.
    """
    return choose_variant(hash_v2(exp.seed, unit_id), exp.ranges)


def resolve(exp: CompiledExperiment, bucket: int, stored: str | None = None) -> Assignment:
    """The answer for an eligible unit, given its bucket and its stored variant.

    The stored variant (STICKY) if it still exists, else the bucket (ASSIGNED), else
    NOT_COVERED. ``probability`` is the variant's current weight.
    """
    if stored is not None:
        index = exp.positions.get(stored)
        if index is not None:
            return _in(exp, index, Reason.STICKY, exp.weights[index])
    if bucket >= 0:
        return _in(exp, bucket, Reason.ASSIGNED, exp.weights[bucket])
    return _out(exp, Reason.NOT_COVERED)


def evaluate(exp: CompiledExperiment, unit: Unit, stored: str | None = None) -> Assignment:
    """The whole evaluation for one unit, given what the sticky store holds (or None)."""
    screened = screen(exp, unit.id, unit.attributes)
    if screened is not None:
        return screened
    return resolve(exp, candidate(exp, unit.id), stored)


def memberships(index: Index, unit: Unit, stored: Mapping[str, str]) -> list[Membership]:
    """Every holdout, layer and running experiment with the unit's standing in it.

    Holdouts: member when held out (position below the fraction and targeting matched).
    Layers: the unit's position and the running experiment owning it (member when owned).
    Experiments: the full evaluation with ``stored`` sticky variants; nothing is written.
    """
    rows: list[Membership] = []
    for h in index.holdouts:
        position = hash_v2(h.seed, unit.id)
        member = position < h.fraction and (h.targeting is None or h.targeting(unit.attributes))
        rows.append(Membership(MembershipKind.HOLDOUT, h.key, member, position=position))
    for layer in index.layers:
        position = hash_v2(layer.seed, unit.id)
        owner = next((k for s, e, k in layer.owners if in_range(position, s, e)), "")
        rows.append(
            Membership(
                MembershipKind.LAYER, layer.key, bool(owner), position=position, owner=owner
            )
        )
    for exp in index.running:
        a = evaluate(exp, unit, stored.get(exp.key))
        rows.append(
            Membership(
                MembershipKind.EXPERIMENT,
                exp.key,
                a.in_experiment,
                reason=a.reason,
                variant_key=a.variant_key,
            )
        )
    return rows


# -- many units ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Screened:
    """``screen`` over a batch: forced indices (-1 elsewhere), who is forced, who is eligible."""

    index: NDArray[np.int32]
    forced: NDArray[np.bool_]
    eligible: NDArray[np.bool_]


def _keep_matching(
    mask: NDArray[np.bool_],
    evaluator: Evaluator,
    attributes: Sequence[Mapping[str, object]],
) -> NDArray[np.bool_]:
    """``mask`` with units whose attributes do not match cleared (only set units are read)."""
    if not attributes:
        return mask if evaluator(_NO_ATTRIBUTES) else np.zeros_like(mask)
    out = mask.copy()
    for i in np.flatnonzero(mask).tolist():
        if not evaluator(attributes[i]):
            out[i] = False
    return out


def screen_many(
    exp: CompiledExperiment,
    unit_ids: Sequence[str],
    attributes: Sequence[Mapping[str, object]] = (),
) -> Screened:
    """``screen`` for every unit of a batch, vectorised.

    Holdouts and layers hash every id with numpy; a targeting condition (the experiment's or
    a holdout's) reads ``attributes[i]`` only for units still in play, or evaluates once on
    empty attributes when ``attributes`` is empty.
    """
    n = len(unit_ids)
    index = np.full(n, -1, dtype=np.int32)
    forced = np.zeros(n, dtype=np.bool_)
    if not exp.running:
        return Screened(index, forced, np.zeros(n, dtype=np.bool_))
    if exp.forced:
        hits = exp.forced.keys() & set(unit_ids)
        if hits:
            for i, unit_id in enumerate(unit_ids):
                if unit_id in hits:
                    forced[i] = True
                    index[i] = exp.forced[unit_id]
    eligible = ~forced
    for h in exp.holdouts:
        held = (hash_v2_many(h.seed, unit_ids) < h.fraction) & eligible
        if h.targeting is not None:
            held = _keep_matching(held, h.targeting, attributes)
        eligible &= ~held
    if exp.layer is not None:
        start, end = exp.layer_range
        eligible &= in_range_many(hash_v2_many(exp.layer.seed, unit_ids), start, end)
    if exp.targeting is not None:
        eligible = _keep_matching(eligible, exp.targeting, attributes)
    return Screened(index, forced, eligible)


def candidates_many(exp: CompiledExperiment, unit_ids: Sequence[str]) -> NDArray[np.int32]:
    """``candidate`` for every unit: ``choose_variants(hash_v2_many(seed, ids), ranges)``."""
    if not exp.ranges:
        return np.full(len(unit_ids), -1, dtype=np.int32)
    return choose_variants(hash_v2_many(exp.seed, unit_ids), exp.ranges)
