"""Bandit allocations: held in memory on every replica, recomputed by one elected replica.

``AllocationHolder`` refreshes the published allocations like the snapshot holder does;
``BanditAllocator`` publishes a new allocation version every ``update_period_s`` (after the
burn-in) under a lock, so replicas never race; ``BanditLoop`` runs both in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import MappingProxyType

import structlog

from ensayo.assignment.bandit import burned_in, initial_allocation, is_due, next_allocation
from ensayo.assignment.model import BanditAllocation
from ensayo.assignment.ports import BanditStore, SnapshotReader
from ensayo.catalog.model import Allocation, Experiment, ExperimentState
from ensayo.catalog.ports import Clock
from ensayo.errors import DependencyUnavailable

__all__ = ["AllocationHolder", "BanditAllocator", "BanditLoop", "running_bandits"]

_log = structlog.get_logger()
_EMPTY: Mapping[str, BanditAllocation] = MappingProxyType({})


def running_bandits(snapshots: SnapshotReader) -> list[Experiment]:
    """The running bandit experiments of the loaded snapshot (none before the first one)."""
    snapshot = snapshots.loaded
    if snapshot is None:
        return []
    return [
        e
        for e in snapshot.experiments
        if e.state is ExperimentState.RUNNING and e.allocation is Allocation.BANDIT
    ]


class AllocationHolder:
    """The published allocations of running bandits, in memory (an ``AllocationReader``).

    ``current()`` returns the same read-only mapping until ``refresh`` sees a change. When
    the store is down the last allocations stay in use.
    """

    def __init__(self, snapshots: SnapshotReader, store: BanditStore) -> None:
        self._snapshots = snapshots
        self._store = store
        self._current = _EMPTY

    def current(self) -> Mapping[str, BanditAllocation]:
        """The allocations to bucket with, by experiment key."""
        return self._current

    def refresh(self) -> bool:
        """Read the published allocations; True when they changed.

        Raises ``DependencyUnavailable`` when the store is down (the held ones stay).
        """
        keys = [e.key for e in running_bandits(self._snapshots)]
        found = self._store.allocations(keys) if keys else {}
        if found == dict(self._current):
            return False
        self._current = MappingProxyType(found)
        _log.info("allocations_swapped", versions={k: a.version for k, a in sorted(found.items())})
        return True


class BanditAllocator:
    """Publishes the next allocation version of each running bandit when it is due.

    Any replica may run it: a lock (``SET NX PX`` in Redis) elects one per experiment and
    update, and publishing is compare-and-set on the version, so a version is computed once.
    The first tick on a bandit publishes version 0 with its start time (the experiment's own
    weights, floored); version 1 follows ``update_period_s`` later once ``burn_in_units``
    units are enrolled, and so on.
    """

    def __init__(
        self,
        snapshots: SnapshotReader,
        store: BanditStore,
        clock: Clock,
        owner: str,
        lock_ttl_s: float = 30.0,
    ) -> None:
        self._snapshots = snapshots
        self._store = store
        self._clock = clock
        self._owner = owner
        self._lock_ttl_s = lock_ttl_s

    def tick(self) -> list[BanditAllocation]:
        """One pass over the running bandits; returns the allocations this replica published."""
        bandits = running_bandits(self._snapshots)
        if not bandits:
            return []
        published_now = self._store.allocations([e.key for e in bandits])
        out: list[BanditAllocation] = []
        for exp in bandits:
            made = self._update(exp, published_now.get(exp.key))
            if made is not None:
                out.append(made)
        return out

    def _update(
        self, exp: Experiment, current: BanditAllocation | None
    ) -> BanditAllocation | None:
        now = self._clock()
        if current is not None and not is_due(exp, current, now):
            return None
        arms = self._store.arm_stats(exp.key, [v.key for v in exp.variants])
        if current is not None and not burned_in(exp, arms):
            return None
        lock = f"allocator:{exp.key}"
        if not self._store.try_lock(lock, self._owner, self._lock_ttl_s):
            return None
        try:
            if current is None:
                start = initial_allocation(exp)
                made = BanditAllocation(exp.key, 0, start.variant_keys, start.weights, now)
                expected = -1
            else:
                made = next_allocation(exp, current, arms, now)
                expected = current.version
            if not self._store.publish_allocation(made, expected):
                return None
        finally:
            self._store.unlock(lock, self._owner)
        _log.info(
            "allocation_published",
            experiment=exp.key,
            version=made.version,
            weights=[round(w, 4) for w in made.weights],
            enrolled=sum(a.n for a in arms),
        )
        return made


class BanditLoop:
    """Refreshes the holder and ticks the allocator every ``period_s`` in a daemon thread."""

    def __init__(
        self, holder: AllocationHolder, allocator: BanditAllocator | None, period_s: float = 1.0
    ) -> None:
        self._holder = holder
        self._allocator = allocator
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def run_once(self) -> None:
        """Allocate (if elected), then refresh; store outages are logged once, not raised."""
        try:
            if self._allocator is not None:
                self._allocator.tick()
            self._holder.refresh()
            if self._failing:
                _log.info("bandit_state_recovered")
            self._failing = False
        except DependencyUnavailable as exc:
            if not self._failing:
                _log.warning("bandit_state_unavailable", error=str(exc))
            self._failing = True

    def start(self) -> None:
        """Run once now, then every ``period_s`` until ``stop``."""
        self.run_once()
        self._thread = threading.Thread(target=self._run, name="bandits", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            self.run_once()
