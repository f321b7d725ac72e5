"""In-memory fakes of the assignment ports; the integration tier runs the same contract suite
against them and the Redis adapters, so they cannot drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from ensayo.assignment.bandit import Credit
from ensayo.assignment.model import BanditAllocation
from ensayo.bandits import ArmStats
from ensayo.catalog.model import Snapshot
from ensayo.errors import DependencyUnavailable, FailedPrecondition
from ensayo.events.model import Event


class Switch:
    """A dependency that can be taken down: every call raises DependencyUnavailable."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def hit(self) -> None:
        self.calls += 1
        if self.down:
            raise DependencyUnavailable("redis", "fake outage")


class FixedSnapshots:
    """A SnapshotReader holding whatever the test sets."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.loaded: Snapshot | None = snapshot

    @property
    def current(self) -> Snapshot:
        if self.loaded is None:
            raise FailedPrecondition("no catalog snapshot loaded yet")
        return self.loaded


class FixedAllocations:
    """An AllocationReader; ``set`` swaps the mapping (a new identity)."""

    def __init__(self) -> None:
        self._current: Mapping[str, BanditAllocation] = MappingProxyType({})

    def current(self) -> Mapping[str, BanditAllocation]:
        return self._current

    def set(self, allocations: Mapping[str, BanditAllocation]) -> None:
        self._current = MappingProxyType(dict(allocations))


class MemoryStickyStore(Switch):
    """StickyStore in a dict: unit -> {experiment: variant}."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, dict[str, str]] = {}

    def claim(self, unit_id: str, candidates: Mapping[str, str]) -> dict[str, str]:
        self.hit()
        row = self.data.setdefault(unit_id, {})
        before = {k: row[k] for k in candidates if k in row}
        for key, want in candidates.items():
            if key not in row and want:
                row[key] = want
        return before

    def claim_many(
        self, experiment_key: str, unit_ids: Sequence[str], candidates: Sequence[str]
    ) -> list[str | None]:
        self.hit()
        out: list[str | None] = []
        for unit_id, want in zip(unit_ids, candidates, strict=True):
            row = self.data.setdefault(unit_id, {})
            out.append(row.get(experiment_key))
            if experiment_key not in row and want:
                row[experiment_key] = want
        return out

    def lookup_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, str]]:
        self.hit()
        out = []
        for unit_id, keys in requests:
            row = self.data.get(unit_id, {})
            out.append({k: row[k] for k in keys if k in row})
        return out

    def replace(self, unit_id: str, experiment_key: str, variant_key: str) -> None:
        self.hit()
        self.data.setdefault(unit_id, {})[experiment_key] = variant_key

    def forget(self, unit_id: str) -> None:
        self.hit()
        self.data.pop(unit_id, None)


class MemoryEventLog(Switch):
    """EventLog de-duplicating by event id, like RedisEventLog."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._seen: set[str] = set()

    def append(self, events: Sequence[Event]) -> list[bool]:
        self.hit()
        flags = []
        for event in events:
            fresh = event.event_id not in self._seen
            self._seen.add(event.event_id)
            if fresh:
                self.events.append(event)
            flags.append(fresh)
        return flags


class MemoryBanditStore(Switch):
    """BanditStore in dicts, with the Lua scripts' semantics."""

    def __init__(self) -> None:
        super().__init__()
        self.published: dict[str, BanditAllocation] = {}
        self.history: dict[str, dict[int, BanditAllocation]] = {}
        self.stats: dict[str, dict[str, float]] = {}
        self.units: dict[str, dict[str, float]] = {}
        self.seen: set[tuple[str, str]] = set()
        self.locks: dict[str, str] = {}

    def allocations(self, experiment_keys: Sequence[str]) -> dict[str, BanditAllocation]:
        self.hit()
        return {k: self.published[k] for k in experiment_keys if k in self.published}

    def publish_allocation(self, allocation: BanditAllocation, expected_version: int) -> bool:
        self.hit()
        held = self.published.get(allocation.experiment_key)
        if (held.version if held is not None else -1) != expected_version:
            return False
        self.published[allocation.experiment_key] = allocation
        self.history.setdefault(allocation.experiment_key, {})[allocation.version] = allocation
        return True

    def arm_stats(self, experiment_key: str, variant_keys: Sequence[str]) -> list[ArmStats]:
        self.hit()
        s = self.stats.get(experiment_key, {})
        arms = []
        for arm in variant_keys:
            n = int(max(s.get(f"n:{arm}", 0), s.get(f"r:{arm}", 0)))
            total, squares = s.get(f"sum:{arm}", 0.0), max(s.get(f"sumsq:{arm}", 0.0), 0.0)
            arms.append(ArmStats(n, total, squares) if n > 0 else ArmStats())
        return arms

    def record_enrollments(self, experiment_key: str, counts: Mapping[str, int]) -> None:
        self.hit()
        s = self.stats.setdefault(experiment_key, {})
        for arm, count in counts.items():
            s[f"n:{arm}"] = s.get(f"n:{arm}", 0) + count

    def credit(self, credits: Sequence[Credit]) -> int:
        self.hit()
        changed = 0
        for c in credits:
            marker = (c.experiment_key, c.event_id)
            if marker in self.seen:
                continue
            self.seen.add(marker)
            s = self.stats.setdefault(c.experiment_key, {})
            units = self.units.setdefault(c.experiment_key, {})
            arm = c.variant_key
            if c.conversion:
                if c.unit_id in units:
                    continue
                units[c.unit_id] = 1.0
                s[f"r:{arm}"] = s.get(f"r:{arm}", 0) + 1
                s[f"sum:{arm}"] = s.get(f"sum:{arm}", 0.0) + 1
                s[f"sumsq:{arm}"] = s.get(f"sumsq:{arm}", 0.0) + 1
            else:
                prev = units.get(c.unit_id)
                if prev is None:
                    s[f"r:{arm}"] = s.get(f"r:{arm}", 0) + 1
                    prev = 0.0
                total = prev + c.value
                units[c.unit_id] = total
                s[f"sum:{arm}"] = s.get(f"sum:{arm}", 0.0) + c.value
                s[f"sumsq:{arm}"] = s.get(f"sumsq:{arm}", 0.0) + total * total - prev * prev
            changed += 1
        return changed

    def try_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        self.hit()
        if name in self.locks:
            return False
        self.locks[name] = owner
        return True

    def unlock(self, name: str, owner: str) -> None:
        self.hit()
        if self.locks.get(name) == owner:
            del self.locks[name]


class StepClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
