"""Decisioning server: ``create_server`` for tests, ``main`` for ``ensayo serve decisioning``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from ensayo.decisioning.model import DecisioningSettings
from ensayo.serverkit.config import ConfigError, ServerConfig
from ensayo.serverkit.runner import run_service
from ensayo.serverkit.server import RunningServer, start_server
from ensayo.v1 import decisioning_service_pb2, decisioning_service_pb2_grpc
from services.decisioning import bootstrap
from services.decisioning.config import settings_from_env
from services.decisioning.servicer import DecisioningServicer

__all__ = ["create_server", "main"]


def create_server(
    config: ServerConfig,
    *,
    settings: DecisioningSettings | None = None,
    **kwargs: Any,
) -> RunningServer:
    """Wire decisioning (needs ``ENSAYO_REDIS_URL``) and start serving it.

    ``clock`` and ``ids`` in ``kwargs`` go to ``bootstrap.build``, the rest to
    ``start_server``.
    """
    wiring = {k: kwargs.pop(k) for k in ("clock", "ids") if k in kwargs}
    decisioning = bootstrap.build(config, settings or DecisioningSettings(), **wiring)

    def register(server: grpc.Server) -> Sequence[str]:
        decisioning_service_pb2_grpc.add_DecisioningServiceServicer_to_server(
            DecisioningServicer(decisioning.usecases), server
        )
        return [
            decisioning_service_pb2.DESCRIPTOR.services_by_name["DecisioningService"].full_name
        ]

    try:
        running = start_server(config, register, **kwargs)
    except BaseException:
        decisioning.close()
        raise
    running.on_stop.append(decisioning.close)
    return running


def main(env: Mapping[str, str] | None = None) -> int:
    """Serve decisioning until SIGTERM; exit 2 on bad settings or without Redis."""
    return run_service(
        "decisioning",
        os.environ if env is None else env,
        lambda config, settings: create_server(config, settings=settings),
        _settings,
    )


def _settings(env: Mapping[str, str]) -> DecisioningSettings:
    """``settings_from_env``, and ENSAYO_REDIS_URL required: ConfigError lists every problem."""
    problems = []
    if not env.get("ENSAYO_REDIS_URL"):
        problems.append(
            "ENSAYO_REDIS_URL: required (contact counters, models and the decision log live in "
            "Redis); set it to a redis:// URL"
        )
    try:
        settings = settings_from_env(env)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return settings
