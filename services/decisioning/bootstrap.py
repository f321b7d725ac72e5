"""Composition root of decisioning: Redis adapters, snapshot and model holders, clock, ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ensayo.catalog.holder import SnapshotHolder
from ensayo.catalog.ports import Clock
from ensayo.decisioning.holder import ModelHolder
from ensayo.decisioning.model import DecisioningSettings
from ensayo.decisioning.ports import IdFactory
from ensayo.decisioning.usecases import DecisioningUseCases
from ensayo.events.shipper import EventShipper
from ensayo.serverkit.config import ConfigError, ServerConfig
from ensayo.state.client import connect
from ensayo.state.contacts import RedisContactStore
from ensayo.state.decisions import RedisDecisionStore, new_decision_id
from ensayo.state.events import RedisEventLog
from ensayo.state.models import RedisModelStore
from ensayo.state.snapshots import RedisSnapshotSource

__all__ = ["Decisioning", "build", "utcnow"]


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class Decisioning:
    """The wired use cases, their holders, and what must be closed with them."""

    usecases: DecisioningUseCases
    snapshots: SnapshotHolder
    models: ModelHolder
    close: Callable[[], None]


def build(
    config: ServerConfig,
    settings: DecisioningSettings,
    *,
    clock: Clock = utcnow,
    ids: IdFactory = new_decision_id,
) -> Decisioning:
    """Connect to Redis and start the snapshot and model refreshers.

    Raises ConfigError without ``ENSAYO_REDIS_URL``: contact policies, models and decision
    logs all live there, so decisioning cannot run without it.
    """
    if not config.redis_url:
        raise ConfigError(
            ["ENSAYO_REDIS_URL: required by decisioning (contact counters, models, decision log)"]
        )
    client = connect(config.redis_url)
    snapshots = SnapshotHolder(RedisSnapshotSource(client), poll_s=config.snapshot_poll_s)
    snapshots.start()
    events = RedisEventLog(client)
    shipper = EventShipper(events, flush_s=settings.log_flush_s) if settings.log_flush_s else None
    model_store = RedisModelStore(client)
    models = ModelHolder(model_store, settings.feature_spec_id(), len(settings.features))
    models.start(settings.model_refresh_s)
    usecases = DecisioningUseCases(
        snapshots=snapshots,
        models=models,
        model_store=model_store,
        contacts=RedisContactStore(client),
        decisions=RedisDecisionStore(client),
        events=events,
        clock=clock,
        ids=ids,
        settings=settings,
        decision_log=shipper,
    )

    def close() -> None:
        snapshots.stop()
        models.stop()
        if shipper is not None:
            shipper.close()  # the last decisions' logs, before Redis goes
        client.close()

    return Decisioning(usecases, snapshots, models, close)
