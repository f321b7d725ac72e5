"""The pure assignment engine: a snapshot compiled once into an index, units evaluated against it.

Order of evaluation (one pass, one reason per exit): not running → forced → holdouts the
experiment respects → layer range → targeting → sticky lookup → coverage → variant. The
sticky lookup is the caller's I/O, so the pass is split: ``screen`` runs the steps before it,
``candidate`` computes the bucket, ``resolve`` combines both with the stored variant. The
``*_many`` functions do the same for a whole batch with numpy (no Python loop per unit for
hashing and bucketing; targeting is evaluated per unit only where attributes are needed).
``screen_unit`` does it for one unit over many experiments (``Assign``), following a
``UnitPlan`` cached on the index: shared conditions are evaluated once, the buckets hashed
together, and the answers are instances compiled with the experiment, never built per call.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
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
    BUCKETS,
    bucket_ranges,
    bucket_v2,
    buckets_v2,
    choose_variant,
    choose_variants,
    hash_v2_many,
    in_range,
    in_range_many,
    seed_state,
)

__all__ = [
    "CompiledExperiment",
    "CompiledHoldout",
    "CompiledLayer",
    "Index",
    "Pending",
    "Screened",
    "UnitPlan",
    "build_index",
    "candidate",
    "candidates_many",
    "evaluate",
    "memberships",
    "resolve",
    "screen",
    "screen_many",
    "screen_unit",
    "unknown",
]

_log = structlog.get_logger()
_NO_ATTRIBUTES: Mapping[str, object] = {}


@dataclass(frozen=True, slots=True)
class CompiledHoldout:
    """A holdout ready to test units: its seed, fraction and compiled targeting.

    ``state`` is the seed's FNV state (``ensayo.hashing.seed_state``), computed once.
    """

    key: str
    version: int
    seed: str
    fraction: float
    targeting: Evaluator | None = None
    state: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", seed_state(self.seed))


@dataclass(frozen=True, slots=True)
class CompiledLayer:
    """A layer: its seed and the ranges its running experiments own, by start.

    ``state`` is the seed's FNV state (``ensayo.hashing.seed_state``), computed once.
    """

    key: str
    seed: str
    owners: tuple[tuple[float, float, str], ...] = ()
    state: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", seed_state(self.seed))


@dataclass(frozen=True, slots=True)
class CompiledExperiment:
    """Everything ``Assign`` needs about one experiment, computed once per snapshot.

    ``ranges`` come from ``weights`` (the catalog's, or the bandit allocation's) and
    ``coverage`` exactly as GrowthBook lays them out; ``stores`` says whether assignments go
    through the sticky store (sticky experiments and every bandit).

    The answers are computed once too (``Assignment`` is immutable, so every unit with the
    same outcome shares one): ``assigned``, ``sticky`` and ``forced_in`` by variant index,
    the ``out_*`` ones by reason; ``state`` is the seed's FNV state, and ``variant_of``
    gives the variant index of a hash bucket (``candidate``) without float comparisons.
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
    state: int = field(init=False, repr=False, compare=False)
    assigned: tuple[Assignment, ...] = field(init=False, repr=False, compare=False)
    sticky: tuple[Assignment, ...] = field(init=False, repr=False, compare=False)
    forced_in: tuple[Assignment, ...] = field(init=False, repr=False, compare=False)
    out_not_running: Assignment = field(init=False, repr=False, compare=False)
    out_holdout: Assignment = field(init=False, repr=False, compare=False)
    out_layer_excluded: Assignment = field(init=False, repr=False, compare=False)
    out_not_targeted: Assignment = field(init=False, repr=False, compare=False)
    out_not_covered: Assignment = field(init=False, repr=False, compare=False)
    bucket_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    bucket_variants: tuple[int, ...] = field(init=False, repr=False, compare=False)
    bucket_answers: tuple[Assignment, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("state", seed_state(self.seed))
        starts, variants = _bucket_segments(self.ranges)
        put("bucket_starts", starts)
        put("bucket_variants", variants)
        # Probabilities are the variants' weights; bucket i < len(weights) always.
        count = min(len(self.variant_keys), len(self.weights))
        put(
            "assigned", tuple(_in(self, i, Reason.ASSIGNED, self.weights[i]) for i in range(count))
        )
        put("sticky", tuple(_in(self, i, Reason.STICKY, self.weights[i]) for i in range(count)))
        put(
            "forced_in",
            tuple(_in(self, i, Reason.FORCED, 1.0) for i in range(len(self.variant_keys))),
        )
        put("out_not_running", _out(self, Reason.NOT_RUNNING))
        put("out_holdout", _out(self, Reason.HOLDOUT))
        put("out_layer_excluded", _out(self, Reason.LAYER_EXCLUDED))
        put("out_not_targeted", _out(self, Reason.NOT_TARGETED))
        put("out_not_covered", _out(self, Reason.NOT_COVERED))
        # ``resolve`` without a stored variant, by run of buckets.
        put("bucket_answers", tuple(resolve(self, v) for v in variants))

    @property
    def control_key(self) -> str:
        """The control's variant key: the experience of every unit outside."""
        return self.variant_keys[0] if self.variant_keys else ""

    def variant_of(self, bucket: int) -> int:
        """``choose_variant(bucket / BUCKETS, ranges)``: the variant index, -1 if uncovered."""
        return self.bucket_variants[bisect_right(self.bucket_starts, bucket) - 1]


def _bucket_segments(
    ranges: Sequence[tuple[float, float]],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``choose_variant(k / BUCKETS, ranges)`` for every bucket k, run-length coded.

    Returns the first bucket of each run and its variant index (-1: uncovered). Each range
    holds the buckets from the first at or above its start to the first at or above its
    end, so the answer only changes at those buckets: they are the candidate run starts.
    """
    cuts = {0}
    for start, end in ranges:
        cuts.add(_first_bucket_at_or_above(start))
        cuts.add(_first_bucket_at_or_above(end))
    starts: list[int] = []
    variants: list[int] = []
    for cut in sorted(c for c in cuts if c < BUCKETS):
        variant = choose_variant(cut / BUCKETS, ranges)
        if not variants or variants[-1] != variant:
            starts.append(cut)
            variants.append(variant)
    return tuple(starts), tuple(variants)


def _first_bucket_at_or_above(x: float) -> int:
    """The least k in [0, BUCKETS] with ``k / BUCKETS >= x`` (BUCKETS when there is none)."""
    if not x > 0.0:
        return 0
    if x > 1.0:
        return BUCKETS
    k = min(BUCKETS, math.ceil(x * BUCKETS))
    while k > 0 and (k - 1) / BUCKETS >= x:
        k -= 1
    while k < BUCKETS and k / BUCKETS < x:
        k += 1
    return k


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
    plans: dict[tuple[str, ...], UnitPlan] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def plan(self, keys: tuple[str, ...]) -> UnitPlan:
        """The plan of ``Assign`` for these experiment keys (none: every running one).

        Plans are cached per index (the most recent ``MAX_PLANS`` key lists).
        """
        plan = self.plans.get(keys)
        if plan is None:
            found = self.experiments
            plan = UnitPlan([found.get(k) or k for k in keys] if keys else self.running)
            if len(self.plans) >= MAX_PLANS:
                self.plans.clear()
            self.plans[keys] = plan
        return plan


MAX_PLANS = 1024
"""Most ``UnitPlan``s an ``Index`` keeps (one per distinct list of requested keys)."""


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
    if bucket_v2(h.state, unit_id) / BUCKETS >= h.fraction:
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
        return exp.out_not_running
    forced = exp.forced.get(unit_id)
    if forced is not None:
        return exp.forced_in[forced]
    for h in exp.holdouts:
        if _held_out(h, unit_id, attributes):
            return exp.out_holdout
    if exp.layer is not None:
        start, end = exp.layer_range
        if not in_range(bucket_v2(exp.layer.state, unit_id) / BUCKETS, start, end):
            return exp.out_layer_excluded
    if exp.targeting is not None and not exp.targeting(attributes):
        return exp.out_not_targeted
    return None


def candidate(exp: CompiledExperiment, unit_id: str) -> int:
    """The variant index the unit's bucket falls in (-1: outside the coverage).

    ``choose_variant(hash_v2(seed, id), ranges)``: GrowthBook's bucket for the same seed,
    weights and coverage.
    """
    return exp.variant_of(bucket_v2(exp.state, unit_id))


def resolve(exp: CompiledExperiment, bucket: int, stored: str | None = None) -> Assignment:
    """The answer for an eligible unit, given its bucket and its stored variant.

    The stored variant (STICKY) if it still exists, else the bucket (ASSIGNED), else
    NOT_COVERED. ``probability`` is the variant's current weight.
    """
    if stored is not None:
        index = exp.positions.get(stored)
        if index is not None:
            return exp.sticky[index]
    if bucket >= 0:
        return exp.assigned[bucket]
    return exp.out_not_covered


Pending = tuple[int, CompiledExperiment, int]
"""An experiment waiting for the sticky store: (position in the answer, experiment, bucket)."""


class _Group:
    """Plain experiments (no forced units, holdouts or layer) sharing one targeting."""

    __slots__ = ("experiments", "not_targeted", "positions", "states", "targeting")

    def __init__(self, targeting: Evaluator | None) -> None:
        self.targeting = targeting
        self.positions: list[int] = []
        self.experiments: list[CompiledExperiment] = []
        self.states: list[int] = []
        self.not_targeted: list[Assignment] = []

    def add(self, position: int, exp: CompiledExperiment) -> None:
        self.positions.append(position)
        self.experiments.append(exp)
        self.states.append(exp.state)
        self.not_targeted.append(exp.out_not_targeted)


class UnitPlan:
    """How ``screen_unit`` walks a fixed list of experiments, worked out once per list.

    Answers that do not depend on the unit (an unknown key, an experiment not running) are
    fixed; experiments with no forced units, holdouts or layer are grouped by targeting
    condition, so one evaluation settles the group; the rest take the whole ``screen``.
    """

    __slots__ = ("complex", "fixed", "groups")

    def __init__(self, experiments: Sequence[CompiledExperiment | str]) -> None:
        fixed: list[Assignment | None] = []
        groups: dict[Evaluator | None, _Group] = {}
        complex_: list[tuple[int, CompiledExperiment]] = []
        for position, exp in enumerate(experiments):
            if isinstance(exp, str):
                fixed.append(unknown(exp))
            elif not exp.running:
                fixed.append(exp.out_not_running)
            else:
                fixed.append(None)
                if exp.forced or exp.holdouts or exp.layer is not None:
                    complex_.append((position, exp))
                else:
                    group = groups.get(exp.targeting)
                    if group is None:
                        group = groups[exp.targeting] = _Group(exp.targeting)
                    group.add(position, exp)
        self.fixed: tuple[Assignment | None, ...] = tuple(fixed)
        self.groups: tuple[_Group, ...] = tuple(groups.values())
        self.complex: tuple[tuple[int, CompiledExperiment], ...] = tuple(complex_)


def screen_unit(
    plan: UnitPlan, unit_id: str, attributes: Mapping[str, object]
) -> tuple[list[Assignment | None], list[Pending]]:
    """``screen``, ``candidate`` and ``resolve`` for one unit over a plan's experiments.

    Returns the answers in order with None where the experiment stores assignments
    (sticky, bandit) and the unit is eligible; those are listed as pending, in order,
    with their bucket, for the caller's sticky lookup and ``resolve``. Equal to calling
    the three per experiment, but a targeting condition, holdout or layer shared by
    several experiments is evaluated once, and the eligible experiments' buckets are
    hashed together (``ensayo.hashing.buckets_v2``).
    """
    results = list(plan.fixed)
    positions: list[int] = []
    experiments: list[CompiledExperiment] = []
    states: list[int] = []
    ordered = True  # whether positions are still ascending (each group's are)
    matches: dict[Evaluator, bool] = {}
    for group in plan.groups:
        targeting = group.targeting
        if targeting is not None:
            matched = matches[targeting] = targeting(attributes)
            if not matched:
                for position, answer in zip(group.positions, group.not_targeted, strict=True):
                    results[position] = answer
                continue
        if positions and group.positions[0] < positions[-1]:
            ordered = False
        positions += group.positions
        experiments += group.experiments
        states += group.states
    if plan.complex:
        hashes: dict[int, int] = {}  # seed state -> the unit's bucket (holdouts and layers)
        for position, exp in plan.complex:
            screened = _screen_shared(exp, unit_id, attributes, hashes, matches)
            if screened is None:
                if positions and position < positions[-1]:
                    ordered = False
                positions.append(position)
                experiments.append(exp)
                states.append(exp.state)
            else:
                results[position] = screened
    if not ordered:  # back in request order, so pending (sticky lookups) keeps it too
        order = sorted(range(len(positions)), key=positions.__getitem__)
        positions = [positions[i] for i in order]
        experiments = [experiments[i] for i in order]
        states = [states[i] for i in order]
    return results, _bucket(results, positions, experiments, states, unit_id)


def _bucket(
    results: list[Assignment | None],
    positions: list[int],
    experiments: list[CompiledExperiment],
    states: list[int],
    unit_id: str,
) -> list[Pending]:
    """Answer the eligible experiments from their buckets; those that store are pending."""
    pending: list[Pending] = []
    if not positions:
        return pending
    buckets = buckets_v2(states, unit_id)
    for position, exp, bucket in zip(positions, experiments, buckets, strict=True):
        run = bisect_right(exp.bucket_starts, bucket) - 1
        if exp.stores:
            pending.append((position, exp, exp.bucket_variants[run]))
        else:
            results[position] = exp.bucket_answers[run]
    return pending


def _screen_shared(
    exp: CompiledExperiment,
    unit_id: str,
    attributes: Mapping[str, object],
    hashes: dict[int, int],
    matches: dict[Evaluator, bool],
) -> Assignment | None:
    """``screen`` of a running experiment, reusing the call's hashes and condition results."""
    forced = exp.forced.get(unit_id)
    if forced is not None:
        return exp.forced_in[forced]
    for h in exp.holdouts:
        bucket = hashes.get(h.state)
        if bucket is None:
            bucket = hashes[h.state] = bucket_v2(h.state, unit_id)
        if bucket / BUCKETS < h.fraction and _matches(h.targeting, attributes, matches):
            return exp.out_holdout
    layer = exp.layer
    if layer is not None:
        bucket = hashes.get(layer.state)
        if bucket is None:
            bucket = hashes[layer.state] = bucket_v2(layer.state, unit_id)
        start, end = exp.layer_range
        if not start <= bucket / BUCKETS < end:
            return exp.out_layer_excluded
    if not _matches(exp.targeting, attributes, matches):
        return exp.out_not_targeted
    return None


def _matches(
    targeting: Evaluator | None, attributes: Mapping[str, object], memo: dict[Evaluator, bool]
) -> bool:
    if targeting is None:
        return True
    matched = memo.get(targeting)
    if matched is None:
        matched = memo[targeting] = targeting(attributes)
    return matched


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
        position = bucket_v2(h.state, unit.id) / BUCKETS
        member = position < h.fraction and (h.targeting is None or h.targeting(unit.attributes))
        rows.append(Membership(MembershipKind.HOLDOUT, h.key, member, position=position))
    for layer in index.layers:
        position = bucket_v2(layer.state, unit.id) / BUCKETS
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
