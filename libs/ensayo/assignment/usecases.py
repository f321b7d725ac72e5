"""Assignment use cases: ``Assign``, ``AssignBatch`` (and the stream), ``GetMemberships``.

The imperative shell around ``ensayo.assignment.engine``: it keeps the compiled index of the
current snapshot, does the sticky store's round trips and writes exposures, through ports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import cast

import numpy as np
import structlog
from numpy.typing import NDArray

from ensayo.assignment.engine import (
    CompiledExperiment,
    Index,
    Pending,
    build_index,
    candidates_many,
    memberships,
    resolve,
    screen_many,
    screen_unit,
)
from ensayo.assignment.model import (
    MAX_BATCH_UNITS,
    MAX_EXPERIMENT_KEYS,
    MAX_UNIT_ID_CHARS,
    Assignment,
    AssignQuery,
    BatchQuery,
    BatchResult,
    Membership,
    Reason,
    Unit,
)
from ensayo.assignment.ports import (
    AllocationReader,
    BanditStore,
    NoSignals,
    Signals,
    SnapshotReader,
    StickyStore,
)
from ensayo.catalog.model import Snapshot
from ensayo.catalog.ports import Clock
from ensayo.errors import DependencyUnavailable, InvalidArgument, NotFound, ResourceExhausted
from ensayo.events.model import EXPOSURE, Event, exposure_id
from ensayo.events.ports import EventLog
from ensayo.unit_ids import FixedWidthIds, as_list

__all__ = ["AssignmentUseCases", "check_unit_id", "check_unit_ids"]

_log = structlog.get_logger()
_DEGRADED_LOG_EVERY_S = 60.0


def check_unit_id(unit_id: str, field: str = "unit.id") -> None:
    """Raise ``InvalidArgument`` naming ``field`` unless the id has 1 to 512 characters, no NUL.

    (A NUL would reach ``$exposure`` events, which the SQL store cannot hold.)
    """
    if not 1 <= len(unit_id) <= MAX_UNIT_ID_CHARS:
        raise InvalidArgument(field, f"must have 1 to {MAX_UNIT_ID_CHARS} characters")
    if "\x00" in unit_id:
        raise InvalidArgument(field, "must not contain NUL characters")


def check_unit_ids(unit_ids: Sequence[str], field: str = "unit_ids") -> None:
    """Validate a batch's ids at once; the error names the first bad one (``unit_ids[7]``).

    ``ResourceExhausted`` beyond ``MAX_BATCH_UNITS`` ids; ``InvalidArgument`` for none, or
    an id that is empty, longer than ``MAX_UNIT_ID_CHARS`` or holds a NUL (fixed-width ids
    read from the wire hold none).
    """
    n = len(unit_ids)
    if n > MAX_BATCH_UNITS:
        raise ResourceExhausted(field, f"at most {MAX_BATCH_UNITS} ids per message, got {n}")
    if n == 0:
        raise InvalidArgument(field, "at least one unit id is required")
    if isinstance(unit_ids, FixedWidthIds):  # one width for all: check it once
        if not 1 <= unit_ids.width <= MAX_UNIT_ID_CHARS:
            raise InvalidArgument(f"{field}[0]", f"must have 1 to {MAX_UNIT_ID_CHARS} characters")
        return
    lengths = np.fromiter(map(len, unit_ids), dtype=np.int64, count=n)
    bad = np.flatnonzero((lengths == 0) | (lengths > MAX_UNIT_ID_CHARS))
    if bad.size:
        raise InvalidArgument(
            f"{field}[{int(bad[0])}]", f"must have 1 to {MAX_UNIT_ID_CHARS} characters"
        )
    if "\x00" in "".join(unit_ids):  # one scan in C; which id only when there is one
        first = next(i for i, unit_id in enumerate(unit_ids) if "\x00" in unit_id)
        raise InvalidArgument(f"{field}[{first}]", "must not contain NUL characters")


def _exposure(
    unit_id: str,
    experiment_key: str,
    experiment_version: int,
    variant_key: str,
    probability: float,
    allocation_version: int,
    now: datetime,
) -> Event:
    """The ``$exposure`` event of one enrolled assignment (the contract's id)."""
    return Event(
        event_id=exposure_id(experiment_key, experiment_version, unit_id),
        unit_id=unit_id,
        name=EXPOSURE,
        time=now,
        experiment_key=experiment_key,
        experiment_version=experiment_version,
        variant_key=variant_key,
        probability=probability,
        allocation_version=allocation_version,
    )


class AssignmentUseCases:
    """Which variant does this unit get? Deterministic, from the in-memory snapshot.

    Redis is touched only for experiments that store assignments (sticky ones and bandits)
    and for exposures. When the sticky store is down those experiments fall back to the
    deterministic bucket without storing it (logged and signalled); when exposures were
    asked for and cannot be written the call fails with ``DependencyUnavailable``.
    """

    def __init__(
        self,
        snapshots: SnapshotReader,
        allocations: AllocationReader,
        sticky: StickyStore,
        exposures: EventLog,
        clock: Clock,
        *,
        bandits: BanditStore | None = None,
        signals: Signals | None = None,
    ) -> None:
        self._snapshots = snapshots
        self._allocations = allocations
        self._sticky = sticky
        self._exposures = exposures
        self._clock = clock
        self._bandits = bandits
        self.signals: Signals = signals or NoSignals()
        self._cache: tuple[Snapshot, object, Index] | None = None
        self._last_degraded_log: datetime | None = None

    # -- index ------------------------------------------------------------------------------
    def index(self) -> Index:
        """The compiled index of the current snapshot and allocations (rebuilt on change)."""
        snapshot = self._snapshots.current
        allocations = self._allocations.current()
        cached = self._cache
        if cached is not None and cached[0] is snapshot and cached[1] is allocations:
            return cached[2]
        previous = cached[2] if cached is not None else None
        index = build_index(snapshot, allocations, previous)
        self._cache = (snapshot, allocations, index)
        return index

    # -- Assign -----------------------------------------------------------------------------
    def assign(self, query: AssignQuery) -> list[Assignment]:
        """One unit, many experiments (empty: every running one), in request order.

        An unknown key answers UNKNOWN_EXPERIMENT. Sticky and bandit experiments share one
        store round trip per call. With ``log_exposure``, every enrolled assignment except
        forced ones is written as a ``$exposure`` event.
        """
        unit = query.unit
        check_unit_id(unit.id)
        if len(query.experiment_keys) > MAX_EXPERIMENT_KEYS:
            raise ResourceExhausted(
                "experiment_keys", f"at most {MAX_EXPERIMENT_KEYS} keys per call"
            )
        plan = self.index().plan(tuple(query.experiment_keys))
        results, pending = screen_unit(plan, unit.id, unit.attributes)
        final: list[Assignment]
        if pending:
            self._settle_unit(unit.id, pending, results)
            final = [a for a in results if a is not None]
        else:
            final = cast(list[Assignment], results)  # placeholders are for pending ones only
        if query.log_exposure:
            enrolled = [a for a in final if a.in_experiment and a.reason is not Reason.FORCED]
            if enrolled:
                now = self._clock()
                events = [
                    _exposure(
                        unit.id,
                        a.experiment_key,
                        a.experiment_version,
                        a.variant_key,
                        a.probability,
                        a.allocation_version,
                        now,
                    )
                    for a in enrolled
                ]
                self._exposures.append(events)
        return final

    def _settle_unit(
        self,
        unit_id: str,
        pending: list[Pending],
        results: list[Assignment | None],
    ) -> None:
        """Sticky lookup (and first store) for one unit, then coverage and variant."""
        wanted = {exp.key: (exp.variant_keys[b] if b >= 0 else "") for _, exp, b in pending}
        stored: dict[str, str] | None
        try:
            stored = self._sticky.claim(unit_id, wanted)
        except DependencyUnavailable as exc:
            self._degraded(len(pending), exc)
            stored = None
        enrolled: dict[str, Counter[str]] = {}
        for position, exp, bucket in pending:
            prior = stored.get(exp.key) if stored is not None else None
            answer = resolve(exp, bucket, prior)
            results[position] = answer
            if stored is None or answer.reason is not Reason.ASSIGNED:
                continue
            if prior is not None:  # the stored variant no longer exists: store the new one
                self._replace(unit_id, exp.key, answer.variant_key)
            if exp.bandit and exp.key not in enrolled:
                enrolled[exp.key] = Counter({answer.variant_key: 1})
        self._record_enrollments(enrolled)

    # -- AssignBatch / AssignStream ---------------------------------------------------------
    def assign_batch(self, query: BatchQuery) -> BatchResult:
        """Many units, one experiment: the variant index of each (-1 when not enrolled).

        Validation is all or nothing: ``ResourceExhausted`` beyond ``MAX_BATCH_UNITS`` ids,
        ``InvalidArgument`` naming ``unit_ids[i]`` or ``attributes``, ``NotFound`` for an
        unknown experiment. Gives every unit the same answer as ``assign``.
        """
        unit_ids = query.unit_ids
        check_unit_ids(unit_ids)
        n = len(unit_ids)
        if query.attributes and len(query.attributes) != n:
            raise InvalidArgument(
                "attributes",
                f"must be empty or parallel to unit_ids ({n} entries), got "
                f"{len(query.attributes)}",
            )
        exp = self.index().experiments.get(query.experiment_key)
        if exp is None:
            raise NotFound("experiment", query.experiment_key)
        screened = screen_many(exp, unit_ids, query.attributes)
        variant = screened.index
        eligible = screened.eligible
        if eligible.any():
            buckets = candidates_many(exp, unit_ids)
            if exp.stores:
                self._settle_batch(exp, unit_ids, eligible, buckets, variant)
            else:
                variant[eligible] = buckets[eligible]
        if query.log_exposure:
            self._log_batch(exp, unit_ids, variant, screened.forced)
        return BatchResult(exp.key, exp.variant_keys, variant, exp.version, exp.allocation_version)

    def _settle_batch(
        self,
        exp: CompiledExperiment,
        unit_ids: Sequence[str],
        eligible: NDArray[np.bool_],
        buckets: NDArray[np.int32],
        variant: NDArray[np.int32],
    ) -> None:
        positions = np.flatnonzero(eligible).tolist()
        ids = as_list(unit_ids)
        units = [ids[i] for i in positions]
        wanted = [exp.variant_keys[b] if b >= 0 else "" for b in buckets[positions].tolist()]
        try:
            stored = self._sticky.claim_many(exp.key, units, wanted)
        except DependencyUnavailable as exc:
            self._degraded(len(positions), exc)
            variant[eligible] = buckets[eligible]
            return
        fresh: Counter[str] = Counter()
        for position, unit_id, want, prior in zip(positions, units, wanted, stored, strict=True):
            index = exp.positions.get(prior) if prior is not None else None
            if index is not None:
                variant[position] = index
                continue
            variant[position] = buckets[position]
            if want:
                fresh[want] += 1
                if prior is not None:
                    self._replace(unit_id, exp.key, want)
        if exp.bandit and fresh:
            self._record_enrollments({exp.key: fresh})

    def _log_batch(
        self,
        exp: CompiledExperiment,
        unit_ids: Sequence[str],
        variant: NDArray[np.int32],
        forced: NDArray[np.bool_],
    ) -> None:
        enrolled = np.flatnonzero((variant >= 0) & ~forced)
        if enrolled.size == 0:
            return
        now = self._clock()
        ids = as_list(unit_ids)
        events = [
            _exposure(
                ids[i],
                exp.key,
                exp.version,
                exp.variant_keys[v],
                exp.weights[v],
                exp.allocation_version,
                now,
            )
            for i, v in zip(enrolled.tolist(), variant[enrolled].tolist(), strict=True)
        ]
        self._exposures.append(events)

    # -- GetMemberships ---------------------------------------------------------------------
    def memberships(self, unit: Unit) -> list[Membership]:
        """Every holdout, layer and running experiment with the unit's standing.

        Read-only: stored sticky variants are read; nothing is stored or logged.
        """
        check_unit_id(unit.id)
        index = self.index()
        keys = [exp.key for exp in index.running if exp.stores]
        stored: dict[str, str] = {}
        if keys:
            try:
                stored = self._sticky.lookup_many([(unit.id, keys)])[0]
            except DependencyUnavailable as exc:
                self._degraded(len(keys), exc)
        return memberships(index, unit, stored)

    # -- helpers ----------------------------------------------------------------------------
    def _replace(self, unit_id: str, experiment_key: str, variant_key: str) -> None:
        try:
            self._sticky.replace(unit_id, experiment_key, variant_key)
        except DependencyUnavailable as exc:
            self._degraded(1, exc)

    def _record_enrollments(self, enrolled: dict[str, Counter[str]]) -> None:
        if self._bandits is None:
            return
        for key, counts in enrolled.items():
            try:
                self._bandits.record_enrollments(key, counts)
            except DependencyUnavailable as exc:
                _log.warning("bandit_enrollment_not_counted", experiment=key, error=str(exc))

    def _degraded(self, experiments: int, exc: DependencyUnavailable) -> None:
        """Sticky store unreachable: serve the deterministic bucket, say so (log throttled)."""
        self.signals.sticky_degraded(experiments)
        now = self._clock()
        last = self._last_degraded_log
        if last is None or (now - last).total_seconds() >= _DEGRADED_LOG_EVERY_S:
            self._last_degraded_log = now
            _log.warning(
                "sticky_degraded",
                experiments=experiments,
                error=str(exc),
                fallback="deterministic bucket, not stored",
            )
