"""Assignment use cases on real Redis: stickiness, exposures, outages, bandit rewards."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from ensayo.assignment.allocator import AllocationHolder, BanditAllocator
from ensayo.assignment.model import AssignQuery, BatchQuery, Reason, Unit
from ensayo.assignment.usecases import AssignmentUseCases
from ensayo.catalog.holder import SnapshotHolder
from ensayo.catalog.model import (
    Allocation,
    BanditAlgorithm,
    BanditConfig,
    Experiment,
    ExperimentState,
    Metric,
    MetricKind,
    Snapshot,
    Variant,
)
from ensayo.errors import DependencyUnavailable
from ensayo.events import observers
from ensayo.events.model import Event
from ensayo.events.usecases import EventIntake
from ensayo.state.bandit_state import RedisBanditState
from ensayo.state.client import connect
from ensayo.state.events import STREAM_KEY, RedisEventLog, decode_entry
from ensayo.state.snapshots import RedisSnapshotPublisher, RedisSnapshotSource
from ensayo.state.sticky import RedisStickyStore
from tests.unit.assignment.fakes import StepClock

RUNNING = ExperimentState.RUNNING


def _snapshot(version: int, weights=(1.0, 1.0), coverage: float = 1.0) -> Snapshot:
    return Snapshot(
        version,
        experiments=(
            Experiment(
                "sticky",
                (Variant("control", weights[0]), Variant("treatment", weights[1])),
                coverage=coverage,
                sticky=True,
                state=RUNNING,
                version=version,
            ),
            Experiment("plain", (Variant("a"), Variant("b")), state=RUNNING, version=1),
        ),
    )


class Replica:
    """One assignment replica's use cases wired to Redis, as bootstrap wires them."""

    def __init__(self, url: str, clock=None, timeout_s: float = 1.0) -> None:
        self.client = connect(url, timeout_s=timeout_s)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.snapshots = SnapshotHolder(RedisSnapshotSource(self.client))
        self.bandits = RedisBanditState(self.client)
        self.holder = AllocationHolder(self.snapshots, self.bandits)
        self.usecases = AssignmentUseCases(
            self.snapshots,
            self.holder,
            RedisStickyStore(self.client),
            RedisEventLog(self.client),
            self.clock,
            bandits=self.bandits,
        )

    def assign(self, unit_id: str, *keys: str, log: bool = False):
        return self.usecases.assign(AssignQuery(Unit(unit_id), keys, log))


def _publish(url: str, snapshot: Snapshot) -> None:
    assert RedisSnapshotPublisher(connect(url)).publish(snapshot)


class TestStickiness:
    """Sticky assignments survive a weight change published by the catalog."""

    def test_weight_change(self, redis_url) -> None:
        """Stored units keep their variant under 0:1 weights; new units all get treatment."""
        _publish(redis_url, _snapshot(1))
        replica = Replica(redis_url)
        replica.snapshots.refresh()
        ids = [f"u{i}" for i in range(400)]
        before = {i: replica.assign(i, "sticky")[0].variant_key for i in ids}
        assert 150 < list(before.values()).count("control") < 250
        _publish(redis_url, _snapshot(2, weights=(0.0, 1.0), coverage=0.5))
        assert replica.snapshots.refresh()
        after = [replica.assign(i, "sticky")[0] for i in ids]
        assert {a.reason for a in after} == {Reason.STICKY}
        assert {a.experiment_version for a in after} == {2}
        assert {i: a.variant_key for i, a in zip(ids, after, strict=True)} == before
        other = Replica(redis_url)  # another replica reads the same store
        other.snapshots.refresh()
        batch = other.usecases.assign_batch(BatchQuery("sticky", ids))
        assert [batch.variant_keys[v] for v in batch.variant_index] == [before[i] for i in ids]
        newcomers = [other.assign(f"new{i}", "sticky")[0] for i in range(200)]
        enrolled = [a for a in newcomers if a.in_experiment]
        assert 60 < len(enrolled) < 140  # coverage 0.5
        assert {a.variant_key for a in enrolled} == {"treatment"}  # weights 0:1
        assert {a.reason for a in newcomers if not a.in_experiment} == {Reason.NOT_COVERED}

    def test_racing_replicas_agree(self, redis_url) -> None:
        """Two replicas with different weights store one first assignment; both then return it."""
        _publish(redis_url, _snapshot(1, weights=(1.0, 0.0)))
        first = Replica(redis_url)
        first.snapshots.refresh()
        second = Replica(redis_url)
        second.snapshots.refresh()
        second.snapshots._current = _snapshot(5, weights=(0.0, 1.0))  # a replica lagging ahead
        assert first.assign("u1", "sticky")[0].variant_key == "control"
        a = second.assign("u1", "sticky")[0]
        assert (a.reason, a.variant_key) == (Reason.STICKY, "control")


class TestExposures:
    """Exposures go to the event stream once per (unit, experiment, version), across replicas."""

    def test_deduplicated_across_replicas(self, redis_url) -> None:
        """Replicas logging the same exposures write each once, with version and probability."""
        _publish(redis_url, _snapshot(1))
        replicas = [Replica(redis_url), Replica(redis_url)]
        for r in replicas:
            r.snapshots.refresh()
        for r in replicas:
            for i in range(20):
                r.assign(f"u{i}", log=True)
            r.usecases.assign_batch(BatchQuery("plain", [f"u{i}" for i in range(40)], (), True))
        entries = connect(redis_url).xrange(STREAM_KEY)
        events = [decode_entry(fields) for _, fields in entries]
        assert len(events) == 20 + 40  # 20 sticky, 40 plain
        assert len({e.event_id for e in events}) == len(events)
        sample = next(e for e in events if e.experiment_key == "plain")
        assert (sample.name, sample.experiment_version, sample.probability) == (
            "$exposure",
            1,
            0.5,
        )


class TestRedisDown:
    """With Redis down, bucketing continues from memory; sticky degrades; exposures refuse."""

    def test_outage(self, own_redis) -> None:
        """Non-sticky answers are unchanged; sticky falls back to the bucket; logging fails."""
        _publish(own_redis.url, _snapshot(1))
        replica = Replica(own_redis.url, timeout_s=0.2)
        replica.snapshots.refresh()
        ids = [f"u{i}" for i in range(50)]
        plain = [replica.assign(i, "plain")[0] for i in ids]
        fresh = [replica.assign(f"x{i}", "sticky")[0].variant_key for i in range(50)]
        own_redis.stop()
        assert [replica.assign(i, "plain")[0] for i in ids] == plain
        batch = replica.usecases.assign_batch(BatchQuery("plain", ids))
        assert [batch.variant_keys[v] for v in batch.variant_index] == [
            a.variant_key for a in plain
        ]
        degraded = [replica.assign(f"x{i}", "sticky")[0] for i in range(50)]
        assert {a.reason for a in degraded} == {Reason.ASSIGNED}
        assert [a.variant_key for a in degraded] == fresh  # the deterministic bucket
        with pytest.raises(DependencyUnavailable):
            replica.assign("u1", "plain", log=True)
        own_redis.start()  # an empty Redis (no persistence in tests): storing resumes
        assert replica.assign("x0", "sticky")[0].reason is Reason.ASSIGNED
        assert replica.assign("x0", "sticky")[0].reason is Reason.STICKY


def _bandit_snapshot(version: int = 1) -> Snapshot:
    return Snapshot(
        version,
        experiments=(
            Experiment(
                "band",
                (Variant("a"), Variant("b"), Variant("c")),
                allocation=Allocation.BANDIT,
                bandit=BanditConfig(BanditAlgorithm.THOMPSON_BERNOULLI, "buy", 0.05, 60.0, 300),
                metrics=("buy",),
                state=RUNNING,
                version=1,
            ),
        ),
        metrics=(Metric("buy", event_name="purchase", kind=MetricKind.CONVERSION),),
    )


class TestBanditRewards:
    """Rewards arrive through Track's observers and shift traffic; every arm keeps its floor."""

    def test_observer_is_registered(self, redis_url) -> None:
        """observers.PROVIDERS builds the bandit reward observer from the wiring context."""
        client = connect(redis_url)
        built = observers.build_observers(
            redis=client, snapshots=SnapshotHolder(RedisSnapshotSource(client)), clock=None
        )
        assert [type(o).__name__ for o in built] == ["BanditRewards"]

    def test_exactly_once_per_event_id(self, redis_url) -> None:
        """The same purchase tracked twice (or observed twice) is credited once."""
        _publish(redis_url, _bandit_snapshot())
        replica = Replica(redis_url)
        replica.snapshots.refresh()
        arm = replica.assign("u1", "band")[0].variant_key
        [observer] = observers.build_observers(
            redis=replica.client, snapshots=replica.snapshots, clock=replica.clock
        )
        intake = EventIntake(RedisEventLog(replica.client), [observer], replica.clock)
        event = Event("p1", "u1", "purchase", replica.clock())
        assert intake.track([event]).accepted == 1
        assert intake.track([event]).duplicates == 1
        observer.observe([event])
        stats = replica.bandits.arm_stats("band", ["a", "b", "c"])
        assert [s.reward_sum for s in stats] == [1.0 if k == arm else 0.0 for k in "abc"]

    def test_traffic_shifts_to_the_best_arm(self, redis_url) -> None:
        """Simulated conversion rates 2%, 5%, 12%: the best arm ends with most of the traffic,
        every arm at the 5% floor or above (Thompson sampling, seeds pinned)."""
        _publish(redis_url, _bandit_snapshot())
        clock = StepClock(datetime.now(UTC))
        replica = Replica(redis_url, clock=clock)
        replica.snapshots.refresh()
        allocator = BanditAllocator(replica.snapshots, replica.bandits, clock, "sim")
        [observer] = observers.build_observers(
            redis=replica.client, snapshots=replica.snapshots, clock=clock
        )
        intake = EventIntake(RedisEventLog(replica.client), [observer], clock)
        rates = {"a": 0.02, "b": 0.05, "c": 0.12}
        rng = np.random.default_rng(11)
        shares = []
        for period in range(8):
            allocator.tick()
            replica.holder.refresh()
            ids = [f"p{period}-u{i}" for i in range(1500)]
            result = replica.usecases.assign_batch(BatchQuery("band", ids, (), True))
            arms = [result.variant_keys[v] for v in result.variant_index]
            shares.append(arms.count("c") / len(arms))
            bought = [u for u, arm in zip(ids, arms, strict=True) if rng.random() < rates[arm]]
            if bought:
                intake.track([Event(f"buy-{u}", u, "purchase", clock()) for u in bought])
            clock.advance(61)
        final = replica.holder.current()["band"]
        assert final.version >= 6
        assert final.weights[2] == max(final.weights) and final.weights[2] > 0.8
        assert min(final.weights) >= 0.05 - 1e-12
        assert shares[-1] > shares[0] + 0.4
        history = replica.bandits.history("band")
        assert all(min(a.weights) >= 0.05 - 1e-12 for a in history.values())
        exposures = [decode_entry(f) for _, f in replica.client.xrange(STREAM_KEY)]
        versions = {e.allocation_version for e in exposures if e.name == "$exposure"}
        assert len(versions) >= 6  # each period's exposures carry their allocation version


class TestSnapshotSwap:
    """A new snapshot is picked up without restarting; the index is rebuilt once."""

    def test_new_version(self, redis_url) -> None:
        """After a publish and refresh, answers carry the new experiment version."""
        _publish(redis_url, _snapshot(1))
        replica = Replica(redis_url)
        replica.snapshots.refresh()
        assert replica.assign("u1", "plain")[0].experiment_version == 1
        snap = _snapshot(2)
        plain = dataclasses.replace(snap.experiments[1], version=7)
        _publish(redis_url, dataclasses.replace(snap, experiments=(snap.experiments[0], plain)))
        replica.snapshots.refresh()
        assert replica.assign("u1", "plain")[0].experiment_version == 7
