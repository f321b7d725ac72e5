"""AssignmentService over real gRPC on loopback, with real Redis: every RPC and status code."""

from __future__ import annotations

import functools
import operator
import random
import uuid
from collections.abc import Iterator
from concurrent import futures
from functools import partial

import grpc
import numpy as np
import pytest

from ensayo.assignment.model import MembershipKind, Reason
from ensayo.catalog.model import (
    Experiment,
    ExperimentState,
    Holdout,
    Layer,
    LayerRange,
    Snapshot,
    Variant,
)
from ensayo.client import AssignmentClient, open_channel
from ensayo.serverkit.server import RunningServer
from ensayo.state.client import connect
from ensayo.state.events import STREAM_KEY
from ensayo.state.snapshots import RedisSnapshotPublisher
from ensayo.v1 import assignment_service_pb2 as pb
from ensayo.v1 import assignment_service_pb2_grpc as pb_grpc
from ensayo.v1 import common_pb2
from services.assignment.server import create_server, main
from tests.service.conftest import loopback_config

RUNNING = ExperimentState.RUNNING
SNAPSHOT = Snapshot(
    4,
    experiments=(
        Experiment(
            "checkout",
            (
                Variant("control", 1),
                Variant("green", 2, payload={"color": "green"}),
                Variant("red", 1),
            ),
            coverage=0.9,
            holdouts=("global",),
            layer="pricing",
            layer_range=LayerRange(0.0, 0.8),
            targeting={"country": {"$in": ["ES", "MX"]}},
            forced={"qa-1": "red"},
            state=RUNNING,
            version=6,
        ),
        Experiment("sticky", (Variant("a"), Variant("b")), sticky=True, state=RUNNING, version=2),
        Experiment("paused", (Variant("a"), Variant("b")), state=ExperimentState.PAUSED),
    ),
    holdouts=(Holdout("global", fraction=0.05),),
    layers=(Layer("pricing"),),
)


def _serve(redis_url: str, **env: str) -> RunningServer:
    config = loopback_config(
        "assignment", ENSAYO_REDIS_URL=redis_url, ENSAYO_SNAPSHOT_POLL_S="0.1", **env
    )
    return create_server(config, serve_metrics=False)


@pytest.fixture
def server(redis_url) -> Iterator[RunningServer]:
    RedisSnapshotPublisher(connect(redis_url)).publish(SNAPSHOT)
    running = _serve(redis_url)
    yield running
    running.stop(0.5)


@pytest.fixture
def client(server) -> Iterator[AssignmentClient]:
    with open_channel(f"127.0.0.1:{server.port}") as channel:
        yield AssignmentClient(channel, timeout_s=10)


@pytest.fixture
def stub(server) -> Iterator[pb_grpc.AssignmentServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.AssignmentServiceStub(channel)


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


class TestAssign:
    """Assign answers every experiment with typed results."""

    def test_every_running_experiment(self, client) -> None:
        """Empty keys: every running experiment; targeting reads the attributes."""
        got = client.assign("user-1", attributes={"country": "ES"})
        assert [a.experiment_key for a in got] == ["checkout", "sticky"]
        assert all(a.experiment_version in (6, 2) for a in got)

    def test_reasons_and_payload(self, client) -> None:
        """Forced, not targeted, not running, unknown: each with its reason."""
        forced = client.assign_one("qa-1", "checkout", {"country": "FR"})
        not_targeted, paused, unknown = client.assign(
            "user-1", ["checkout", "paused", "nope"], {"country": "FR"}
        )
        assert (forced.reason, forced.variant_key, forced.probability) == (
            Reason.FORCED,
            "red",
            1.0,
        )
        assert (not_targeted.reason, not_targeted.variant_key) == (Reason.NOT_TARGETED, "control")
        assert paused.reason is Reason.NOT_RUNNING
        assert (unknown.reason, unknown.variant_key) == (Reason.UNKNOWN_EXPERIMENT, "")
        green = next(
            a
            for i in range(200)
            if (a := client.assign_one(f"u{i}", "checkout", {"country": "MX"})).variant_key
            == "green"
        )
        assert green.payload == {"color": "green"} and green.probability == 0.5

    def test_sticky_and_exposures(self, client, redis_url) -> None:
        """A sticky unit gets STICKY the second time; exposures reach the event stream."""
        first = client.assign_one("user-9", "sticky", log_exposure=True)
        second = client.assign_one("user-9", "sticky", log_exposure=True)
        assert (first.reason, second.reason) == (Reason.ASSIGNED, Reason.STICKY)
        assert second.variant_key == first.variant_key
        assert connect(redis_url).xlen(STREAM_KEY) == 1


class TestPathsAgree:
    """A unit gets the same variant from Assign, AssignBatch and AssignStream."""

    def test_unary_batch_stream(self, client, stub) -> None:
        """1,000 units with attributes (targeting, holdout, layer, forced, coverage, sticky)."""
        rng = random.Random(5)
        ids = [f"user-{rng.getrandbits(40):x}" for _ in range(1000)] + ["qa-1"]
        answers = {}
        attrs = [{"country": rng.choice(["ES", "MX", "FR"])} for _ in ids]
        for key in ("checkout", "sticky"):
            unary = [client.assign_one(i, key, a) for i, a in zip(ids, attrs, strict=True)]
            batch = client.assign_batch(key, ids, attrs)
            keys = batch.variant_keys
            expected = [keys.index(a.variant_key) if a.in_experiment else -1 for a in unary]
            assert batch.variant_index.tolist() == expected
            requests = [
                pb.AssignBatchRequest(experiment_key=key, unit_ids=ids[lo : lo + 500])
                for lo in range(0, len(ids), 500)
            ]
            for request, attrs_chunk in zip(
                requests, [attrs[lo : lo + 500] for lo in range(0, len(ids), 500)], strict=True
            ):
                for a in attrs_chunk:
                    request.attributes.add().update(a)
            streamed = [
                list(r.variant_index) for r in stub.AssignStream(iter(requests), timeout=30)
            ]
            assert functools.reduce(operator.iadd, streamed, []) == expected
            answers[key] = expected
        assert -1 in answers["checkout"] and answers["checkout"][-1] == 2  # qa-1 forced to red
        assert -1 not in answers["sticky"]

    @pytest.mark.parametrize(
        "make_ids",
        [
            lambda rng: [f"{rng.getrandbits(16):04x}" for _ in range(1000)] + ["qa-1"],
            lambda rng: [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(999)],
        ],
        ids=["four-chars-with-forced", "uuids"],
    )
    def test_fixed_width_ids_take_the_same_path(self, client, redis_url, make_ids) -> None:
        """Ids of one width (read from the wire) get what Assign gives, exposures included."""
        rng = random.Random(9)
        ids = make_ids(rng)
        attrs = [{"country": rng.choice(["ES", "MX", "FR"])} for _ in ids]
        for key in ("checkout", "sticky"):
            unary = [client.assign_one(i, key, a) for i, a in zip(ids, attrs, strict=True)]
            keys = client.assign_batch(key, ids[:1], attrs[:1]).variant_keys
            expected = [keys.index(a.variant_key) if a.in_experiment else -1 for a in unary]
            batch = client.assign_batch(key, ids, attrs, log_exposure=True)
            assert batch.variant_index.tolist() == expected
        logged = connect(redis_url).xrange(STREAM_KEY)
        assert {f[b"e"].split(b'"unit_id":"')[1].split(b'"')[0].decode() for _, f in logged} >= {
            i for i, a in zip(ids, expected, strict=True) if a >= 0 and i != "qa-1"
        }

    def test_audience_stream_from_the_client(self, client) -> None:
        """assign_audience streams any number of ids in chunks, in order."""
        ids = [f"u{i}" for i in range(2500)]
        results = list(client.assign_audience("sticky", iter(ids), chunk=1000))
        assert [len(r.variant_index) for r in results] == [1000, 1000, 500]
        whole = np.concatenate([r.variant_index for r in results])
        np.testing.assert_array_equal(whole, client.assign_batch("sticky", ids).variant_index)


class TestMemberships:
    """GetMemberships answers the support question: where is this unit, and why."""

    def test_rows(self, client) -> None:
        """Holdout, layer (with owner) and each running experiment with its reason."""
        rows = client.memberships("qa-1", {"country": "ES"})
        kinds = [(r.kind, r.key) for r in rows]
        assert kinds == [
            (MembershipKind.HOLDOUT, "global"),
            (MembershipKind.LAYER, "pricing"),
            (MembershipKind.EXPERIMENT, "checkout"),
            (MembershipKind.EXPERIMENT, "sticky"),
        ]
        layer = rows[1]
        assert layer.owner == ("checkout" if layer.position < 0.8 else "")
        assert (rows[2].reason, rows[2].variant_key) == (Reason.FORCED, "red")


class TestErrors:
    """Every error maps to its status code with the field named first."""

    @pytest.mark.parametrize(("unit_id", "field"), [("", "unit.id"), ("x" * 513, "unit.id")])
    def test_bad_unit_id(self, stub, unit_id, field) -> None:
        """INVALID_ARGUMENT naming unit.id, for Assign and GetMemberships."""
        unit = common_pb2.Unit(id=unit_id)
        code, details = _code(lambda: stub.Assign(pb.AssignRequest(unit=unit)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith(f"{field}:")
        code, _ = _code(lambda: stub.GetMemberships(pb.GetMembershipsRequest(unit=unit)))
        assert code is grpc.StatusCode.INVALID_ARGUMENT

    def test_batch_item_is_named(self, stub) -> None:
        """A bad id in a batch is INVALID_ARGUMENT naming unit_ids[i]."""
        request = pb.AssignBatchRequest(experiment_key="sticky", unit_ids=["a", "b", ""])
        code, details = _code(lambda: stub.AssignBatch(request))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("unit_ids[2]:")

    def test_attributes_not_parallel(self, stub) -> None:
        """Attributes of another length than unit_ids: INVALID_ARGUMENT naming attributes."""
        request = pb.AssignBatchRequest(experiment_key="sticky", unit_ids=["a", "b"])
        request.attributes.add()
        code, details = _code(lambda: stub.AssignBatch(request))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("attributes:")

    def test_undecodable_batch(self, server) -> None:
        """Bytes that are no AssignBatchRequest: INVALID_ARGUMENT naming the request."""
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary("/ensayo.v1.AssignmentService/AssignBatch")
            code, details = _code(lambda: call(b"\x12\x05ab", timeout=10))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request:")

    def test_too_many_ids(self, stub) -> None:
        """100,001 ids in one message: RESOURCE_EXHAUSTED (the documented limit)."""
        request = pb.AssignBatchRequest(experiment_key="sticky", unit_ids=["u"] * 100_001)
        code, details = _code(lambda: stub.AssignBatch(request, timeout=30))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith("unit_ids:")

    def test_too_many_keys(self, stub) -> None:
        """More than 1000 experiment keys: RESOURCE_EXHAUSTED."""
        request = pb.AssignRequest(
            unit=common_pb2.Unit(id="u"), experiment_keys=[f"k{i}" for i in range(1001)]
        )
        assert _code(lambda: stub.Assign(request))[0] is grpc.StatusCode.RESOURCE_EXHAUSTED

    def test_unknown_experiment_in_batch(self, stub) -> None:
        """AssignBatch (and the stream) of an unknown experiment: NOT_FOUND."""
        request = pb.AssignBatchRequest(experiment_key="nope", unit_ids=["a"])
        assert _code(lambda: stub.AssignBatch(request))[0] is grpc.StatusCode.NOT_FOUND
        stream = stub.AssignStream(iter([request]))
        assert _code(lambda: list(stream))[0] is grpc.StatusCode.NOT_FOUND

    def test_no_snapshot_is_failed_precondition(self, redis_url) -> None:
        """Before the catalog publishes anything: FAILED_PRECONDITION."""
        running = _serve(redis_url)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                call = pb_grpc.AssignmentServiceStub(channel).Assign
                request = pb.AssignRequest(unit=common_pb2.Unit(id="u"))
                assert _code(lambda: call(request))[0] is grpc.StatusCode.FAILED_PRECONDITION
        finally:
            running.stop(0.5)

    def test_redis_down(self, own_redis) -> None:
        """Redis down: answers continue from memory; exposures asked for are UNAVAILABLE."""
        RedisSnapshotPublisher(connect(own_redis.url)).publish(SNAPSHOT)
        running = _serve(own_redis.url)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                client = AssignmentClient(channel, attempts=1)
                before = client.assign("u1", attributes={"country": "ES"})
                own_redis.stop()
                assert client.assign("u1", attributes={"country": "ES"}) == before
                enrolled = next(a for a in before if a.in_experiment)
                code, details = _code(
                    lambda: client.assign_one(
                        "u1", enrolled.experiment_key, {"country": "ES"}, log_exposure=True
                    )
                )
                assert code is grpc.StatusCode.UNAVAILABLE and details.startswith(
                    "redis unavailable"
                )
            text = running.metrics.registry.get_sample_value(
                "ensayo_assignment_sticky_degraded_total"
            )
            assert text is not None and text >= 1
        finally:
            running.stop(0.5)


class TestAuth:
    """The assign scope guards the service."""

    def test_scope(self, redis_url, tmp_path) -> None:
        """No key: UNAUTHENTICATED; a key without `assign`: PERMISSION_DENIED; with it: OK."""
        import hashlib

        keys = tmp_path / "keys.yaml"
        digest = {k: hashlib.sha256(k.encode()).hexdigest() for k in ("a-secret", "r-secret")}
        keys.write_text(
            f"- {{name: app, sha256: {digest['a-secret']}, scopes: [assign]}}\n"
            f"- {{name: reader, sha256: {digest['r-secret']}, scopes: [read]}}\n"
        )
        RedisSnapshotPublisher(connect(redis_url)).publish(SNAPSHOT)
        running = _serve(redis_url, ENSAYO_API_KEYS_FILE=str(keys))
        addr = f"127.0.0.1:{running.port}"
        try:
            for key, code in (
                ("", grpc.StatusCode.UNAUTHENTICATED),
                ("r-secret", grpc.StatusCode.PERMISSION_DENIED),
            ):
                with open_channel(addr, api_key=key) as channel:
                    assert _code(partial(AssignmentClient(channel).assign, "u1"))[0] is code
            with open_channel(addr, api_key="a-secret") as channel:
                assert len(AssignmentClient(channel).assign("u1")) == 2
        finally:
            running.stop(0.5)


class TestStartup:
    """The service refuses to start without Redis, with a clear message."""

    def test_main_without_redis_url(self, capsys) -> None:
        """main() exits 2 (bad configuration) and names ENSAYO_REDIS_URL."""
        env = {
            "ENSAYO_ASSIGNMENT_ADDR": "127.0.0.1:0",
            "ENSAYO_ASSIGNMENT_METRICS_ADDR": "127.0.0.1:0",
        }
        assert main(env) == 2
        assert "ENSAYO_REDIS_URL is not set" in capsys.readouterr().err

    def test_every_bad_variable_is_named_at_once(self, capsys) -> None:
        """Shared and service settings are read together: one message lists both (the
        service's own were reported only after the shared ones were fixed, with exit 1)."""
        env = {
            "ENSAYO_ASSIGNMENT_ADDR": "nowhere",
            "ENSAYO_ALLOCATION_POLL_S": "0",
            "ENSAYO_REDIS_URL": "redis://127.0.0.1:1/0",
        }
        assert main(env) == 2
        err = capsys.readouterr().err
        assert "ENSAYO_ASSIGNMENT_ADDR" in err and "ENSAYO_ALLOCATION_POLL_S" in err


class _Flaky(pb_grpc.AssignmentServiceServicer):
    """Answers UNAVAILABLE a set number of times, then an empty success."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def Assign(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return pb.AssignResponse()


class TestClientRetries:
    """The client retries UNAVAILABLE with backoff, and only that."""

    @pytest.mark.parametrize(("failures", "ok"), [(2, True), (5, False)])
    def test_retries(self, failures, ok) -> None:
        """Two failures are absorbed by four attempts; five are not."""
        servicer = _Flaky(failures)
        server = grpc.server(futures.ThreadPoolExecutor(2))
        pb_grpc.add_AssignmentServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                client = AssignmentClient(channel, attempts=4, backoff_s=0.01)
                if ok:
                    assert client.assign("u1") == []
                    assert servicer.calls == 3
                else:
                    assert _code(lambda: client.assign("u1"))[0] is grpc.StatusCode.UNAVAILABLE
                    assert servicer.calls == 4
        finally:
            server.stop(0)
