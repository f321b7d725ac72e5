"""Snapshots through real Redis: publish-if-newer, the in-memory holder, and Redis outages."""

from __future__ import annotations

import json
import time

import pytest

from ensayo.catalog import codec
from ensayo.catalog.holder import SnapshotHolder
from ensayo.catalog.model import Experiment, Snapshot, Variant
from ensayo.errors import DependencyUnavailable, FailedPrecondition
from ensayo.state.client import connect
from ensayo.state.snapshots import (
    BODY_KEY,
    VERSION_KEY,
    RedisSnapshotPublisher,
    RedisSnapshotSource,
)


def _snap(version: int) -> Snapshot:
    return Snapshot(
        version, experiments=(Experiment(f"e{version}", (Variant("a"), Variant("b"))),)
    )


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class TestPublisher:
    def test_only_newer_versions_are_published(self, redis_url) -> None:
        """A racing older publish cannot overwrite a newer snapshot."""
        client = connect(redis_url)
        publisher, source = RedisSnapshotPublisher(client), RedisSnapshotSource(client)
        assert publisher.publish(_snap(2))
        assert not publisher.publish(_snap(1))
        assert not publisher.publish(_snap(2))
        assert source.version() == 2
        assert source.fetch() == _snap(2)

    def test_publish_to_a_dead_redis_is_dependency_unavailable(self, own_redis) -> None:
        """With Redis down, publishing raises DependencyUnavailable (retryable), not a crash."""
        client = connect(own_redis.url, timeout_s=0.2)
        own_redis.stop()
        with pytest.raises(DependencyUnavailable):
            RedisSnapshotPublisher(client).publish(_snap(1))


class TestHolder:
    def test_before_any_snapshot_it_is_a_failed_precondition(self, redis_url) -> None:
        """Serving needs a snapshot; without one the holder says so clearly."""
        holder = SnapshotHolder(RedisSnapshotSource(connect(redis_url)))
        assert holder.refresh() is False
        with pytest.raises(FailedPrecondition, match="no catalog snapshot"):
            _ = holder.current

    def test_swaps_when_a_newer_snapshot_is_published(self, redis_url) -> None:
        """A running holder picks up each newer snapshot (notified, or by polling)."""
        client = connect(redis_url)
        publisher = RedisSnapshotPublisher(client)
        publisher.publish(_snap(1))
        holder = SnapshotHolder(RedisSnapshotSource(connect(redis_url)), poll_s=0.2)
        holder.start()
        try:
            assert holder.current.version == 1
            publisher.publish(_snap(5))
            assert _wait(lambda: holder.current.version == 5)
            assert holder.current.experiments[0].key == "e5"
        finally:
            holder.stop()

    def test_keeps_serving_the_last_good_snapshot_when_redis_dies(self, own_redis) -> None:
        """Redis going away leaves the held snapshot in place; it recovers when Redis returns."""
        publisher = RedisSnapshotPublisher(connect(own_redis.url))
        publisher.publish(_snap(3))
        holder = SnapshotHolder(
            RedisSnapshotSource(connect(own_redis.url, timeout_s=0.2)), poll_s=0.1
        )
        holder.start()
        try:
            assert holder.current.version == 3
            own_redis.stop()
            time.sleep(0.5)
            assert holder.current.version == 3
            with pytest.raises(DependencyUnavailable):
                holder.refresh()
            own_redis.start()  # same port; empty (Redis kept nothing on disk)
            RedisSnapshotPublisher(connect(own_redis.url)).publish(_snap(4))
            assert _wait(lambda: holder.current.version == 4, timeout=15)
        finally:
            holder.stop()

    def test_a_snapshot_it_cannot_read_does_not_stop_the_refresher(self, redis_url) -> None:
        """A body this release cannot decode (a newer catalog's enum in a rolling upgrade)
        keeps the last snapshot and the refresher alive: the next good one is served (the
        refresh thread used to die silently, leaving the old snapshot forever)."""
        client = connect(redis_url)
        publisher = RedisSnapshotPublisher(client)
        publisher.publish(_snap(1))
        holder = SnapshotHolder(RedisSnapshotSource(connect(redis_url)), poll_s=0.1)
        holder.start()
        try:
            body = json.loads(codec.dumps(_snap(2)))
            body["experiments"][0]["state"] = "archived"  # no such state in this release
            client.set(BODY_KEY, json.dumps(body))
            client.set(VERSION_KEY, 2)
            time.sleep(0.5)
            assert holder.current.version == 1
            publisher.publish(_snap(3))
            assert _wait(lambda: holder.current.version == 3)
        finally:
            holder.stop()
