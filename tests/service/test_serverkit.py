"""The server kit on real servers: status mapping, auth, health, reflection, metrics, deadlines."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from structlog.testing import capture_logs

from ensayo import errors
from ensayo.serverkit.errors import STATUS_BY_ERROR
from ensayo.serverkit.server import RunningServer, start_server
from ensayo.v1 import (
    catalog_service_pb2,
    catalog_service_pb2_grpc,
)
from services.analysis.server import create_server as analysis_server
from services.assignment.server import create_server as assignment_server
from services.catalog.server import create_server as catalog_server
from services.decisioning.server import create_server as decisioning_server
from tests.service.conftest import loopback_config

RAISED = {
    "invalid": errors.InvalidArgument("x.y", "must be positive"),
    "not_found": errors.NotFound("experiment", "e"),
    "exists": errors.AlreadyExists("layer", "l"),
    "conflict": errors.VersionConflict("layer", "l", 1, 2),
    "precondition": errors.FailedPrecondition("no snapshot"),
    "unavailable": errors.DependencyUnavailable("redis", "down"),
    "exhausted": errors.ResourceExhausted("unit_ids", "at most 100000"),
    "unauthenticated": errors.Unauthenticated("no key"),
    "denied": errors.PermissionDenied("no scope"),
    "bug": ZeroDivisionError("secret detail"),
    "unimplemented": NotImplementedError(),
}


def _raiser(request: bytes, context: grpc.ServicerContext) -> bytes:
    raise RAISED[request.decode()]


def _slow(request: bytes, context: grpc.ServicerContext) -> bytes:
    time.sleep(float(request.decode()))
    return b"done"


def _register(server: grpc.Server):
    handler = grpc.method_handlers_generic_handler(
        "test.Raiser",
        {
            "Raise": grpc.unary_unary_rpc_method_handler(_raiser),
            "Slow": grpc.unary_unary_rpc_method_handler(_slow),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    return ["test.Raiser"]


@pytest.fixture
def raiser() -> Iterator[tuple[RunningServer, grpc.Channel]]:
    running = start_server(loopback_config("catalog"), _register)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield running, channel
    channel.close()
    running.stop(0.2)


class TestStatusMapping:
    @pytest.mark.parametrize("name", sorted(RAISED))
    def test_every_error_maps_to_its_status(self, raiser, name: str) -> None:
        """Each error of the tree reaches the client with its status code."""
        _, channel = raiser
        call = channel.unary_unary("/test.Raiser/Raise")
        with pytest.raises(grpc.RpcError) as info:
            call(name.encode())
        expected = dict(STATUS_BY_ERROR).get(type(RAISED[name]))
        if name == "bug":
            expected = grpc.StatusCode.INTERNAL
        if name == "unimplemented":
            expected = grpc.StatusCode.UNIMPLEMENTED
        assert info.value.code() == expected

    def test_the_table_covers_the_whole_tree(self) -> None:
        """Every public error class has a row in the mapping table."""
        mapped = {kind for kind, _ in STATUS_BY_ERROR}
        tree = {
            getattr(errors, n)
            for n in errors.__all__
            if isinstance(getattr(errors, n), type)
            and issubclass(getattr(errors, n), errors.EnsayoError)
        }
        assert tree - {errors.EnsayoError} == mapped

    def test_internal_errors_hide_details_and_log_request_id(self, raiser) -> None:
        """A bug becomes INTERNAL with the request id; the exception text is only logged."""
        _, channel = raiser
        call = channel.unary_unary("/test.Raiser/Raise")
        with capture_logs() as logs, pytest.raises(grpc.RpcError) as info:
            call(b"bug", metadata=(("x-request-id", "req-123"),))
        assert info.value.details() == "internal error; request_id=req-123"
        assert "secret" not in info.value.details()
        failures = [e for e in logs if e["event"] == "rpc_internal_error"]
        assert failures and failures[0]["request_id"] == "req-123"

    def test_request_id_comes_back_with_errors_only(self, raiser) -> None:
        """Failures return the request id in trailers (generated if absent); successes don't."""
        _, channel = raiser
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/test.Raiser/Raise")(b"bug")
        ids = [v for k, v in info.value.trailing_metadata() if k == "x-request-id"]
        assert len(ids) == 1 and len(ids[0]) == 32
        assert ids[0] in info.value.details()  # the same id the INTERNAL message quotes
        _, rpc = channel.unary_unary("/test.Raiser/Slow").with_call(b"0")
        assert not [v for k, v in rpc.trailing_metadata() if k == "x-request-id"]

    def test_request_id_survives_an_error(self, raiser) -> None:
        """A failed call's trailers hold the request id beside the status details."""
        _, channel = raiser
        call = channel.unary_unary("/test.Raiser/Raise")
        with pytest.raises(grpc.RpcError) as info:
            call(b"invalid", metadata=(("x-request-id", "req-9"),))
        assert ("x-request-id", "req-9") in info.value.trailing_metadata()

    def test_deadline_is_honoured(self, raiser) -> None:
        """A call slower than its deadline ends DEADLINE_EXCEEDED on the client."""
        _, channel = raiser
        call = channel.unary_unary("/test.Raiser/Slow")
        with pytest.raises(grpc.RpcError) as info:
            call(b"1.0", timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


class TestMetrics:
    def test_metrics_endpoint_counts_rpcs_by_code(self, raiser) -> None:
        """/metrics exposes counts by method and code, and a latency histogram."""
        running, channel = raiser
        channel.unary_unary("/test.Raiser/Slow")(b"0")
        with pytest.raises(grpc.RpcError):
            channel.unary_unary("/test.Raiser/Raise")(b"not_found")
        assert running.metrics_endpoint is not None
        url = f"http://127.0.0.1:{running.metrics_endpoint.port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        assert (
            'ensayo_rpc_requests_total{code="OK",method="/test.Raiser/Slow",service="catalog"} 1.0'
        ) in text
        assert 'code="NOT_FOUND",method="/test.Raiser/Raise"' in text
        assert "ensayo_rpc_duration_seconds_bucket" in text


SERVERS = [
    ("assignment", assignment_server, "AssignmentService"),
    ("decisioning", decisioning_server, "DecisioningService"),
    ("analysis", analysis_server, "AnalysisService"),
    ("analysis", analysis_server, "EventsService"),
]


class TestEveryServer:
    @pytest.mark.parametrize(("service", "factory", "name"), SERVERS)
    def test_health_and_reflection(self, service, factory, name, redis_url, sqlite_url) -> None:
        """Each data-plane server answers health and lists its services through reflection."""
        running = factory(
            loopback_config(service, ENSAYO_REDIS_URL=redis_url, ENSAYO_DATABASE_URL=sqlite_url),
            serve_metrics=False,
        )
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                _assert_health_and_reflection(channel, f"ensayo.v1.{name}")
        finally:
            running.stop(0.1)

    def test_catalog_health_and_reflection(self, sqlite_url, redis_url) -> None:
        """The catalog answers health and reflection too."""
        running = catalog_server(
            loopback_config("catalog", ENSAYO_DATABASE_URL=sqlite_url, ENSAYO_REDIS_URL=redis_url),
            serve_metrics=False,
        )
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                _assert_health_and_reflection(channel, "ensayo.v1.CatalogService")
        finally:
            running.stop(0.1)

    def test_graceful_stop_turns_health_not_serving(self, raiser) -> None:
        """stop() flips health to NOT_SERVING before draining."""
        running, _ = raiser
        running.health.enter_graceful_shutdown()
        response = running.health.Check(health_pb2.HealthCheckRequest(), None)
        assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING


def _assert_health_and_reflection(channel: grpc.Channel, full_name: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", full_name):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(
        stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert full_name in names
    assert "grpc.health.v1.Health" in names


class TestAuth:
    @pytest.fixture
    def secured(self, sqlite_url, redis_url, keys_file) -> Iterator[grpc.Channel]:
        running = catalog_server(
            loopback_config(
                "catalog",
                ENSAYO_DATABASE_URL=sqlite_url,
                ENSAYO_REDIS_URL=redis_url,
                ENSAYO_API_KEYS_FILE=str(keys_file),
            ),
            serve_metrics=False,
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        yield channel
        channel.close()
        running.stop(0.1)

    def _apply(self, channel, key: str | None):
        stub = catalog_service_pb2_grpc.CatalogServiceStub(channel)
        metadata = (("authorization", f"Bearer {key}"),) if key else ()
        return stub.ApplyLayer(
            catalog_service_pb2.ApplyLayerRequest(layer={"key": "l"}), metadata=metadata
        )

    def test_admin_key_writes_and_is_the_audit_actor(self, secured) -> None:
        """A key with admin may write, and its name is recorded as the actor."""
        self._apply(secured, "ops-secret")
        stub = catalog_service_pb2_grpc.CatalogServiceStub(secured)
        records = stub.ListAuditRecords(
            catalog_service_pb2.ListAuditRecordsRequest(),
            metadata=(("authorization", "Bearer read-secret"),),
        )
        assert records.records[0].actor == "ops"

    @pytest.mark.parametrize(
        ("key", "code"),
        [
            (None, grpc.StatusCode.UNAUTHENTICATED),
            ("wrong", grpc.StatusCode.UNAUTHENTICATED),
            ("read-secret", grpc.StatusCode.PERMISSION_DENIED),
        ],
    )
    def test_refusals(self, secured, key, code) -> None:
        """No key or an unknown key is UNAUTHENTICATED; a key without scope PERMISSION_DENIED."""
        with pytest.raises(grpc.RpcError) as info:
            self._apply(secured, key)
        assert info.value.code() == code

    def test_health_stays_open(self, secured) -> None:
        """Health needs no key."""
        reply = health_pb2_grpc.HealthStub(secured).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


class TestUndecodableRequests:
    def test_bytes_that_are_no_message_are_invalid_argument(self, catalog_server) -> None:
        """A string field that is not UTF-8, or a truncated message, is the caller's mistake:
        INVALID_ARGUMENT on ``request``, not gRPC's INTERNAL from its deserialiser (found in
        review, for Assign and GetMemberships; every service shares the kit)."""
        with grpc.insecure_channel(f"127.0.0.1:{catalog_server.port}") as channel:
            get_layer = channel.unary_unary("/ensayo.v1.CatalogService/GetLayer")
            for raw in (b"\n\x02\xff\xfe", b"\n\x05ab"):  # key: invalid UTF-8; cut short
                with pytest.raises(grpc.RpcError) as info:
                    get_layer(raw, timeout=5)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert info.value.details().startswith("request: not a valid message")
            with pytest.raises(grpc.RpcError) as info:  # a valid message still gets through
                get_layer(b"\n\x05ghost", timeout=5)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
