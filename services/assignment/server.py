"""Assignment server (skeleton: health, reflection and metrics; RPCs answer UNIMPLEMENTED)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import grpc

from ensayo.serverkit.config import ServerConfig
from ensayo.serverkit.runner import run_service
from ensayo.serverkit.server import RunningServer, start_server
from ensayo.v1 import assignment_service_pb2, assignment_service_pb2_grpc

__all__ = ["create_server", "main"]


def create_server(config: ServerConfig, **kwargs: object) -> RunningServer:
    """Start serving the assignment contract."""

    def register(server: grpc.Server) -> Sequence[str]:
        assignment_service_pb2_grpc.add_AssignmentServiceServicer_to_server(
            assignment_service_pb2_grpc.AssignmentServiceServicer(),  # type: ignore[abstract]  # skeleton
            server,
        )
        return [assignment_service_pb2.DESCRIPTOR.services_by_name["AssignmentService"].full_name]

    return start_server(config, register, **kwargs)  # type: ignore[arg-type]


def main(env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGTERM."""
    return run_service("assignment", os.environ if env is None else env, create_server)
