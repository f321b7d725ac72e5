"""Catalog snapshots on Redis: publish only if newer (atomically, in Lua), fetch, and notify.

Keys share the ``{ensayo:snapshot}`` hash tag so the script runs on Redis Cluster too.
"""

from __future__ import annotations

import redis

from ensayo.catalog import codec
from ensayo.catalog.model import Snapshot
from ensayo.state.client import redis_errors

__all__ = ["BODY_KEY", "CHANNEL", "VERSION_KEY", "RedisSnapshotPublisher", "RedisSnapshotSource"]

VERSION_KEY = "{ensayo:snapshot}:version"
BODY_KEY = "{ensayo:snapshot}:body"
CHANNEL = "ensayo:snapshot"

_PUBLISH_IF_NEWER = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[3], ARGV[1])
  return 1
end
return 0
"""


class RedisSnapshotPublisher:
    """``SnapshotPublisher`` on Redis; replicas racing to publish cannot go backwards."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(_PUBLISH_IF_NEWER)

    def publish(self, snapshot: Snapshot) -> bool:
        """Publish unless Redis holds this version or a newer one."""
        with redis_errors():
            done = self._script(
                keys=[VERSION_KEY, BODY_KEY],
                args=[snapshot.version, codec.dumps(snapshot), CHANNEL],
            )
        return bool(done)


class RedisSnapshotSource:
    """``SnapshotSource`` on Redis: a cheap version read, the body only when newer."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pubsub: redis.client.PubSub | None = None

    def version(self) -> int:
        """The published version (0 when none)."""
        with redis_errors():
            raw = self._client.get(VERSION_KEY)
        return int(raw) if raw else 0

    def fetch(self) -> Snapshot | None:
        """The published snapshot, or None when none is published."""
        with redis_errors():
            body = self._client.get(BODY_KEY)
        return codec.loads(Snapshot, body) if body else None

    def wait_for_change(self, timeout_s: float) -> None:
        """Return on a publish notification or after ``timeout_s``, whichever is first."""
        with redis_errors():
            if self._pubsub is None:
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                self._pubsub.subscribe(CHANNEL)
            try:
                self._pubsub.get_message(timeout=timeout_s)
            except (redis.ConnectionError, redis.TimeoutError):
                self._pubsub = None
                raise

    def close(self) -> None:
        """Drop the subscription."""
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
