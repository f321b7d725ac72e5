"""Service-tier fixtures: real servers on loopback with their real adapters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ensayo.serverkit.config import ServerConfig
from ensayo.serverkit.server import RunningServer
from ensayo.v1 import catalog_service_pb2_grpc
from services.catalog.server import create_server


def loopback_config(service: str, **env: str) -> ServerConfig:
    """A config binding free loopback ports."""
    up = service.upper()
    base = {
        f"ENSAYO_{up}_ADDR": "127.0.0.1:0",
        f"ENSAYO_{up}_METRICS_ADDR": "127.0.0.1:0",
        "ENSAYO_LOG_FORMAT": "json",
    }
    base.update(env)
    return ServerConfig.from_env(service, base)


@pytest.fixture
def catalog_server(sqlite_url: str, redis_url: str) -> Iterator[RunningServer]:
    """The catalog on SQLite and the session's throwaway Redis."""
    running = create_server(
        loopback_config("catalog", ENSAYO_DATABASE_URL=sqlite_url, ENSAYO_REDIS_URL=redis_url),
        serve_metrics=False,
    )
    yield running
    running.stop(0.5)


@pytest.fixture
def catalog(
    catalog_server: RunningServer,
) -> Iterator[catalog_service_pb2_grpc.CatalogServiceStub]:
    """A stub for the catalog server."""
    with grpc.insecure_channel(f"127.0.0.1:{catalog_server.port}") as channel:
        yield catalog_service_pb2_grpc.CatalogServiceStub(channel)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    """Two keys: 'ops' (admin, read) = 'ops-secret' and 'reader' (read) = 'read-secret'."""
    import hashlib

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    path = tmp_path / "keys.yaml"
    path.write_text(
        f"- {{name: ops, sha256: {digest('ops-secret')}, scopes: [admin, read]}}\n"
        f"- {{name: reader, sha256: {digest('read-secret')}, scopes: [read]}}\n"
    )
    return path
