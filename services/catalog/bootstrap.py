"""Composition root of the catalog: SQL repository, Redis publisher, clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from ensayo.catalog.usecases import CatalogUseCases
from ensayo.serverkit.config import ServerConfig
from ensayo.state.client import connect
from ensayo.state.snapshots import RedisSnapshotPublisher
from ensayo.storage import engine as sql
from ensayo.storage.catalog_repo import SqlCatalogRepository

__all__ = ["Catalog", "build"]

_log = structlog.get_logger()
REPUBLISH_PERIOD_S = 5.0


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class Catalog:
    """The wired use cases and what must be closed with them."""

    usecases: CatalogUseCases
    close: Callable[[], None]


def build(config: ServerConfig, *, republish_period_s: float = REPUBLISH_PERIOD_S) -> Catalog:
    """Migrate the database, wire the adapters, publish the current snapshot."""
    engine = sql.create(config.database_url)
    sql.migrate(engine)
    publisher = None
    if config.redis_url:
        publisher = RedisSnapshotPublisher(connect(config.redis_url))
    else:
        _log.warning("snapshots_disabled", reason="ENSAYO_REDIS_URL is not set")
    usecases = CatalogUseCases(SqlCatalogRepository(engine), publisher, utcnow)
    stop = threading.Event()

    def republish_loop() -> None:
        # Catches the data plane up after Redis was down or flushed; publishing is idempotent.
        # Nothing may end the loop: a database blip (OperationalError) once stopped it for good.
        while not stop.wait(republish_period_s):
            try:
                usecases.republish()
            except Exception:  # noqa: BLE001 - logged; the next period tries again
                _log.exception("snapshot_republish_error")

    usecases.republish()
    thread = threading.Thread(target=republish_loop, name="republish", daemon=True)
    if publisher is not None:
        thread.start()

    def close() -> None:
        stop.set()
        engine.dispose()

    return Catalog(usecases, close)
