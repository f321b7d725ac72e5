"""Analysis server: EventsService (intake) and AnalysisService (reports) on one address.

``create_server`` migrates the database, starts the snapshot holder and the stream consumer
thread, and stops them with the server; ``main`` is ``ensayo serve analysis``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from ensayo.serverkit.config import ServerConfig
from ensayo.serverkit.runner import run_service
from ensayo.serverkit.server import RunningServer, start_server
from ensayo.v1 import (
    analysis_service_pb2,
    analysis_service_pb2_grpc,
    events_service_pb2,
    events_service_pb2_grpc,
)
from services.analysis import bootstrap
from services.analysis.config import AnalysisConfig
from services.analysis.servicer import AnalysisServicer, EventsServicer

__all__ = ["create_server", "main"]


def create_server(
    config: ServerConfig, settings: AnalysisConfig | None = None, **kwargs: Any
) -> RunningServer:
    """Build the service and start serving (``settings.consumer`` says where events go to SQL)."""
    analysis = bootstrap.build(config, settings)

    def register(server: grpc.Server) -> Sequence[str]:
        events_service_pb2_grpc.add_EventsServiceServicer_to_server(
            EventsServicer(analysis.intake, analysis.clock), server
        )
        analysis_service_pb2_grpc.add_AnalysisServiceServicer_to_server(
            AnalysisServicer(analysis.usecases, analysis.clock), server
        )
        return [
            events_service_pb2.DESCRIPTOR.services_by_name["EventsService"].full_name,
            analysis_service_pb2.DESCRIPTOR.services_by_name["AnalysisService"].full_name,
        ]

    try:
        running = start_server(config, register, **kwargs)
    except BaseException:
        analysis.close()
        raise
    running.on_stop.append(analysis.close)
    return running


def main(env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGTERM; exits non-zero with a clear message without ENSAYO_REDIS_URL."""
    return run_service(
        "analysis", os.environ if env is None else env, create_server, AnalysisConfig.from_env
    )
