"""Analysis server (skeleton: health, reflection and metrics; RPCs answer UNIMPLEMENTED).

It serves two contracts on one address: EventsService (intake) and AnalysisService (reports).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

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

__all__ = ["create_server", "main"]


def create_server(config: ServerConfig, **kwargs: object) -> RunningServer:
    """Start serving the events and analysis contracts."""

    def register(server: grpc.Server) -> Sequence[str]:
        events_service_pb2_grpc.add_EventsServiceServicer_to_server(
            events_service_pb2_grpc.EventsServiceServicer(),  # type: ignore[abstract]  # skeleton
            server,
        )
        analysis_service_pb2_grpc.add_AnalysisServiceServicer_to_server(
            analysis_service_pb2_grpc.AnalysisServiceServicer(),  # type: ignore[abstract]  # skeleton
            server,
        )
        return [
            events_service_pb2.DESCRIPTOR.services_by_name["EventsService"].full_name,
            analysis_service_pb2.DESCRIPTOR.services_by_name["AnalysisService"].full_name,
        ]

    return start_server(config, register, **kwargs)  # type: ignore[arg-type]


def main(env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGTERM."""
    return run_service("analysis", os.environ if env is None else env, create_server)
