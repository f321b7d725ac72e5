"""Bandit experiments: allocation versions, floors, due dates, rewards and the allocator."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ensayo.assignment.allocator import AllocationHolder, BanditAllocator, BanditLoop
from ensayo.assignment.bandit import (
    Credit,
    allocation_for,
    burned_in,
    initial_allocation,
    is_due,
    next_allocation,
    reward_rules,
)
from ensayo.assignment.model import BanditAllocation
from ensayo.assignment.rewards import BanditRewards
from ensayo.bandits import ArmStats
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
from ensayo.events.model import Event
from tests.unit.assignment.fakes import (
    FixedSnapshots,
    MemoryBanditStore,
    MemoryStickyStore,
    StepClock,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _bandit(key: str = "b", floor: float = 0.1, period: float = 60.0, burn_in: int = 0, **kw):
    kw.setdefault("variants", (Variant("a", 1), Variant("b", 0), Variant("c", 1)))
    return Experiment(
        key,
        allocation=Allocation.BANDIT,
        bandit=BanditConfig(BanditAlgorithm.THOMPSON_BERNOULLI, "conv", floor, period, burn_in),
        metrics=("conv",),
        state=ExperimentState.RUNNING,
        version=1,
        **kw,
    )


def _snapshot(*experiments: Experiment, kind: MetricKind = MetricKind.CONVERSION) -> Snapshot:
    return Snapshot(
        1, experiments=experiments, metrics=(Metric("conv", event_name="purchase", kind=kind),)
    )


class TestAllocations:
    """Version 0, stored versions, due dates and the next version."""

    def test_initial_allocation_applies_the_floor(self) -> None:
        """Version 0 is the experiment's weights with every arm at the floor or above."""
        alloc = initial_allocation(_bandit(floor=0.1))
        assert alloc.version == 0
        np.testing.assert_allclose(alloc.weights, [0.1 + 0.7 * 0.5, 0.1, 0.1 + 0.7 * 0.5])

    def test_stored_allocation_is_used_when_it_fits(self) -> None:
        """A stored allocation with the experiment's variants is used as is."""
        stored = BanditAllocation("b", 5, ("a", "b", "c"), (0.2, 0.3, 0.5), T0)
        assert allocation_for(_bandit(), stored) is stored

    def test_stored_allocation_for_other_variants_falls_back(self) -> None:
        """After the variants changed, the version is kept with version-0 weights."""
        stored = BanditAllocation("b", 5, ("a", "b"), (0.5, 0.5), T0)
        got = allocation_for(_bandit(), stored)
        assert got.version == 5
        assert got.weights == initial_allocation(_bandit()).weights

    def test_due_after_the_period(self) -> None:
        """A new version is due update_period_s after the current one was computed."""
        current = BanditAllocation("b", 1, ("a", "b", "c"), (0.4, 0.2, 0.4), T0)
        exp = _bandit(period=60)
        assert not is_due(exp, current, T0 + timedelta(seconds=59))
        assert is_due(exp, current, T0 + timedelta(seconds=60))
        assert is_due(exp, None, T0)

    def test_burn_in_counts_enrolled_units(self) -> None:
        """No update before burn_in_units units are enrolled across the arms."""
        exp = _bandit(burn_in=100)
        assert not burned_in(exp, [ArmStats(50), ArmStats(49), ArmStats()])
        assert burned_in(exp, [ArmStats(50), ArmStats(50), ArmStats()])

    def test_next_allocation_is_deterministic_and_floored(self) -> None:
        """Same stats, same version: same weights (seeded by key and version); floor kept."""
        exp = _bandit(floor=0.05)
        arms = [ArmStats(1000, 100, 100), ArmStats(1000, 10, 10), ArmStats(1000, 50, 50)]
        current = BanditAllocation("b", 2, ("a", "b", "c"), (1 / 3,) * 3, T0)
        first = next_allocation(exp, current, arms, T0)
        again = next_allocation(exp, current, arms, T0)
        assert first == again and first.version == 3
        assert first.seed_key == "allocation:b:3"
        assert min(first.weights) >= 0.05 - 1e-12
        assert int(np.argmax(first.weights)) == 0
        assert sum(first.weights) == pytest.approx(1.0)


class TestRewardRules:
    """Which events reward which running bandit."""

    def test_rules_by_event_name(self) -> None:
        """Running bandits with a known reward metric are listed under its event name."""
        paused = dataclasses.replace(_bandit("p"), state=ExperimentState.PAUSED)
        fixed = Experiment("fixed", state=ExperimentState.RUNNING)
        rules = reward_rules(_snapshot(_bandit("b"), paused, fixed))
        assert list(rules) == ["purchase"]
        assert [r.experiment_key for r in rules["purchase"]] == ["b"]
        assert rules["purchase"][0].conversion

    def test_mean_metric_rewards_values(self) -> None:
        """A mean metric is not a conversion: values add up."""
        rules = reward_rules(_snapshot(_bandit(), kind=MetricKind.MEAN))
        assert not rules["purchase"][0].conversion


def _event(event_id: str, unit: str, name: str = "purchase", **kw) -> Event:
    return Event(event_id, unit, name, T0, **kw)


class TestRewards:
    """The reward observer credits the right arm once."""

    def _observer(self, kind: MetricKind = MetricKind.CONVERSION):
        sticky, store = MemoryStickyStore(), MemoryBanditStore()
        snaps = FixedSnapshots(_snapshot(_bandit(), kind=kind))
        return BanditRewards(snaps, sticky, store), sticky, store

    def test_credit_through_event_keys(self) -> None:
        """experiment_key + variant_key name the arm directly."""
        rewards, _, store = self._observer()
        rewards.observe([_event("e1", "u1", experiment_key="b", variant_key="c")])
        assert store.arm_stats("b", ["a", "b", "c"])[2] == ArmStats(1, 1.0, 1.0)

    def test_credit_through_the_stored_assignment(self) -> None:
        """Without keys, the unit's stored arm is credited; unassigned units credit nothing."""
        rewards, sticky, store = self._observer()
        sticky.claim("u1", {"b": "a"})
        rewards.observe([_event("e1", "u1"), _event("e2", "stranger")])
        assert [s.reward_sum for s in store.arm_stats("b", ["a", "b", "c"])] == [1.0, 0, 0]

    def test_events_of_other_experiments_or_names_are_ignored(self) -> None:
        """Another experiment's key, or another event name, credits nothing."""
        rewards, sticky, store = self._observer()
        sticky.claim("u1", {"b": "a"})
        rewards.observe(
            [
                _event("e1", "u1", experiment_key="other", variant_key="a"),
                _event("e2", "u1", "click"),
            ]
        )
        assert store.stats == {}

    def test_conversion_counts_once_per_unit_and_event_ids_once(self) -> None:
        """Bernoulli rewards: a unit converts once; a repeated event id is not recounted."""
        rewards, sticky, store = self._observer()
        sticky.claim("u1", {"b": "a"})
        rewards.observe([_event("e1", "u1"), _event("e1", "u1"), _event("e2", "u1")])
        assert store.arm_stats("b", ["a"])[0] == ArmStats(1, 1.0, 1.0)

    def test_mean_rewards_sum_per_unit_totals(self) -> None:
        """Mean rewards: sums of values; squares are of each unit's total."""
        rewards, sticky, store = self._observer(MetricKind.MEAN)
        sticky.claim("u1", {"b": "a"})
        sticky.claim("u2", {"b": "a"})
        rewards.observe(
            [
                _event("e1", "u1", value=2.0),
                _event("e2", "u1", value=3.0),
                _event("e3", "u2", value=1.0),
            ]
        )
        assert store.arm_stats("b", ["a"])[0] == ArmStats(2, 6.0, 26.0)

    def test_no_snapshot_no_credit(self) -> None:
        """Before a snapshot is loaded, events are ignored."""
        store = MemoryBanditStore()
        BanditRewards(FixedSnapshots(None), MemoryStickyStore(), store).observe([_event("e", "u")])
        assert store.calls == 0


class TestAllocator:
    """One elected replica publishes versions on schedule; holders pick them up."""

    def test_version_zero_then_one_after_period_and_burn_in(self) -> None:
        """Start record first; version 1 only after the period and the burn-in."""
        clock, store = StepClock(T0), MemoryBanditStore()
        snaps = FixedSnapshots(_snapshot(_bandit(period=60, burn_in=10)))
        allocator = BanditAllocator(snaps, store, clock, "me")
        [zero] = allocator.tick()
        assert (zero.version, zero.computed_at) == (0, T0)
        clock.advance(61)
        assert allocator.tick() == []  # burn-in not reached
        store.record_enrollments("b", {"a": 5, "c": 5})
        [one] = allocator.tick()
        assert one.version == 1 and min(one.weights) >= 0.1 - 1e-12
        assert allocator.tick() == []  # next one is due in 60 s
        assert sorted(store.history["b"]) == [0, 1]

    def test_a_held_lock_blocks_other_replicas(self) -> None:
        """While another replica holds the lock, nothing is published."""
        store = MemoryBanditStore()
        snaps = FixedSnapshots(_snapshot(_bandit()))
        assert store.try_lock("allocator:b", "other", 30)
        assert BanditAllocator(snaps, store, StepClock(T0), "me").tick() == []

    def test_two_replicas_publish_each_version_once(self) -> None:
        """Replicas ticking in turn never publish one version twice (compare-and-set)."""
        clock, store = StepClock(T0), MemoryBanditStore()
        snaps = FixedSnapshots(_snapshot(_bandit(period=10)))
        replicas = [BanditAllocator(snaps, store, clock, f"r{i}") for i in range(2)]
        made = []
        for _ in range(5):
            for r in replicas:
                made += r.tick()
            clock.advance(10)
        assert [a.version for a in made] == [0, 1, 2, 3, 4]

    def test_holder_and_loop(self) -> None:
        """The loop publishes, the holder swaps to the published mapping; outages are survived."""
        clock, store = StepClock(T0), MemoryBanditStore()
        snaps = FixedSnapshots(_snapshot(_bandit()))
        holder = AllocationHolder(snaps, store)
        loop = BanditLoop(holder, BanditAllocator(snaps, store, clock, "me"))
        before = holder.current()
        loop.run_once()
        assert holder.current() is not before and holder.current()["b"].version == 0
        same = holder.current()
        loop.run_once()
        assert holder.current() is same  # unchanged: same identity, index not rebuilt
        store.down = True
        loop.run_once()  # logged, not raised
        assert holder.current() is same


class TestCredit:
    """Credits are plain values."""

    def test_fields(self) -> None:
        """A credit names experiment, arm, unit and event."""
        c = Credit("b", "a", "u", "e", 1.0, True)
        assert (c.experiment_key, c.variant_key, c.conversion) == ("b", "a", True)
