"""Assignment server: ``create_server`` for tests and ``main`` for ``ensayo serve assignment``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import grpc
from prometheus_client import Counter

from ensayo.serverkit.config import ServerConfig
from ensayo.serverkit.runner import run_service
from ensayo.serverkit.server import RunningServer, start_server
from ensayo.v1 import assignment_service_pb2
from services.assignment import bootstrap
from services.assignment.config import AssignmentConfig
from services.assignment.servicer import AssignmentServicer
from services.assignment.servicer import register as register_servicer

__all__ = ["create_server", "main"]


class _PrometheusSignals:
    """Degradation signals as Prometheus counters on the server's registry."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def sticky_degraded(self, experiments: int) -> None:
        """Count assignments served from the bucket because the sticky store was down."""
        self._counter.inc(experiments)


def create_server(
    config: ServerConfig, settings: AssignmentConfig | None = None, **kwargs: object
) -> RunningServer:
    """Build assignment, start its snapshot and bandit threads, and serve it.

    ``settings`` default to ``AssignmentConfig`` from ``config.redis_url``; without a Redis
    URL this raises ``ConfigError`` (the service cannot run without Redis).
    """
    if settings is None:
        settings = AssignmentConfig.from_env({"ENSAYO_REDIS_URL": config.redis_url})
    service = bootstrap.build(config, settings)

    def register(server: grpc.Server) -> Sequence[str]:
        register_servicer(AssignmentServicer(service.usecases), server)
        return [assignment_service_pb2.DESCRIPTOR.services_by_name["AssignmentService"].full_name]

    service.start()
    try:
        running = start_server(config, register, **kwargs)  # type: ignore[arg-type]
    except BaseException:
        service.close()
        raise
    degraded = Counter(
        "ensayo_assignment_sticky_degraded",
        "Sticky or bandit assignments served from the deterministic bucket, not stored, "
        "because Redis was unreachable.",
        registry=running.metrics.registry,
    )
    service.usecases.signals = _PrometheusSignals(degraded)
    running.on_stop.append(service.close)
    return running


def main(env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGTERM; exits non-zero with a clear message without ENSAYO_REDIS_URL."""
    return run_service(
        "assignment", os.environ if env is None else env, create_server, AssignmentConfig.from_env
    )
