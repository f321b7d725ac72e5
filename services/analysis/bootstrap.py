"""Composition root of the analysis service: intake on Redis, reports on SQL, the consumer."""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from redis import Redis
from sqlalchemy import Engine

from ensayo.analysis.usecases import AnalysisUseCases
from ensayo.catalog.holder import SnapshotHolder
from ensayo.decisioning.evaluation import beta_rates
from ensayo.events.observers import build_observers
from ensayo.events.usecases import EventIntake
from ensayo.serverkit.config import ConfigError, ServerConfig
from ensayo.serverkit.logging import configure as configure_logging
from ensayo.state.client import connect
from ensayo.state.consumer import ConsumerWorker, StreamConsumer
from ensayo.state.events import RedisEventLog
from ensayo.state.models import RedisModelStore
from ensayo.state.snapshots import RedisSnapshotSource
from ensayo.storage import engine as sql
from ensayo.storage.aggregates import SqlAggregates
from ensayo.storage.catalog_repo import SqlCatalogRepository
from ensayo.storage.events_repo import SqlEventStore, read_engine
from services.analysis.config import AnalysisConfig

__all__ = ["Analysis", "build", "run_consumer_process", "utcnow"]

_log = structlog.get_logger()
CONSUMER_SOCKET_TIMEOUT_S = 5.0  # above the consumer's XREADGROUP block time


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class Analysis:
    """The wired use cases, the background consumer and what must be closed with them."""

    intake: EventIntake
    usecases: AnalysisUseCases
    clock: Callable[[], datetime]
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Stop the consumer (it finishes its batch), the snapshot holder, the pools."""
        for closer in self.closers:
            closer()


class _ModelRates:
    """The decisioning models' Beta rates, read from Redis when a report asks."""

    def __init__(self, client: Redis) -> None:
        self._store = RedisModelStore(client)

    def rates(self) -> Mapping[str, float]:
        return beta_rates(self._store.load("", 0))


def _consumer(
    redis_url: str, database_url: str, claim_idle_s: float, engine: Engine | None = None
) -> StreamConsumer:
    return StreamConsumer(
        connect(redis_url, timeout_s=CONSUMER_SOCKET_TIMEOUT_S),
        SqlEventStore(engine or sql.create(database_url)),
        claim_idle_ms=int(claim_idle_s * 1000),
    )


def run_consumer_process(
    redis_url: str, database_url: str, claim_idle_s: float, parent_pid: int
) -> None:
    """Body of the consumer child process: consume until SIGTERM or the parent is gone."""
    configure_logging("info", "json")
    worker = ConsumerWorker(_consumer(redis_url, database_url, claim_idle_s))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    worker.start()
    while not stop.wait(1.0):
        if os.getppid() != parent_pid:  # the server died without stopping us: do not linger
            break
    worker.stop()


class _ConsumerProcess:
    """The consumer in a child process (its own GIL); restarted by the parent if it dies."""

    def __init__(self, redis_url: str, database_url: str, claim_idle_s: float) -> None:
        self._args = (redis_url, database_url, claim_idle_s, os.getpid())
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._supervise, name="consumer-watch", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watch.start()

    def _spawn(self) -> None:
        self._process = self._context.Process(
            target=run_consumer_process, args=self._args, name="ensayo-consumer", daemon=True
        )
        self._process.start()

    def _supervise(self) -> None:
        while not self._stop.wait(1.0):
            if self._process is not None and not self._process.is_alive():
                _log.error("event_consumer_exited", code=self._process.exitcode)
                self._spawn()

    def stop(self) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()  # SIGTERM: the child finishes its batch
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join()


def build(
    config: ServerConfig,
    settings: AnalysisConfig | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Analysis:
    """Migrate, wire intake (Redis) and reports (SQL), start the consumer as configured.

    Raises ConfigError when ENSAYO_REDIS_URL is unset: intake cannot store anything without
    it, and acknowledging events it cannot store would lose them.
    """
    settings = settings or AnalysisConfig()
    if not config.redis_url:
        raise ConfigError(
            [
                "ENSAYO_REDIS_URL is not set: the analysis service stores tracked events in a "
                "Redis Stream before SQL (set it, or use `ensayo up`, which starts a Redis)"
            ]
        )
    writer = sql.create(config.database_url)
    sql.migrate(writer)
    reader = read_engine(config.database_url)
    client = connect(config.redis_url)
    holder = SnapshotHolder(RedisSnapshotSource(client), poll_s=config.snapshot_poll_s)
    holder.start()
    observers = build_observers(redis=client, snapshots=holder, clock=clock)
    intake = EventIntake(RedisEventLog(client), observers, clock)
    usecases = AnalysisUseCases(
        SqlCatalogRepository(reader), SqlAggregates(reader, writer), clock, _ModelRates(client)
    )
    analysis = Analysis(intake, usecases, clock)
    if settings.consumer == "thread":
        worker = ConsumerWorker(
            _consumer(config.redis_url, config.database_url, settings.claim_idle_s, writer)
        )
        worker.start()
        analysis.closers.append(worker.stop)
    elif settings.consumer == "process":
        child = _ConsumerProcess(config.redis_url, config.database_url, settings.claim_idle_s)
        child.start()
        analysis.closers.append(child.stop)
    analysis.closers += [holder.stop, writer.dispose, reader.dispose, client.close]
    _log.info("analysis_ready", consumer=settings.consumer, observers=len(observers))
    return analysis
