"""DecisioningService over real gRPC and real Redis: decisions, batches, outcomes, statuses."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from ensayo.bandits import ExplorationPolicy, ExplorationSpec
from ensayo.catalog.model import Action, ContactPolicy, Holdout
from ensayo.client import DecisioningClient, open_channel
from ensayo.decisioning.model import DecisioningSettings
from ensayo.hashing import hash_v2
from ensayo.serverkit.server import RunningServer
from ensayo.state.client import connect
from ensayo.state.contacts import contacts_key
from ensayo.state.snapshots import RedisSnapshotPublisher
from ensayo.v1 import common_pb2
from ensayo.v1 import decisioning_service_pb2 as pb
from ensayo.v1 import decisioning_service_pb2_grpc as pb_grpc
from services.decisioning.server import create_server
from tests.unit.decisioning.fakes import Ids, actions, snapshot

from .conftest import loopback_config

GREEDY = DecisioningSettings(
    exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.0)
)
EXPLORING = DecisioningSettings(
    exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.3, uniform_mix=0.1)
)


def _publish(url: str, snap) -> None:
    RedisSnapshotPublisher(connect(url)).publish(snap)


def _serve(url: str, settings=GREEDY, **kw) -> RunningServer:
    env = {"ENSAYO_SNAPSHOT_POLL_S": "0.05", **kw.pop("env", {})}  # quick to stop
    config = loopback_config("decisioning", ENSAYO_REDIS_URL=url, **env)
    return create_server(config, settings=settings, serve_metrics=False, **kw)


@pytest.fixture
def serve(redis_url) -> Iterator:
    """Start decisioning servers on the session Redis; stopped after the test."""
    running: list[RunningServer] = []

    def start(settings=GREEDY, **kw) -> tuple[DecisioningClient, pb_grpc.DecisioningServiceStub]:
        server = _serve(redis_url, settings, **kw)
        running.append(server)
        channel = open_channel(f"127.0.0.1:{server.port}", attempts=2)
        return DecisioningClient(channel), pb_grpc.DecisioningServiceStub(channel)

    yield start
    for server in running:
        server.stop(0.2)


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


class TestDecide:
    def test_returns_ranked_actions_with_propensities_and_payloads(self, redis_url, serve) -> None:
        """A Decide returns actions best first, scores, propensities, values and payloads."""
        acts = (
            Action("a", "email", value=1.0, payload={"subject": "Hi"}),
            Action("b", "email", value=3.0),
        )
        _publish(redis_url, snapshot(acts, version=4))
        client, _ = serve()
        decision = client.decide("u1", "email", max_actions=2)
        assert [a.action_key for a in decision.actions] == ["b", "a"]
        assert [a.score for a in decision.actions] == [1.5, 0.5]
        assert [a.propensity for a in decision.actions] == [1.0, 1.0]
        assert decision.actions[1].payload == {"subject": "Hi"}
        assert decision.actions[0].explanation is None and decision.explanation is None
        assert decision.policy_version == 4 * 10**9
        assert len(decision.decision_id) == 32

    def test_explain_returns_the_funnel(self, redis_url, serve) -> None:
        """explain = true: per-action inputs and every candidate's stage."""
        acts = (
            Action("adult", "email", eligibility={"age": {"$gte": 18}}),
            Action("any", "email"),
        )
        _publish(redis_url, snapshot(acts))
        client, _ = serve()
        decision = client.decide("u1", "email", attributes={"age": 3}, explain=True)
        assert decision.explanation["candidates"]["adult"]["stage"] == "ineligible"
        assert decision.explanation["candidates"]["any"]["stage"] == "chosen"
        assert decision.actions[0].explanation["rate"] == 0.5

    def test_consent_false_excludes_the_channel(self, redis_url, serve) -> None:
        """attributes.consent.email = false: no email action."""
        _publish(redis_url, snapshot(actions(2)))
        client, _ = serve()
        assert client.decide("u", "email", attributes={"consent": {"email": False}}).actions == ()
        assert client.decide("u", "email", attributes={"consent": {"sms": False}}).actions

    def test_holdout_gets_no_action(self, redis_url, serve) -> None:
        """A unit in a covering holdout: holdout true, its key, no action."""
        holdout = Holdout("program", fraction=0.5, covers_decisioning=True)
        _publish(redis_url, snapshot(actions(2), holdouts=(holdout,)))
        client, _ = serve()
        unit = next(f"u{i}" for i in range(50) if hash_v2("holdout:program", f"u{i}") < 0.5)
        decision = client.decide(unit, "email")
        assert decision.holdout and decision.holdout_key == "program" and decision.actions == ()

    def test_dry_run_reserves_nothing(self, redis_url, serve) -> None:
        """Dry runs never count against a cap; a delivered decision does."""
        policy = ContactPolicy("once", channel="email", max_contacts=1, window_s=3600)
        _publish(redis_url, snapshot(actions(2), (policy,)))
        client, _ = serve()
        for _ in range(3):
            assert client.decide("u", "email", dry_run=True).actions
        assert connect(redis_url).zcard(contacts_key("u")) == 0
        assert client.decide("u", "email").actions
        assert client.decide("u", "email").actions == ()
        assert connect(redis_url).zcard(contacts_key("u")) == 1


class TestBatch:
    def test_batch_equals_decide_per_unit_in_order(self, redis_url, serve) -> None:
        """DecideBatch streams one response per unit, in order, equal to Decide's."""
        acts = (*actions(4), Action("vip", "email", eligibility={"vip": True}, value=9.0))
        _publish(redis_url, snapshot(acts))
        single, _ = serve(EXPLORING, ids=Ids())
        batch, _ = serve(EXPLORING, ids=Ids())
        units = [(f"u{i}", {"vip": i % 4 == 0}) for i in range(30)]
        one_by_one = [single.decide(u, "email", attributes=a, max_actions=2) for u, a in units]
        streamed = list(batch.decide_batch(units, "email", max_actions=2))
        assert [d.unit_id for d in streamed] == [u for u, _ in units]
        for alone, together in zip(one_by_one, streamed, strict=True):
            assert alone.decision_id == together.decision_id
            assert alone.actions == together.actions

    def test_budgets_cap_each_action_in_the_batch(self, redis_url, serve) -> None:
        """No action goes to more units than its budget."""
        _publish(redis_url, snapshot(actions(3)))
        client, _ = serve()
        units = [(f"u{i}", None) for i in range(20)]
        got = [
            d.actions[0].action_key for d in client.decide_batch(units, "email", budgets={"a2": 7})
        ]
        assert got.count("a2") == 7 and got.count("a1") == 13


class TestOutcomes:
    def test_exactly_once(self, redis_url, serve) -> None:
        """ReportOutcome: first call applies, a repeated event id is a duplicate."""
        _publish(redis_url, snapshot(actions(1)))
        client, _ = serve()
        decision = client.decide("u", "email")
        assert client.report_outcome(decision.decision_id, "a0", 1.0, "e1") is False
        assert client.report_outcome(decision.decision_id, "a0", 1.0, "e1") is True


class TestStatuses:
    @pytest.mark.parametrize(
        ("request_", "field"),
        [
            (pb.DecideRequest(channel="email"), "unit.id"),
            (pb.DecideRequest(unit=common_pb2.Unit(id="u")), "channel"),
            (
                pb.DecideRequest(unit=common_pb2.Unit(id="u"), channel="e", max_actions=0),
                "max_actions",
            ),
            (
                pb.DecideRequest(unit=common_pb2.Unit(id="u"), channel="e", max_actions=101),
                "max_actions",
            ),
            (
                pb.DecideRequest(
                    unit=common_pb2.Unit(id="u"), channel="e", context={"x": float("nan")}
                ),
                "context['x']",
            ),
        ],
    )
    def test_invalid_decide_names_the_field(self, redis_url, serve, request_, field) -> None:
        """INVALID_ARGUMENT whose message starts with the field path."""
        _publish(redis_url, snapshot(actions(1)))
        _, stub = serve()
        code, details = _code(lambda: stub.Decide(request_))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith(f"{field}: ")

    def test_bad_batch_item_is_named(self, redis_url, serve) -> None:
        """One unit without id fails the whole batch, naming units[i].id."""
        _publish(redis_url, snapshot(actions(1)))
        _, stub = serve()
        request = pb.DecideBatchRequest(
            channel="email", units=[common_pb2.Unit(id="a"), common_pb2.Unit(id="")]
        )
        code, details = _code(lambda: list(stub.DecideBatch(request)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("units[1].id: ")

    def test_too_many_units_is_resource_exhausted(self, redis_url, serve) -> None:
        """More than 100,000 units is RESOURCE_EXHAUSTED."""
        _publish(redis_url, snapshot(actions(1)))
        _, stub = serve()
        request = pb.DecideBatchRequest(channel="email", units=[common_pb2.Unit(id="u")] * 100_001)
        code, details = _code(lambda: list(stub.DecideBatch(request)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details.startswith("units: ")

    def test_before_any_snapshot_is_failed_precondition(self, serve) -> None:
        """No snapshot published yet: FAILED_PRECONDITION."""
        client, _ = serve()
        code, _ = _code(lambda: client.decide("u", "email"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION

    def test_unknown_decision_is_not_found(self, redis_url, serve) -> None:
        """ReportOutcome for a decision never made (or expired) is NOT_FOUND."""
        _publish(redis_url, snapshot(actions(1)))
        client, _ = serve()
        code, _ = _code(lambda: client.report_outcome("nope", "a0", 1.0, "e"))
        assert code == grpc.StatusCode.NOT_FOUND

    def test_redis_down_is_unavailable(self, own_redis) -> None:
        """Fail closed: with Redis gone a delivered decision is UNAVAILABLE (retryable)."""
        _publish(own_redis.url, snapshot(actions(1)))
        server = _serve(own_redis.url)
        try:
            client = DecisioningClient(open_channel(f"127.0.0.1:{server.port}", attempts=2))
            assert client.decide("u", "email").actions
            own_redis.stop()
            code, _ = _code(lambda: client.decide("u", "email"))
            assert code == grpc.StatusCode.UNAVAILABLE
        finally:
            server.stop(0.2)

    def test_decide_needs_the_decide_scope(self, redis_url, keys_file) -> None:
        """A key without the decide scope is PERMISSION_DENIED."""
        _publish(redis_url, snapshot(actions(1)))
        server = _serve(redis_url, env={"ENSAYO_API_KEYS_FILE": str(keys_file)})
        try:
            channel = open_channel(f"127.0.0.1:{server.port}", api_key="read-secret", attempts=2)
            code, _ = _code(lambda: DecisioningClient(channel).decide("u", "email"))
            assert code == grpc.StatusCode.PERMISSION_DENIED
        finally:
            server.stop(0.2)
