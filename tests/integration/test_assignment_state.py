"""Port contracts of sticky and bandit state, run against the fakes and the Redis adapters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis as redis_lib

from ensayo.assignment.bandit import Credit
from ensayo.assignment.model import BanditAllocation
from ensayo.bandits import ArmStats
from ensayo.errors import DependencyUnavailable
from ensayo.state.bandit_state import RedisBanditState, history_key, stats_key
from ensayo.state.client import connect
from ensayo.state.sticky import RedisStickyStore, sticky_key
from tests.unit.assignment.fakes import MemoryBanditStore, MemoryStickyStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
def sticky(request, redis_url):
    if request.param == "memory":
        return MemoryStickyStore()
    return RedisStickyStore(connect(redis_url))


@pytest.fixture(params=["memory", "redis"])
def bandits(request, redis_url):
    if request.param == "memory":
        return MemoryBanditStore()
    return RedisBanditState(connect(redis_url))


class TestStickyContract:
    """First write wins; reads report what was stored before the call."""

    def test_claim(self, sticky) -> None:
        """The first candidate is stored; later claims return it and store nothing new."""
        assert sticky.claim("u1", {"a": "x", "b": "", "c": "z"}) == {}
        assert sticky.claim("u1", {"a": "y", "b": "q", "c": ""}) == {"a": "x", "c": "z"}
        assert sticky.lookup_many([("u1", ["a", "b", "c", "d"])]) == [
            {"a": "x", "b": "q", "c": "z"}
        ]

    def test_claim_many(self, sticky) -> None:
        """Batch claims have the same semantics, duplicates included."""
        assert sticky.claim_many("e", ["u1", "u2", "u1", "u3"], ["x", "", "y", "z"]) == [
            None,
            None,
            "x",
            None,
        ]
        assert sticky.lookup_many([("u1", ["e"]), ("u2", ["e"]), ("u3", ["e"])]) == [
            {"e": "x"},
            {},
            {"e": "z"},
        ]

    def test_replace_and_forget(self, sticky) -> None:
        """Replace overwrites one experiment; forget erases the unit."""
        sticky.claim("u1", {"a": "x", "b": "y"})
        sticky.replace("u1", "a", "w")
        assert sticky.lookup_many([("u1", ["a", "b"])]) == [{"a": "w", "b": "y"}]
        sticky.forget("u1")
        assert sticky.lookup_many([("u1", ["a", "b"])]) == [{}]

    def test_unicode_ids(self, sticky) -> None:
        """Non-ASCII and astral ids round-trip."""
        sticky.claim("ü-😀", {"é": "ñ"})
        assert sticky.lookup_many([("ü-😀", ["é"])]) == [{"é": "ñ"}]


class TestStickyOnRedis:
    """Redis specifics: one hash per unit with its hash tag; outages."""

    def test_one_hash_tagged_key_per_unit(self, redis_url) -> None:
        """All of a unit's experiments live in ``{unit:<id>}:sticky``."""
        client = connect(redis_url)
        RedisStickyStore(client).claim("u1", {"a": "x", "b": "y"})
        assert client.keys("*") == [b"{unit:u1}:sticky"] == [sticky_key("u1").encode()]
        assert client.hgetall("{unit:u1}:sticky") == {b"a": b"x", b"b": b"y"}

    def test_outage_is_dependency_unavailable(self, own_redis) -> None:
        """Every call on a dead Redis raises DependencyUnavailable."""
        store = RedisStickyStore(connect(own_redis.url, timeout_s=0.2))
        own_redis.stop()
        for call in (
            lambda: store.claim("u", {"a": "x"}),
            lambda: store.claim_many("a", ["u"], ["x"]),
            lambda: store.lookup_many([("u", ["a"])]),
        ):
            with pytest.raises(DependencyUnavailable):
                call()


def _alloc(version: int, weights=(0.5, 0.5)) -> BanditAllocation:
    return BanditAllocation("b", version, ("x", "y"), weights, T0, f"allocation:b:{version}")


class TestBanditContract:
    """Allocation compare-and-set, statistics, exactly-once credits, locks."""

    def test_publish_is_compare_and_set(self, bandits) -> None:
        """Version 0 only over nothing; N+1 only over N; the latest is read back."""
        assert bandits.allocations(["b"]) == {}
        assert bandits.publish_allocation(_alloc(0), -1)
        assert not bandits.publish_allocation(_alloc(0), -1)
        assert not bandits.publish_allocation(_alloc(2), 1)
        assert bandits.publish_allocation(_alloc(1, (0.25, 0.75)), 0)
        assert bandits.allocations(["b", "other"]) == {"b": _alloc(1, (0.25, 0.75))}

    def test_statistics(self, bandits) -> None:
        """n = enrolled (or rewarded) units; conversions once per unit; mean sums of totals."""
        bandits.record_enrollments("b", {"x": 3, "y": 1})
        bandits.record_enrollments("b", {"x": 1})
        assert (
            bandits.credit(
                [
                    Credit("b", "x", "u1", "e1", 1.0, True),
                    Credit("b", "x", "u1", "e2", 1.0, True),  # same unit: no second conversion
                    Credit("b", "x", "u2", "e3", 1.0, True),
                    Credit("b", "x", "u2", "e3", 1.0, True),  # same event id
                ]
            )
            == 2
        )
        bandits.credit(
            [
                Credit("m", "y", "u1", "e1", 2.0, False),
                Credit("m", "y", "u1", "e2", 3.0, False),
                Credit("m", "y", "u2", "e3", 1.5, False),
            ]
        )
        assert bandits.arm_stats("b", ["x", "y", "z"]) == [
            ArmStats(4, 2.0, 2.0),
            ArmStats(1),
            ArmStats(),
        ]
        assert bandits.arm_stats("m", ["y"]) == [ArmStats(2, 6.5, 25 + 2.25)]

    def test_lock(self, bandits) -> None:
        """One owner at a time; only the owner releases."""
        assert bandits.try_lock("allocator:b", "a", 30)
        assert not bandits.try_lock("allocator:b", "b", 30)
        bandits.unlock("allocator:b", "b")
        assert not bandits.try_lock("allocator:b", "b", 30)
        bandits.unlock("allocator:b", "a")
        assert bandits.try_lock("allocator:b", "b", 30)


class TestBanditOnRedis:
    """Redis specifics: hash tags, history, lock expiry, outages."""

    def test_keys_share_the_experiment_hash_tag(self, redis_url) -> None:
        """Every key of an experiment carries ``{exp:<key>}``; history keeps each version."""
        client = connect(redis_url)
        state = RedisBanditState(client)
        state.publish_allocation(_alloc(0), -1)
        state.publish_allocation(_alloc(1), 0)
        state.record_enrollments("b", {"x": 1})
        state.credit([Credit("b", "x", "u1", "e1", 1.0, True)])
        keys = {k.decode() for k in client.keys("*")}
        assert all(k.startswith("{exp:b}:") for k in keys), keys
        assert stats_key("b") in keys
        assert sorted(state.history("b")) == [0, 1]
        assert client.hlen(history_key("b")) == 2

    def test_lock_expires(self, redis_url) -> None:
        """A lock taken with a short TTL frees itself (SET NX PX)."""
        client = connect(redis_url)
        state = RedisBanditState(client)
        assert state.try_lock("l", "a", 0.05)
        assert 0 < client.pttl("ensayo:lock:l") <= 50

    def test_outage(self, own_redis) -> None:
        """A dead Redis is DependencyUnavailable."""
        state = RedisBanditState(connect(own_redis.url, timeout_s=0.2))
        own_redis.stop()
        with pytest.raises(DependencyUnavailable):
            state.allocations(["b"])
        with pytest.raises(DependencyUnavailable):
            state.credit([Credit("b", "x", "u", "e", 1.0, True)])

    def test_client_type(self, redis_url) -> None:
        """The adapters take a plain redis.Redis client."""
        assert isinstance(connect(redis_url), redis_lib.Redis)
