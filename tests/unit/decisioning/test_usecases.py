"""The use cases over fakes: the funnel end to end, logs, holdouts, batches, outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from ensayo.bandits import ExplorationPolicy, ExplorationSpec, FeatureSpec
from ensayo.catalog.model import Action, ContactPolicy, Holdout
from ensayo.decisioning.model import (
    BatchQuery,
    DecideQuery,
    DecisioningSettings,
    FailureMode,
    ModelKind,
    Outcome,
    Subject,
)
from ensayo.decisioning.usecases import CHUNK_UNITS
from ensayo.errors import DependencyUnavailable, FailedPrecondition, InvalidArgument, NotFound
from ensayo.events.model import DECISION, OUTCOME
from ensayo.hashing import hash_v2

from .fakes import Ids, actions, snapshot, world

GREEDY = DecisioningSettings(
    exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.0)
)


def _decide(w, unit="u1", **kw):
    attributes = kw.pop("attributes", {})
    return w.usecases.decide(DecideQuery(Subject(unit, attributes), "email", **kw))


class TestDecide:
    def test_before_any_snapshot_is_failed_precondition(self) -> None:
        """No catalog snapshot yet: FAILED_PRECONDITION, nothing logged."""
        w = world(None)
        with pytest.raises(FailedPrecondition):
            _decide(w)
        assert w.events.events == []

    def test_greedy_returns_the_best_scores_in_order(self) -> None:
        """With equal rates, value ranks; scores and expected values are rate x value."""
        w = world(snapshot(actions(4)), GREEDY)
        decision = _decide(w, max_actions=2)
        assert [a.action_key for a in decision.actions] == ["a3", "a2"]
        assert [a.score for a in decision.actions] == [2.0, 1.5]  # prior mean 0.5 x value
        assert [a.expected_value for a in decision.actions] == [2.0, 1.5]
        assert [a.propensity for a in decision.actions] == [1.0, 1.0]
        assert decision.policy_version == 1 * 10**9

    def test_delivered_decision_is_logged_with_propensities(self) -> None:
        """A delivered decision is one $decision event (id = decision id) and one record."""
        w = world(snapshot(actions(3)))
        decision = _decide(w, context={"hour": 3.0})
        [event] = w.events.events
        assert event.name == DECISION
        assert event.event_id == event.decision_id == decision.decision_id
        assert event.unit_id == "u1"
        props = event.properties
        assert props["candidates"] == ["a0", "a1", "a2"]
        assert props["chosen"] == [
            {
                "action_key": a.action_key,
                "propensity": a.propensity,
                "score": a.score,
                "expected_value": a.expected_value,
            }
            for a in decision.actions
        ]
        assert props["context"] == {"hour": 3.0}
        assert props["channel"] == "email"
        assert props["holdout"] is False
        assert props["policy_version"] == decision.policy_version
        assert event.probability == decision.actions[0].propensity
        record = w.decisions.get(decision.decision_id)
        assert record.action_keys == tuple(a.action_key for a in decision.actions)
        assert record.unit_id == "u1"

    def test_dry_run_logs_and_reserves_nothing(self) -> None:
        """A dry run checks policies but reserves no contact and logs nothing."""
        policy = ContactPolicy("cap", channel="email", max_contacts=1, window_s=3600)
        w = world(snapshot(actions(2), (policy,)))
        for _ in range(3):
            assert len(_decide(w, dry_run=True).actions) == 1
        assert w.events.events == []
        assert w.decisions.records == {}
        assert w.contacts.contacts.get("u1", {}) == {}
        assert len(_decide(w).actions) == 1
        assert _decide(w).actions == ()
        assert _decide(w, dry_run=True).actions == ()

    def test_explain_gives_every_stage(self) -> None:
        """With explain, each action of the channel has the stage where it left the funnel."""
        acts = (
            Action("adults", "email", eligibility={"age": {"$gte": 18}}),
            Action("no_vip", "email", exclusions=({"tier": "vip"},)),
            Action("capped", "email"),
            Action("top", "email", placements=("top",)),
            Action("ok", "email"),
            Action("best", "email", value=5.0),
        )
        policy = ContactPolicy("once", action_key="capped", max_contacts=0, window_s=60)
        w = world(snapshot(acts, (policy,)), GREEDY)
        decision = _decide(
            w, attributes={"age": 10, "tier": "vip"}, placement="side", explain=True
        )
        stages = {k: v["stage"] for k, v in decision.explanation["candidates"].items()}
        assert stages == {
            "adults": "ineligible",
            "no_vip": "excluded",
            "capped": "capped",
            "top": "wrong_placement",
            "ok": "ranked",
            "best": "chosen",
        }
        assert decision.explanation["candidates"]["capped"]["policy"] == "once"
        [best] = decision.actions
        assert best.explanation["rate"] == 0.5
        assert best.explanation["value"] == 5.0
        assert best.explanation["tier"] == 0
        assert best.explanation["stage"] == "chosen"

    def test_unknown_channel_has_no_action(self) -> None:
        """A channel without actions is no error: no action, still a logged decision."""
        w = world(snapshot(actions(2)))
        decision = w.usecases.decide(DecideQuery(Subject("u"), "carrier-pigeon", explain=True))
        assert decision.actions == () and decision.explanation["candidates"] == {}
        assert w.events.events[0].properties["candidates"] == []

    def test_levers_multiply_scores(self) -> None:
        """context['lever.<key>'] multiplies that action's score (and can reorder)."""
        w = world(snapshot(actions(2)), GREEDY)
        decision = _decide(w, context={"lever.a0": 10.0})
        assert decision.actions[0].action_key == "a0"
        assert decision.actions[0].score == pytest.approx(0.5 * 1 * 10)


class TestHoldout:
    def test_holdout_members_get_no_action_but_are_logged(self) -> None:
        """A unit in a covering holdout: holdout = true, its key, no action, still logged."""
        holdout = Holdout("global", fraction=0.5, covers_decisioning=True)
        w = world(snapshot(actions(3), holdouts=(holdout,)))
        inside = next(f"u{i}" for i in range(100) if hash_v2("holdout:global", f"u{i}") < 0.5)
        outside = next(f"u{i}" for i in range(100) if hash_v2("holdout:global", f"u{i}") >= 0.5)
        held = _decide(w, unit=inside)
        assert held.holdout and held.holdout_key == "global" and held.actions == ()
        event = w.events.events[-1]
        assert event.properties["holdout"] is True
        assert event.properties["holdout_key"] == "global"
        assert event.properties["chosen"] == []
        assert event.properties["candidates"] == ["a0", "a1", "a2"]
        free = _decide(w, unit=outside)
        assert not free.holdout and len(free.actions) == 1

    def test_holdout_without_covers_decisioning_is_ignored(self) -> None:
        """A holdout that does not cover decisioning never withholds actions."""
        holdout = Holdout("exp_only", fraction=1.0)
        w = world(snapshot(actions(2), holdouts=(holdout,)))
        assert not _decide(w).holdout


class TestContactPolicies:
    def test_cap_per_action_channel_and_all(self) -> None:
        """Per-action, per-channel and all-channel caps each hold over repeated decisions."""
        acts = actions(3)
        policies = (
            ContactPolicy("a2_once", action_key="a2", max_contacts=1, window_s=3600),
            ContactPolicy("email_3", channel="email", max_contacts=3, window_s=3600),
        )
        w = world(snapshot(acts, policies), GREEDY)
        got = [tuple(a.action_key for a in _decide(w).actions) for _ in range(5)]
        assert got == [("a2",), ("a1",), ("a1",), (), ()]

    def test_channel_cap_limits_slots(self) -> None:
        """Room for one more contact in the channel returns one action even if 3 are asked."""
        policy = ContactPolicy("email_2", channel="email", max_contacts=2, window_s=3600)
        w = world(snapshot(actions(5), (policy,)), GREEDY)
        assert len(_decide(w, max_actions=1).actions) == 1
        decision = _decide(w, max_actions=3, explain=True)
        assert len(decision.actions) == 1
        assert decision.explanation["slots"] == 1

    def test_rolling_window_frees_the_cap(self) -> None:
        """A contact older than the window no longer counts."""
        policy = ContactPolicy("hourly", channel="email", max_contacts=1, window_s=3600)
        w = world(snapshot(actions(1), (policy,)))
        assert len(_decide(w).actions) == 1
        w.clock.advance(3599)
        assert _decide(w).actions == ()
        w.clock.advance(2)
        assert len(_decide(w).actions) == 1

    def test_other_channels_policies_do_not_apply(self) -> None:
        """An sms cap does not limit email decisions."""
        policy = ContactPolicy("sms", channel="sms", max_contacts=0, window_s=3600)
        w = world(snapshot(actions(1), (policy,)))
        assert len(_decide(w).actions) == 1
        assert w.contacts.calls == 0  # no relevant policy: the store is not even asked

    def test_closed_failure_is_unavailable(self) -> None:
        """Fail closed (default): Redis down means UNAVAILABLE for a delivered decision."""
        policy = ContactPolicy("cap", channel="email", max_contacts=1, window_s=60)
        w = world(snapshot(actions(1), (policy,)))
        w.contacts.down = True
        with pytest.raises(DependencyUnavailable):
            _decide(w)
        w.contacts.down = False
        w.events.down = True
        with pytest.raises(DependencyUnavailable):
            _decide(w)

    def test_open_failure_decides_without_caps(self) -> None:
        """Fail open: Redis down, caps are skipped and the decision is served unlogged."""
        policy = ContactPolicy("cap", channel="email", max_contacts=1, window_s=60)
        settings = DecisioningSettings(on_redis_down=FailureMode.OPEN)
        w = world(snapshot(actions(1), (policy,)), settings)
        w.contacts.down = w.events.down = w.decisions.down = True
        for _ in range(3):
            assert len(_decide(w).actions) == 1
        assert w.events.events == []

    def test_state_changed_meanwhile_decides_again(self) -> None:
        """If the unit's state moved after the first guess, the decision is remade on it."""
        policy = ContactPolicy("a1", action_key="a1", max_contacts=1, window_s=60)
        w = world(snapshot(actions(2), (policy,)), GREEDY)
        assert _decide(w).actions[0].action_key == "a1"
        # The next decision first assumes nothing is capped, learns a1 is, and picks a0.
        assert _decide(w).actions[0].action_key == "a0"
        assert w.contacts.calls == 3

    def test_a_capped_unit_settles_in_one_round_trip(self) -> None:
        """The unit's last capped state is the next first guess: one settle, not two, and the
        same answer; a guess gone stale (the window passed) costs one retry, never a cap."""
        policy = ContactPolicy("daily", channel="email", max_contacts=1, window_s=3600)
        w = world(snapshot(actions(2), (policy,)), GREEDY)
        assert len(_decide(w).actions) == 1  # open state, as guessed: one call
        assert w.contacts.calls == 1
        assert _decide(w).actions == ()  # guessed open, found capped, decided again
        assert w.contacts.calls == 3
        for _ in range(3):
            assert _decide(w).actions == ()
        assert w.contacts.calls == 6  # capped, as remembered: one call each
        w.clock.advance(3601)
        assert len(_decide(w).actions) == 1  # guessed capped, found open, decided again
        assert w.contacts.calls == 8
        assert len(_decide(w).actions) == 0  # capped again by the one just delivered
        assert w.contacts.calls == 10
        delivered = sum(len(e.properties["chosen"]) for e in w.events.events)
        assert delivered == 2

    def test_remembered_states_are_per_channel_and_max_actions(self) -> None:
        """A unit capped for one action on a per-action policy still gets the other, and a
        request for more actions than before guesses afresh."""
        policy = ContactPolicy("a1", action_key="a1", max_contacts=1, window_s=60)
        w = world(snapshot(actions(2), (policy,)), GREEDY)
        assert [a.action_key for a in _decide(w).actions] == ["a1"]
        assert [a.action_key for a in _decide(w).actions] == ["a0"]
        calls = w.contacts.calls
        assert [a.action_key for a in _decide(w).actions] == ["a0"]
        assert w.contacts.calls == calls + 1
        assert [a.action_key for a in _decide(w, max_actions=2).actions] == ["a0"]
        assert w.contacts.calls == calls + 3  # no guess for max_actions=2 yet

    def test_fail_open_ignores_remembered_caps(self) -> None:
        """Redis down and fail-open: a replica that remembers the unit capped answers as one
        that does not, uncapped, with an explanation that says so (found in review)."""
        policy = ContactPolicy("daily", channel="email", max_contacts=1, window_s=86_400)
        settings = DecisioningSettings(
            exploration=GREEDY.exploration, on_redis_down=FailureMode.OPEN
        )
        snap = snapshot(actions(3), (policy,))
        warm = world(snap, settings)
        assert [a.action_key for a in _decide(warm).actions] == ["a2"]
        assert _decide(warm).actions == ()  # capped, and now remembered
        cold = world(snap, settings, contacts=warm.contacts, decisions=warm.decisions)
        warm.contacts.down = True
        answers = [_decide(w, explain=True) for w in (warm, cold)]
        assert [[a.action_key for a in d.actions] for d in answers] == [["a2"], ["a2"]]
        assert answers[0].explanation is not None
        assert answers[0].explanation["slots"] == 1

    def test_the_decision_log_has_the_slots_left(self) -> None:
        """``$decision`` logs the slots a channel-wide cap left, for off-policy evaluation."""
        policy = ContactPolicy("three", channel="email", max_contacts=3, window_s=86_400)
        w = world(snapshot(actions(3), (policy,)))
        assert len(_decide(w, max_actions=2).actions) == 2
        assert len(_decide(w, max_actions=2).actions) == 1
        logged = [(e.properties["max_actions"], e.properties["slots"]) for e in w.events.events]
        assert logged == [(2, 2), (2, 1)]

    def test_a_unit_id_with_a_nul_is_refused(self) -> None:
        """Its $decision could not be stored in PostgreSQL: INVALID_ARGUMENT on unit.id."""
        w = world(snapshot(actions(1)))
        with pytest.raises(InvalidArgument) as info:
            _decide(w, unit="user\x0042")
        assert info.value.field == "unit.id"

    def test_bounds_keep_the_model_finite(self) -> None:
        """Numbers past ±1e9 are refused where they enter, naming the field: a lever, a
        feature attribute, a reward (a reward of 1e308 once overflowed everyone's model)."""
        linear = DecisioningSettings(
            model=ModelKind.LINEAR, features=FeatureSpec(("bias", "spend"))
        )
        w = world(snapshot(actions(3)), linear)
        with pytest.raises(InvalidArgument, match=r"context\['lever.a2'\]"):
            _decide(w, context={"lever.a2": 1e308})
        with pytest.raises(InvalidArgument, match=r"attributes.spend"):
            _decide(w, attributes={"spend": 1e200})
        decision = _decide(w, attributes={"spend": 1e9})
        key = decision.actions[0].action_key
        with pytest.raises(InvalidArgument, match="reward"):
            w.usecases.report_outcome(Outcome(decision.decision_id, key, 1e308, "e1"))
        assert not w.usecases.report_outcome(
            Outcome(decision.decision_id, key, -1e9, "e2")
        ).duplicate


class TestBatch:
    def test_batch_equals_decide_per_unit(self) -> None:
        """DecideBatch gives each unit what Decide gives it (same ids, same code path)."""
        settings = DecisioningSettings(
            exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.5)
        )
        acts = (*actions(4), Action("vip", "email", eligibility={"vip": True}, value=9.0))
        units = [Subject(f"u{i}", {"vip": i % 3 == 0}) for i in range(40)]
        one = world(snapshot(acts), settings)
        singles = [one.usecases.decide(DecideQuery(u, "email", max_actions=2)) for u in units]
        many = world(snapshot(acts), settings)
        batch = list(many.usecases.decide_batch(BatchQuery(tuple(units), "email", max_actions=2)))
        assert [d.unit_id for d in batch] == [u.id for u in units]
        assert batch == singles
        assert [e.properties for e in many.events.events] == [
            e.properties for e in one.events.events
        ]

    def test_each_chunk_is_decided_at_its_own_time(self) -> None:
        """A slow stream: a later chunk's contacts are stamped when it is decided, so a
        rolling-window cap holds in real time (they carried the stream's start time)."""
        policy = ContactPolicy("hourly", channel="email", max_contacts=1, window_s=3600)
        w = world(snapshot(actions(2), (policy,)))
        units = (*(Subject(f"f{i}") for i in range(CHUNK_UNITS)), Subject("late"))
        stream = w.usecases.decide_batch(BatchQuery(units, "email"))
        for _ in range(CHUNK_UNITS):
            next(stream)
        w.clock.advance(3000)
        assert next(stream).actions  # the second chunk, 3,000 s after the first
        w.clock.advance(601)  # an hour after the stream began, 601 s after this delivery
        assert _decide(w, unit="late").actions == ()

    def test_budgets_are_respected(self) -> None:
        """No action is given to more units than its budget; the rest go elsewhere."""
        w = world(snapshot(actions(3)), GREEDY)
        units = tuple(Subject(f"u{i}") for i in range(25))
        batch = list(
            w.usecases.decide_batch(BatchQuery(units, "email", budgets={"a2": 10, "a1": 5}))
        )
        got = [d.actions[0].action_key for d in batch]
        assert got == ["a2"] * 10 + ["a1"] * 5 + ["a0"] * 10

    def test_batch_chunks_and_caps_across_units(self) -> None:
        """Batches larger than a chunk keep order; caps apply to each unit separately."""
        policy = ContactPolicy("cap", channel="email", max_contacts=1, window_s=60)
        w = world(snapshot(actions(2), (policy,)), GREEDY)
        units = tuple(Subject(f"u{i % 1500}") for i in range(3000))
        batch = list(w.usecases.decide_batch(BatchQuery(units, "email")))
        assert [len(d.actions) for d in batch] == [1] * 1500 + [0] * 1500


class TestOutcomes:
    def test_unknown_decision_is_not_found(self) -> None:
        """An outcome for an unknown decision is NOT_FOUND."""
        w = world(snapshot(actions(1)))
        with pytest.raises(NotFound):
            w.usecases.report_outcome(Outcome("nope", "a0", 1.0, "e1"))

    def test_exactly_once_and_logged(self) -> None:
        """A repeated event id is acknowledged as a duplicate and learnt once."""
        w = world(snapshot(actions(2)))
        decision = _decide(w)
        key = decision.actions[0].action_key
        outcome = Outcome(decision.decision_id, key, 1.0, "evt-1")
        assert w.usecases.report_outcome(outcome).duplicate is False
        assert w.usecases.report_outcome(outcome).duplicate is True
        assert w.models.beta == {key: (1.0, 0.0)}
        outcomes = [e for e in w.events.events if e.name == OUTCOME]
        assert len(outcomes) == 1
        assert outcomes[0].decision_id == decision.decision_id
        assert outcomes[0].value == 1.0
        assert outcomes[0].properties == {"action_key": key}

    def test_action_must_belong_to_the_decision(self) -> None:
        """An outcome naming another action is INVALID_ARGUMENT on action_key."""
        w = world(snapshot(actions(2)), GREEDY)
        decision = _decide(w)
        with pytest.raises(InvalidArgument) as info:
            w.usecases.report_outcome(Outcome(decision.decision_id, "a0", 1.0, "e"))
        assert info.value.field == "action_key"

    @pytest.mark.parametrize(
        ("outcome", "field"),
        [
            (Outcome("", "a", 1.0, "e"), "decision_id"),
            (Outcome("d", "", 1.0, "e"), "action_key"),
            (Outcome("d", "a", 1.0, ""), "event_id"),
            (Outcome("d", "a", float("nan"), "e"), "reward"),
        ],
    )
    def test_bad_outcome_names_the_field(self, outcome, field) -> None:
        """Missing ids or a non-finite reward are INVALID_ARGUMENT naming the field."""
        w = world(snapshot(actions(1)))
        with pytest.raises(InvalidArgument) as info:
            w.usecases.report_outcome(outcome)
        assert info.value.field == field

    def test_learning_changes_the_ranking_after_refresh(self) -> None:
        """Rewards move the Beta posterior; decisions use it once the holder refreshes."""
        w = world(snapshot(actions(2)), GREEDY)  # a1 (value 2) wins on the prior
        chosen = []
        for i in range(4):
            decision = _decide(w, unit=f"u{i}")
            chosen.append(decision.actions[0].action_key)
            w.usecases.report_outcome(Outcome(decision.decision_id, chosen[-1], 0.0, f"e{i}"))
            w.holder.refresh()
        # After three failures a1 scores 2 x 1/5 = 0.4 < a0's prior 1 x 0.5.
        assert chosen == ["a1", "a1", "a1", "a0"]


class TestLinear:
    def test_linear_records_features_and_bad_attributes_name_the_unit(self) -> None:
        """The linear model stores each decision's features; a bad attribute names its unit."""
        settings = DecisioningSettings(
            model=ModelKind.LINEAR, features=FeatureSpec(("bias", "hour", "tier=vip"))
        )
        w = world(snapshot(actions(2)), settings)
        decision = _decide(w, attributes={"tier": "vip"}, context={"hour": 7.0})
        record = w.decisions.get(decision.decision_id)
        assert record.features == (1.0, 7.0, 1.0)
        assert record.feature_spec == settings.feature_spec_id()
        with pytest.raises(InvalidArgument) as info:
            _decide(w, attributes={"hour": "late"})
        assert info.value.field == "unit.attributes.hour"
        units = (Subject("a"), Subject("b", {"hour": "late"}))
        with pytest.raises(InvalidArgument) as info:
            list(w.usecases.decide_batch(BatchQuery(units, "email")))
        assert info.value.field == "units[1].attributes.hour"

    def test_explanation_lists_feature_contributions(self) -> None:
        """A linear explanation names the features that moved the predicted rate."""
        settings = DecisioningSettings(
            model=ModelKind.LINEAR, features=FeatureSpec(("bias", "hour"))
        )
        w = world(snapshot(actions(1)), settings)
        decision = _decide(w, context={"hour": 2.0})
        w.usecases.report_outcome(Outcome(decision.decision_id, "a0", 1.0, "e"))
        w.holder.refresh()
        explained = _decide(w, context={"hour": 2.0}, explain=True).actions[0].explanation
        names = [f["name"] for f in explained["features"]]
        assert sorted(names) == ["bias", "hour"]
        theta = np.linalg.solve(np.eye(2) + np.outer([1, 2], [1, 2]), [1.0, 2.0])
        assert explained["rate"] == pytest.approx(float(np.dot([1, 2], theta)))


class TestIds:
    def test_ids_are_fresh_per_decision(self) -> None:
        """Every decision of a batch gets its own id."""
        w = world(snapshot(actions(1)))
        units = tuple(Subject(f"u{i}") for i in range(5))
        ids = [d.decision_id for d in w.usecases.decide_batch(BatchQuery(units, "email"))]
        assert len(set(ids)) == 5
        assert isinstance(w.ids, Ids)
