"""Decisioning on real Redis: the contact script, model updates, records, learning, outages."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest

from ensayo.bandits import (
    ExplorationPolicy,
    ExplorationSpec,
    FeatureSpec,
    linear_prior,
    update_batch,
)
from ensayo.catalog.model import Action, ContactPolicy
from ensayo.decisioning.contacts import ContactRequest, ContactState
from ensayo.decisioning.model import (
    BatchQuery,
    DecideQuery,
    DecisioningSettings,
    DecisionRecord,
    FailureMode,
    ModelKind,
    Outcome,
    Subject,
)
from ensayo.errors import DependencyUnavailable
from ensayo.events.model import DECISION, OUTCOME
from ensayo.events.shipper import EventShipper
from ensayo.state.client import connect
from ensayo.state.contacts import RedisContactStore, contacts_key, unit_tag
from ensayo.state.decisions import RedisDecisionStore, decision_key, new_decision_id
from ensayo.state.events import STREAM_KEY, RedisEventLog, decode_entry
from ensayo.state.models import BETA_KEY, RedisModelStore, linear_key
from tests.unit.decisioning.fakes import (
    T0,
    FakeContactStore,
    actions,
    snapshot,
    world,
)

GREEDY = DecisioningSettings(
    exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.0)
)


def redis_world(url: str, snap, settings=None, ids=None, decision_log=None):
    client = connect(url)
    return world(
        snap,
        settings,
        ids=ids,
        decision_log=decision_log,
        contacts=RedisContactStore(client),
        models=RedisModelStore(client),
        decisions=RedisDecisionStore(client),
        events=RedisEventLog(client),
    )


def _request(unit, decision, now, policies, watched, expected, chosen, reserve=True, m=1):
    return ContactRequest(
        unit_id=unit,
        decision_id=decision,
        channel="email",
        now=now,
        policies=policies,
        watched=watched,
        max_actions=m,
        expected=expected,
        chosen=chosen,
        reserve=reserve,
        retention_s=max(p.window_s for p in policies),
    )


@pytest.fixture(params=["fake", "redis"])
def contact_store(request):
    if request.param == "fake":
        return FakeContactStore()
    return RedisContactStore(connect(request.getfixturevalue("redis_url")))


class TestContactStoreContract:
    """The same scenario against the fake and the Lua script: identical replies."""

    def test_settle_scenario(self, contact_store) -> None:
        """Mismatched guesses reserve nothing; matched ones reserve; windows roll."""
        policies = (
            ContactPolicy("email", channel="email", max_contacts=2, window_s=3600),
            ContactPolicy("promo", action_key="promo", max_contacts=1, window_s=7200),
        )
        watched = ("promo",)
        free = ContactState((False,), 1)
        reply = contact_store.settle(
            [_request("u", "d1", T0, policies, watched, free, ("promo",))]
        )[0]
        assert reply.matched and reply.counts == (0, 0)
        reply = contact_store.settle(
            [_request("u", "d2", T0, policies, watched, free, ("promo",))]
        )[0]
        assert not reply.matched
        assert reply.state == ContactState((True,), 1) and reply.counts == (1, 1)
        capped = reply.state
        reply = contact_store.settle([_request("u", "d2", T0, policies, watched, capped, ("a",))])[
            0
        ]
        assert reply.matched
        later = T0 + timedelta(seconds=3601)
        [one, other] = contact_store.settle(
            [
                _request(
                    "u", "d3", later, policies, watched, ContactState((True,), 2), (), False, 2
                ),
                _request("v", "d4", later, policies, watched, free, ("a",)),
            ]
        )
        assert one.matched and one.counts == (0, 1) and one.state == ContactState((True,), 2)
        assert other.matched and other.counts == (0, 0)

    def test_channel_cap_limits_slots(self, contact_store) -> None:
        """A channel-wide cap with room for one leaves one slot of three."""
        policies = (ContactPolicy("email", channel="email", max_contacts=2, window_s=60),)
        first = contact_store.settle(
            [_request("u", "d1", T0, policies, (), ContactState((), 2), ("a",), m=3)]
        )[0]
        assert first.matched  # the cap of 2 leaves 2 of the 3 slots asked
        second = contact_store.settle(
            [_request("u", "d2", T0, policies, (), ContactState((), 2), ("a", "b"), m=3)]
        )[0]
        assert not second.matched and second.state == ContactState((), 1)


class TestAtomicCaps:
    @pytest.mark.parametrize(
        "policy",
        [
            ContactPolicy("once", channel="email", max_contacts=1, window_s=3600),
            ContactPolicy("a2_once", action_key="a2", max_contacts=1, window_s=3600),
            ContactPolicy("everything_once", max_contacts=1, window_s=3600),
        ],
        ids=["channel", "action", "all"],
    )
    def test_fifty_concurrent_decisions_never_exceed_a_cap_of_one(self, redis_url, policy) -> None:
        """50 threads decide for one unit at once: exactly one gets the capped action."""
        acts = actions(3)
        w = redis_world(redis_url, snapshot(acts, (policy,)), GREEDY)
        barrier = threading.Barrier(50)
        results, errors = [], []

        def decide() -> None:
            barrier.wait()
            try:
                results.append(w.usecases.decide(DecideQuery(Subject("same"), "email")))
            except Exception as exc:  # collected: a thread must not swallow failures
                errors.append(exc)

        threads = [threading.Thread(target=decide) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        capped = "a2" if policy.action_key else None
        delivered = [a.action_key for d in results for a in d.actions]
        if capped:
            assert delivered.count("a2") == 1
            assert len(delivered) == 50  # everyone else gets another action
        else:
            assert len(delivered) == 1
        client = connect(redis_url)
        assert client.zcard(contacts_key("same")) == (1 if capped or delivered else 0)


class TestContactScript:
    """What the Lua script keeps in the unit's sorted set, beyond the replies."""

    def test_expired_contacts_are_dropped_by_the_next_reservation(self, redis_url) -> None:
        """Older than the retention: not counted, and removed when a reservation writes."""
        client = connect(redis_url)
        store = RedisContactStore(client)
        policies = (ContactPolicy("email", channel="email", max_contacts=5, window_s=60),)
        free = ContactState((), 1)
        key = contacts_key("u")
        for decision, seconds in (("d1", 0), ("d2", 30)):
            at = T0 + timedelta(seconds=seconds)
            assert store.settle([_request("u", decision, at, policies, (), free, ("a",))])[
                0
            ].matched
        assert client.zcard(key) == 2
        later = T0 + timedelta(seconds=61)
        check = store.settle([_request("u", "d3", later, policies, (), free, ("a",), False)])[0]
        assert check.counts == (1,) and client.zcard(key) == 2  # a check removes nothing
        reply = store.settle([_request("u", "d3", later, policies, (), free, ("a",))])[0]
        assert reply.matched and reply.counts == (1,)
        assert sorted(m.split(b"\x1f")[0] for m in client.zrange(key, 0, -1)) == [b"d2", b"d3"]
        assert 59_000 < client.pttl(key) <= 60_000

    def test_a_foreign_member_counts_only_for_policies_of_every_channel(self, redis_url) -> None:
        """A member without channel and action (written by hand) matches no named one."""
        client = connect(redis_url)
        client.zadd(contacts_key("u"), {"stray": int(T0.timestamp() * 1000)})
        policies = (
            ContactPolicy("all", max_contacts=5, window_s=60),
            ContactPolicy("email", channel="email", max_contacts=5, window_s=60),
        )
        reply = RedisContactStore(client).settle(
            [_request("u", "d", T0, policies, (), ContactState((), 1), (), False)]
        )[0]
        assert reply.counts == (1, 0)


class TestModelStore:
    def test_lua_sherman_morrison_equals_numpy(self, redis_url) -> None:
        """Twenty updates in Lua give the A⁻¹ and b of ensayo.bandits.update_batch."""
        store = RedisModelStore(connect(redis_url))
        rng = np.random.default_rng(7)
        x = rng.normal(size=(20, 5))
        rewards = rng.random(20)
        for i in range(20):
            assert store.apply_outcome(
                f"e{i}",
                "a",
                float(rewards[i]),
                features=x[i].tolist(),
                feature_spec="s",
                ridge=2.0,
                discount=1.0,
                ttl_s=60,
            )
        params = store.load("s", 5)
        expected = update_batch(linear_prior(1, 5, 2.0), np.zeros(20), x, rewards)
        got = params.linear["a"]
        np.testing.assert_allclose(got.a_inv, expected.a_inv[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.b, expected.b[0], rtol=1e-12)
        assert got.count == 20
        assert params.linear_version == 20 and params.beta_version == 20

    def test_beta_evidence_with_discount(self, redis_url) -> None:
        """Evidence decays by the discount per outcome; rewards are clipped into [0, 1]."""
        store = RedisModelStore(connect(redis_url))
        for i, reward in enumerate([1.0, 0.0, 5.0]):
            store.apply_outcome(
                f"e{i}",
                "a",
                reward,
                features=(),
                feature_spec="",
                ridge=1.0,
                discount=0.5,
                ttl_s=60,
            )
        s, f = store.load("", 1).beta["a"]
        assert (s, f) == pytest.approx((0.25 * 1 + 0 + 1, 0.5 * 1 + 0))

    def test_exactly_once_under_concurrency(self, redis_url) -> None:
        """Twenty threads reporting one event id apply it once."""
        store = RedisModelStore(connect(redis_url))
        applied = []

        def report() -> None:
            applied.append(
                store.apply_outcome(
                    "same",
                    "a",
                    1.0,
                    features=(1.0,),
                    feature_spec="s",
                    ridge=1.0,
                    discount=1.0,
                    ttl_s=60,
                )
            )

        threads = [threading.Thread(target=report) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert applied.count(True) == 1
        assert store.versions("s") == (1, 1)
        assert store.load("s", 1).beta == {"a": (1.0, 0.0)}

    def test_portable_encoding(self, redis_url) -> None:
        """Parameters are little-endian float64 arrays any language can read."""
        client = connect(redis_url)
        RedisModelStore(client).apply_outcome(
            "e",
            "a",
            1.0,
            features=(1.0, 2.0),
            feature_spec="s",
            ridge=1.0,
            discount=1.0,
            ttl_s=60,
        )
        assert np.frombuffer(client.hget(BETA_KEY, "a:a"), "<f8").tolist() == [1.0, 0.0]
        raw = np.frombuffer(client.hget(linear_key("s"), "a:a"), "<f8")
        assert raw.size == 1 + 2 + 4 and raw[0] == 1.0 and raw[1:3].tolist() == [1.0, 2.0]


class TestDecisionStore:
    def test_records_round_trip_with_a_ttl(self, redis_url) -> None:
        """A record reads back equal and expires after decision_ttl_s."""
        client = connect(redis_url)
        store = RedisDecisionStore(client)
        record = DecisionRecord("d1", "u1", T0, ("a",), (1.0, 2.5), "spec", "")
        store.save([record, DecisionRecord("d2", "u2", T0)], ttl_s=120)
        assert store.get("d1") == record
        assert 0 < client.ttl(decision_key("d1")) <= 120
        assert store.get("nope") is None


class TestLogging:
    def test_decisions_and_outcomes_reach_the_stream(self, redis_url) -> None:
        """A delivered decision and its outcome are $decision and $outcome stream entries."""
        w = redis_world(redis_url, snapshot(actions(2)))
        decision = w.usecases.decide(DecideQuery(Subject("u1"), "email"))
        key = decision.actions[0].action_key
        w.usecases.report_outcome(Outcome(decision.decision_id, key, 1.0, "evt"))
        w.usecases.report_outcome(Outcome(decision.decision_id, key, 1.0, "evt"))
        entries = connect(redis_url).xrange(STREAM_KEY)
        events = [decode_entry(fields) for _, fields in entries]
        assert [e.name for e in events] == [DECISION, OUTCOME]
        assert events[0].event_id == decision.decision_id
        assert events[1].decision_id == decision.decision_id
        assert events[1].properties == {"action_key": key}

    def test_record_is_written_with_the_reservation(self, redis_url) -> None:
        """With a contact policy the record is stored by the contact script, in the unit's slot."""
        policy = ContactPolicy("cap", channel="email", max_contacts=5, window_s=60)
        w = redis_world(redis_url, snapshot(actions(1), (policy,)), ids=new_decision_id)
        decision = w.usecases.decide(DecideQuery(Subject("u1"), "email"))
        assert decision.decision_id.startswith(unit_tag("u1"))
        client = connect(redis_url)
        key = decision_key(decision.decision_id)
        assert key.split("}")[0] == contacts_key("u1").split("}")[0].replace(
            "contacts", "decision"
        )
        assert 0 < client.ttl(key) <= 7 * 86_400
        assert RedisDecisionStore(client).get(decision.decision_id).action_keys == ("a0",)
        dry = w.usecases.decide(DecideQuery(Subject("u1"), "email", dry_run=True))
        assert RedisDecisionStore(client).get(dry.decision_id) is None

    def test_batch_reserves_and_records_every_unit(self, redis_url) -> None:
        """DecideBatch under a contact policy settles each unit in one pipeline, records kept."""
        policy = ContactPolicy("cap", channel="email", max_contacts=1, window_s=60)
        w = redis_world(redis_url, snapshot(actions(2), (policy,)), GREEDY, ids=new_decision_id)
        units = tuple(Subject(f"u{i % 3}") for i in range(6))
        batch = list(w.usecases.decide_batch(BatchQuery(units, "email")))
        assert [len(d.actions) for d in batch] == [1, 1, 1, 0, 0, 0]
        store = RedisDecisionStore(connect(redis_url))
        for decision in batch[:3]:
            assert store.get(decision.decision_id).action_keys == (decision.actions[0].action_key,)


class TestLearning:
    def test_contextual_policy_learns_each_segment_while_exploring(self, redis_url) -> None:
        """LinUCB on one-hot segments finds each segment's best action and keeps exploring.

        Three segments, four actions, Bernoulli rewards with a different best per segment;
        decisions, outcomes and model refreshes all go through real Redis.
        """
        rates = {
            "north": [0.7, 0.2, 0.1, 0.1],
            "south": [0.1, 0.7, 0.2, 0.1],
            "east": [0.1, 0.2, 0.1, 0.7],
        }
        settings = DecisioningSettings(
            model=ModelKind.LINEAR,
            features=FeatureSpec.build(categorical={"segment": list(rates)}, bias=False),
            exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.1),
            ucb_alpha=0.3,
        )
        acts = [f"a{i}" for i in range(4)]
        w = redis_world(redis_url, snapshot(Action(k, "email") for k in acts), settings)
        rng = np.random.default_rng(11)
        late_best, late_total, explored, floor = 0, 0, 0, []
        for step in range(1200):
            segment = list(rates)[step % 3]
            decision = w.usecases.decide(
                DecideQuery(Subject(f"u{step}", {"segment": segment}), "email", explain=True)
            )
            [chosen] = decision.actions
            floor.append(chosen.propensity)
            i = acts.index(chosen.action_key)
            reward = float(rng.random() < rates[segment][i])
            w.usecases.report_outcome(
                Outcome(decision.decision_id, chosen.action_key, reward, f"o{step}")
            )
            if step % 10 == 9:
                w.holder.refresh()
            if step >= 900:
                late_total += 1
                late_best += i == int(np.argmax(rates[segment]))
                explored += bool(chosen.explanation["explored"])
        assert min(floor) >= 0.1 / 4 - 1e-12  # epsilon-greedy never goes below ε/k
        assert explored > 0  # still exploring at the end
        assert late_best / late_total >= 0.85
        for segment, true in rates.items():
            dry = w.usecases.decide(
                DecideQuery(
                    Subject("probe", {"segment": segment}), "email", dry_run=True, explain=True
                )
            )
            greedy = max(
                dry.explanation["candidates"].items(), key=lambda kv: kv[1].get("score", -1)
            )[0]
            assert greedy == acts[int(np.argmax(true))]


class TestOutages:
    def test_fail_closed_is_unavailable_and_fail_open_serves(self, own_redis) -> None:
        """Redis down: closed refuses delivered decisions; open serves them, unlogged."""
        policy = ContactPolicy("cap", channel="email", max_contacts=1, window_s=60)
        closed = redis_world(own_redis.url, snapshot(actions(2), (policy,)))
        opened = redis_world(
            own_redis.url,
            snapshot(actions(2), (policy,)),
            DecisioningSettings(on_redis_down=FailureMode.OPEN),
        )
        assert closed.usecases.decide(DecideQuery(Subject("u"), "email")).actions
        own_redis.stop()
        with pytest.raises(DependencyUnavailable):
            closed.usecases.decide(DecideQuery(Subject("u"), "email"))
        with pytest.raises(DependencyUnavailable):
            closed.usecases.report_outcome(Outcome("d", "a0", 1.0, "e"))
        served = opened.usecases.decide(DecideQuery(Subject("u"), "email"))
        assert len(served.actions) == 1
        with pytest.raises(DependencyUnavailable):
            opened.holder.refresh()  # models stay at what was loaded
        assert opened.holder.params.beta_version == 0


class TestShippedLog:
    def test_shipped_decisions_reach_the_stream_once(self, redis_url) -> None:
        """With the background shipper every delivered decision is logged once, after a flush."""
        client = connect(redis_url)
        shipper = EventShipper(RedisEventLog(client), flush_s=0.01)
        usecases = redis_world(
            redis_url, snapshot(actions(3)), ids=new_decision_id, decision_log=shipper
        ).usecases
        decided = [usecases.decide(DecideQuery(Subject(f"u{i}"), "email")) for i in range(40)]
        assert shipper.flush(5.0)
        shipper.close()
        logged = [decode_entry(f) for _, f in client.xrange(STREAM_KEY)]
        assert sorted(e.event_id for e in logged if e.name == DECISION) == sorted(
            d.decision_id for d in decided
        )
