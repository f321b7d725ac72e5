"""Composition root of assignment: snapshot holder, Redis adapters, bandit loop, use cases."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from ensayo.assignment.allocator import AllocationHolder, BanditAllocator, BanditLoop
from ensayo.assignment.usecases import AssignmentUseCases
from ensayo.catalog.holder import SnapshotHolder
from ensayo.catalog.ports import Clock
from ensayo.serverkit.config import ServerConfig
from ensayo.state.bandit_state import RedisBanditState
from ensayo.state.client import connect
from ensayo.state.events import RedisEventLog
from ensayo.state.snapshots import RedisSnapshotSource
from ensayo.state.sticky import RedisStickyStore
from services.assignment.config import AssignmentConfig

__all__ = ["Assignment", "build", "utcnow"]


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class Assignment:
    """The wired use cases and the background parts to start and stop with the server."""

    usecases: AssignmentUseCases
    snapshots: SnapshotHolder
    loop: BanditLoop
    client: redis.Redis

    def start(self) -> None:
        """Load the snapshot (if published), then refresh it and the allocations in threads."""
        self.snapshots.start()
        self.loop.start()

    def close(self) -> None:
        """Stop the threads and the Redis connections."""
        self.loop.stop()
        self.snapshots.stop()
        self.client.close()


def build(
    config: ServerConfig, settings: AssignmentConfig, *, clock: Clock = utcnow
) -> Assignment:
    """Wire the Redis adapters into the use cases (nothing is started)."""
    client = connect(settings.redis_url)
    snapshots = SnapshotHolder(RedisSnapshotSource(client), poll_s=config.snapshot_poll_s)
    bandits = RedisBanditState(client)
    holder = AllocationHolder(snapshots, bandits)
    allocator = None
    if settings.allocator:
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        allocator = BanditAllocator(snapshots, bandits, clock, owner)
    loop = BanditLoop(holder, allocator, settings.allocation_poll_s)
    usecases = AssignmentUseCases(
        snapshots,
        holder,
        RedisStickyStore(client),
        RedisEventLog(client),
        clock,
        bandits=bandits,
    )
    return Assignment(usecases, snapshots, loop, client)
