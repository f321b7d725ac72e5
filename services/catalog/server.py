"""Catalog server: ``create_server`` for tests and ``main`` for ``ensayo serve catalog``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import grpc

from ensayo.serverkit.config import ServerConfig
from ensayo.serverkit.runner import run_service
from ensayo.serverkit.server import RunningServer, start_server
from ensayo.v1 import catalog_service_pb2, catalog_service_pb2_grpc
from services.catalog import bootstrap
from services.catalog.servicer import CatalogServicer

__all__ = ["create_server", "main"]


def create_server(config: ServerConfig, **kwargs: object) -> RunningServer:
    """Build the catalog and start serving it."""
    catalog = bootstrap.build(config)

    def register(server: grpc.Server) -> Sequence[str]:
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(
            CatalogServicer(catalog.usecases), server
        )
        return [catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name]

    running = start_server(config, register, **kwargs)  # type: ignore[arg-type]
    running.on_stop.append(catalog.close)
    return running


def main(env: Mapping[str, str] | None = None) -> int:
    """Serve the catalog until SIGTERM."""
    return run_service(
        "catalog",
        os.environ if env is None else env,
        lambda config, _settings: create_server(config),
        lambda _env: None,  # the catalog reads only the shared settings
    )
