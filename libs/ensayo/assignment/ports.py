"""What the assignment use cases need from the outside world.

The snapshot and bandit allocations in memory, the sticky store, bandit state and signals.
Redis adapters live in ``ensayo.state.sticky`` and ``ensayo.state.bandit_state``; the exposure
sink is the shared ``ensayo.events.ports.EventLog``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ensayo.assignment.bandit import Credit
from ensayo.assignment.model import BanditAllocation
from ensayo.bandits import ArmStats
from ensayo.catalog.model import Snapshot

__all__ = [
    "AllocationReader",
    "BanditStore",
    "NoSignals",
    "Signals",
    "SnapshotReader",
    "StickyStore",
]


class SnapshotReader(Protocol):
    """The in-memory catalog snapshot (``ensayo.catalog.holder.SnapshotHolder``)."""

    @property
    def current(self) -> Snapshot:
        """The snapshot to serve from; FailedPrecondition before the first one."""
        ...

    @property
    def loaded(self) -> Snapshot | None:
        """The snapshot, or None before the first one."""
        ...


class AllocationReader(Protocol):
    """The latest bandit allocations held in memory, by experiment key.

    Returns the same mapping object until an allocation changes, so callers may cache
    anything derived from it by identity.
    """

    def current(self) -> Mapping[str, BanditAllocation]:
        """The allocations to bucket with."""
        ...


class StickyStore(Protocol):
    """First assignments of sticky and bandit experiments, one record per unit.

    Every method raises ``DependencyUnavailable`` when the store cannot be reached.
    """

    def claim(self, unit_id: str, candidates: Mapping[str, str]) -> dict[str, str]:
        """For each experiment key, the variant stored before this call, if any.

        Where none was stored and the candidate variant key is not empty, the candidate is
        stored (first assignment wins). One round trip for all the experiments of a call.
        """
        ...

    def claim_many(
        self, experiment_key: str, unit_ids: Sequence[str], candidates: Sequence[str]
    ) -> list[str | None]:
        """``claim`` for many units of one experiment (pipelined); per unit, what was stored."""
        ...

    def lookup_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, str]]:
        """Read-only: for each (unit id, experiment keys), the stored variants (pipelined)."""
        ...

    def replace(self, unit_id: str, experiment_key: str, variant_key: str) -> None:
        """Overwrite one stored variant (when the stored one no longer exists)."""
        ...

    def forget(self, unit_id: str) -> None:
        """Erase every stored assignment of a unit (right to erasure)."""
        ...


class BanditStore(Protocol):
    """Per-arm statistics, published allocations and the allocator's lock.

    Every method raises ``DependencyUnavailable`` when the store cannot be reached.
    """

    def allocations(self, experiment_keys: Sequence[str]) -> dict[str, BanditAllocation]:
        """The published allocation of each experiment that has one."""
        ...

    def publish_allocation(self, allocation: BanditAllocation, expected_version: int) -> bool:
        """Store ``allocation`` if the published version is ``expected_version`` (-1: none).

        True when stored; replicas racing cannot publish one version twice.
        """
        ...

    def arm_stats(self, experiment_key: str, variant_keys: Sequence[str]) -> list[ArmStats]:
        """Each arm's enrolled units and reward sums, in ``variant_keys`` order."""
        ...

    def record_enrollments(self, experiment_key: str, counts: Mapping[str, int]) -> None:
        """Add newly enrolled units per arm (each unit is counted once, on first storing)."""
        ...

    def credit(self, credits: Sequence[Credit]) -> int:
        """Apply rewards atomically, each at most once per (experiment, event id).

        Returns how many changed a sum.
        """
        ...

    def try_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        """Take a lock for ``ttl_s`` seconds unless someone else holds it."""
        ...

    def unlock(self, name: str, owner: str) -> None:
        """Release a lock this owner holds."""
        ...


class Signals(Protocol):
    """Operational signals (metrics) the use cases emit when they degrade."""

    def sticky_degraded(self, experiments: int) -> None:
        """Sticky lookups for this many experiment assignments fell back to the bucket."""
        ...


class NoSignals:
    """Signals that go nowhere (tests, tools)."""

    def sticky_degraded(self, experiments: int) -> None:
        """Ignore."""
