"""Definitions survive a catalog restart, and the catalog republishes after a Redis outage."""

from __future__ import annotations

import time

import grpc
from sqlalchemy.exc import OperationalError

from ensayo.state.client import connect
from ensayo.state.snapshots import RedisSnapshotSource
from ensayo.v1 import catalog_service_pb2 as c
from ensayo.v1 import catalog_service_pb2_grpc as cg
from ensayo.v1 import definitions_pb2 as d
from services.catalog import bootstrap
from services.catalog.server import create_server
from tests.service.conftest import loopback_config


class TestRestart:
    def test_definitions_survive_restart(self, sqlite_url, redis_url) -> None:
        """A new catalog process on the same database serves what the old one stored."""
        config = loopback_config(
            "catalog", ENSAYO_DATABASE_URL=sqlite_url, ENSAYO_REDIS_URL=redis_url
        )
        first = create_server(config, serve_metrics=False)
        with grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            cg.CatalogServiceStub(channel).ApplyLayer(c.ApplyLayerRequest(layer=d.Layer(key="l")))
        first.stop(0.1)
        second = create_server(config, serve_metrics=False)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{second.port}") as channel:
                got = cg.CatalogServiceStub(channel).GetLayer(c.GetLayerRequest(key="l")).layer
            assert got.version == 1
        finally:
            second.stop(0.1)

    def test_catalog_republishes_after_redis_comes_back(self, sqlite_url, own_redis) -> None:
        """Writes while Redis is down succeed in SQL and reach Redis once it returns."""
        config = loopback_config(
            "catalog", ENSAYO_DATABASE_URL=sqlite_url, ENSAYO_REDIS_URL=own_redis.url
        )
        catalog = bootstrap.build(config, republish_period_s=0.2)
        try:
            own_redis.stop()
            stored = catalog.usecases.apply(bootstrap_layer(), None, "local", "layer")
            assert stored.version == 1
            own_redis.start()
            source = RedisSnapshotSource(connect(own_redis.url))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and source.version() < 1:
                time.sleep(0.1)
            snapshot = source.fetch()
            assert snapshot is not None
            assert [layer.key for layer in snapshot.layers] == ["l"]
        finally:
            catalog.close()

    def test_a_database_error_does_not_stop_the_republishing(self, sqlite_url, redis_url) -> None:
        """An unexpected error while republishing (a database blip: OperationalError) is
        logged and the loop goes on; it used to end the republish thread for good."""
        config = loopback_config(
            "catalog", ENSAYO_DATABASE_URL=sqlite_url, ENSAYO_REDIS_URL=redis_url
        )
        catalog = bootstrap.build(config, republish_period_s=0.05)
        repo = catalog.usecases._repo
        healthy, failures = repo.snapshot, []

        def flaky(now):
            if len(failures) < 2:
                failures.append(now)
                raise OperationalError("SELECT", {}, Exception("database is restarting"))
            return healthy(now)

        try:
            catalog.usecases.apply(bootstrap_layer(), None, "local", "layer")
            repo.snapshot = flaky
            client = connect(redis_url)
            client.flushall()
            source = RedisSnapshotSource(connect(redis_url))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and source.version() < 1:
                time.sleep(0.05)
            assert len(failures) == 2
            assert source.version() >= 1
        finally:
            catalog.close()


def bootstrap_layer():
    from ensayo.catalog.model import Layer

    return Layer("l")
