"""EventsService over real gRPC: counts, contract defaults and every error status."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import redis as redis_lib
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ensayo.client.events import EventsClient
from ensayo.events.model import Event
from ensayo.serverkit.config import ConfigError
from ensayo.state.consumer import StreamConsumer
from ensayo.storage import engine as sql
from ensayo.storage.events_repo import SqlEventStore, time_from_us
from ensayo.storage.schema import events as events_table
from ensayo.v1 import events_service_pb2 as pb
from ensayo.v1 import events_service_pb2_grpc as pb_grpc
from services.analysis.config import AnalysisConfig
from services.analysis.server import create_server
from tests.service.conftest import loopback_config

OFF = AnalysisConfig(consumer="off")
ROOT = Path(__file__).resolve().parents[2]


def _server(database_url: str, redis_url: str):
    config = loopback_config(
        "analysis",
        ENSAYO_DATABASE_URL=database_url,
        ENSAYO_REDIS_URL=redis_url,
        ENSAYO_SNAPSHOT_POLL_S="0.1",
    )
    return create_server(config, OFF, serve_metrics=False)


@pytest.fixture
def server(sqlite_url, redis_url):
    running = _server(sqlite_url, redis_url)
    yield running
    running.stop(0.5)


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.EventsServiceStub(channel)


def _drain(sqlite_url: str, redis_url: str) -> SqlEventStore:
    store = SqlEventStore(sql.create(sqlite_url))
    client = redis_lib.Redis.from_url(redis_url, socket_timeout=5)
    StreamConsumer(client, store, name="test", block_ms=10).drain()
    client.close()
    return store


def _error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


class TestTrack:
    def test_counts_accepted_and_duplicates(self, stub) -> None:
        """A repeated event_id is acknowledged as a duplicate, in the same call or a later one."""
        events = [pb.Event(event_id=f"e{i}", unit_id="u", name="click") for i in range(3)]
        first = stub.Track(pb.TrackRequest(events=[*events, events[0]]))
        assert (first.accepted, first.duplicates) == (3, 1)
        again = stub.Track(pb.TrackRequest(events=events))
        assert (again.accepted, again.duplicates) == (0, 3)

    def test_defaults_reach_sql(self, stub, sqlite_url, redis_url) -> None:
        """Unset value is stored as 1 and unset time as the time of receipt."""
        before = datetime.now(UTC)
        stub.Track(pb.TrackRequest(events=[pb.Event(event_id="e", unit_id="u", name="n")]))
        after = datetime.now(UTC)
        store = _drain(sqlite_url, redis_url)
        engine = sql.create(sqlite_url)
        with engine.connect() as conn:
            row = conn.execute(events_table.select()).one()
        assert store.count() == 1
        assert row.value == 1.0
        assert before - timedelta(seconds=1) <= time_from_us(row.time_us) <= after

    def test_client_batches_and_sums(self, server, sqlite_url, redis_url) -> None:
        """EventsClient.track_all splits into calls and adds their counts."""
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            client = EventsClient(channel)
            now = datetime.now(UTC)
            events = [Event(f"e{i}", "u", "n", now, 2.0, properties={"k": [1]}) for i in range(25)]
            result = client.track_all([*events, *events[:5]], batch_size=10)
        assert (result.accepted, result.duplicates) == (25, 5)
        assert _drain(sqlite_url, redis_url).count() == 25


class TestTrackErrors:
    def test_invalid_argument_names_the_event_and_field(self, stub) -> None:
        """One bad event fails the whole call, naming events[i].field (BadRequest detail)."""
        events = [
            pb.Event(event_id="ok", unit_id="u", name="n"),
            pb.Event(event_id="bad", unit_id="u", name="n", value=math.inf),
        ]
        error = _error(lambda: stub.Track(pb.TrackRequest(events=events)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("events[1].value: must be finite")
        status = rpc_status.from_call(error)
        detail = error_details_pb2.BadRequest()
        status.details[0].Unpack(detail)
        assert detail.field_violations[0].field == "events[1].value"

    @pytest.mark.parametrize(
        ("event", "field"),
        [
            (pb.Event(unit_id="u", name="n"), "events[0].event_id"),
            (pb.Event(event_id="e", name="n"), "events[0].unit_id"),
            (pb.Event(event_id="e", unit_id="u"), "events[0].name"),
            (
                pb.Event(event_id="e", unit_id="u", name="n", probability=1.5),
                "events[0].probability",
            ),
            (pb.Event(event_id="e", unit_id="u", name="$exposure"), "events[0].experiment_key"),
        ],
    )
    def test_each_rule_names_its_field(self, stub, event, field) -> None:
        """Required ids, probabilities in [0, 1], exposures with their experiment."""
        error = _error(lambda: stub.Track(pb.TrackRequest(events=[event])))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(field)

    def test_a_time_far_in_the_future_is_refused(self, stub) -> None:
        """More than a day ahead is not a sane event time."""
        event = pb.Event(event_id="e", unit_id="u", name="n")
        event.time.FromDatetime(datetime.now(UTC) + timedelta(days=3))
        error = _error(lambda: stub.Track(pb.TrackRequest(events=[event])))
        assert error.details().startswith("events[0].time")

    def test_empty_batch_is_invalid(self, stub) -> None:
        """At least one event per call."""
        assert _error(lambda: stub.Track(pb.TrackRequest())).code() == (
            grpc.StatusCode.INVALID_ARGUMENT
        )

    def test_more_than_ten_thousand_events_is_resource_exhausted(self, stub) -> None:
        """The documented batch limit."""
        events = [pb.Event(event_id=f"e{i}", unit_id="u", name="n") for i in range(10_001)]
        error = _error(lambda: stub.Track(pb.TrackRequest(events=events)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    def test_redis_down_is_unavailable_and_nothing_is_acknowledged(
        self, own_redis, sqlite_url
    ) -> None:
        """Track refuses with UNAVAILABLE (the client retries) while Redis is unreachable."""
        running = _server(sqlite_url, own_redis.url)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = pb_grpc.EventsServiceStub(channel)
                event = pb.Event(event_id="e", unit_id="u", name="n")
                assert stub.Track(pb.TrackRequest(events=[event])).accepted == 1
                own_redis.stop()
                error = _error(lambda: stub.Track(pb.TrackRequest(events=[event]), timeout=10))
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                own_redis.start()
                later = pb.Event(event_id="later", unit_id="u", name="n")
                assert stub.Track(pb.TrackRequest(events=[later]), timeout=10).accepted == 1
        finally:
            running.stop(0.5)


class TestBackgroundConsumer:
    def test_the_server_thread_moves_acknowledged_events_to_sql(
        self, sqlite_url, redis_url
    ) -> None:
        """With ENSAYO_ANALYSIS_CONSUMER=thread the server itself fills SQL."""
        config = loopback_config(
            "analysis",
            ENSAYO_DATABASE_URL=sqlite_url,
            ENSAYO_REDIS_URL=redis_url,
            ENSAYO_SNAPSHOT_POLL_S="0.1",
        )
        running = create_server(config, AnalysisConfig(consumer="thread"), serve_metrics=False)
        store = SqlEventStore(sql.create(sqlite_url))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = pb_grpc.EventsServiceStub(channel)
                events = [pb.Event(event_id=f"e{i}", unit_id="u", name="n") for i in range(1500)]
                assert stub.Track(pb.TrackRequest(events=events)).accepted == 1500
            deadline = time.monotonic() + 30
            while store.count() < 1500 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert store.count() == 1500
        finally:
            running.stop(0.5)


class TestStartup:
    def test_without_redis_the_server_refuses_to_start(self, sqlite_url) -> None:
        """ENSAYO_REDIS_URL is required: a clear ConfigError, exit code 1 from main."""
        config = loopback_config("analysis", ENSAYO_DATABASE_URL=sqlite_url)
        with pytest.raises(ConfigError, match="ENSAYO_REDIS_URL"):
            create_server(config, OFF, serve_metrics=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENSAYO_")}
        env.update(
            ENSAYO_ANALYSIS_ADDR="127.0.0.1:0",
            ENSAYO_ANALYSIS_METRICS_ADDR="127.0.0.1:0",
            ENSAYO_DATABASE_URL=sqlite_url,
            ENSAYO_LOG_FORMAT="json",
            PYTHONPATH=os.pathsep.join([str(ROOT / "libs"), str(ROOT)]),
        )
        # A process of its own: main() configures logging for the whole interpreter.
        done = subprocess.run(
            [sys.executable, "-m", "services.analysis"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert "ENSAYO_REDIS_URL is not set" in done.stderr
