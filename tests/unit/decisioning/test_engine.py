"""The pure funnel: validation, screening, consent, scoring, tiered choice and propensities."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from ensayo.bandits import ExplorationPolicy, ExplorationSpec, rng_for
from ensayo.catalog.model import Action, ContactPolicy, Holdout
from ensayo.decisioning import engine
from ensayo.decisioning.compiled import compile_snapshot
from ensayo.decisioning.learning import LinearParams, ModelParams, model_view
from ensayo.decisioning.model import (
    BatchQuery,
    DecideQuery,
    DecisioningSettings,
    ModelKind,
    Stage,
    Subject,
)
from ensayo.errors import InvalidArgument, ResourceExhausted
from ensayo.hashing import hash_v2

from .fakes import T0, snapshot

DECISIONS = 100_000


def _query(**kw) -> DecideQuery:
    base = {"unit": Subject("u1"), "channel": "email"}
    base.update(kw)
    return DecideQuery(**base)


class TestValidation:
    @pytest.mark.parametrize(
        ("query", "field"),
        [
            (_query(unit=Subject("")), "unit.id"),
            (_query(unit=Subject("x" * 513)), "unit.id"),
            (_query(channel=""), "channel"),
            (_query(max_actions=0), "max_actions"),
            (_query(max_actions=101), "max_actions"),
            (_query(context={"x": float("nan")}), "context['x']"),
            (_query(context={"x": float("inf")}), "context['x']"),
            (_query(context={"lever.a0": -1.0}), "context['lever.a0']"),
        ],
    )
    def test_bad_decide_names_the_field(self, query, field) -> None:
        """Each bad Decide field is INVALID_ARGUMENT naming exactly that field."""
        with pytest.raises(InvalidArgument) as info:
            engine.validate_decide(query)
        assert info.value.field == field

    def test_batch_items_are_named_by_index(self) -> None:
        """One bad unit fails the whole batch, named units[i].id."""
        units = (Subject("a"), Subject("b"), Subject(""))
        with pytest.raises(InvalidArgument) as info:
            engine.validate_batch(BatchQuery(units, "email"))
        assert info.value.field == "units[2].id"

    def test_batch_needs_units_and_non_negative_budgets(self) -> None:
        """No unit, or a negative budget, is invalid and named."""
        with pytest.raises(InvalidArgument) as info:
            engine.validate_batch(BatchQuery((), "email"))
        assert info.value.field == "units"
        with pytest.raises(InvalidArgument) as info:
            engine.validate_batch(BatchQuery((Subject("a"),), "email", budgets={"a0": -1}))
        assert info.value.field == "budgets['a0']"

    def test_too_many_units_is_resource_exhausted(self) -> None:
        """More than 100,000 units is RESOURCE_EXHAUSTED on the units field."""
        units = (Subject("u"),) * 100_001
        with pytest.raises(ResourceExhausted) as info:
            engine.validate_batch(BatchQuery(units, "email"))
        assert info.value.field == "units"


class TestScreening:
    def _channel(self, acts, policies=()):
        return compile_snapshot(snapshot(acts, policies)).channel("email")

    def test_placement_and_live_window(self) -> None:
        """Empty placements fit all; start is inclusive, end exclusive."""
        acts = (
            Action("any", "email"),
            Action("top", "email", placements=("top",)),
            Action("later", "email", start_time=T0 + timedelta(seconds=1)),
            Action("ended", "email", end_time=T0),
            Action("now", "email", start_time=T0, end_time=T0 + timedelta(seconds=1)),
        )
        ch = self._channel(acts)
        mask, reasons = ch.available("side", T0, reasons=True)
        assert mask.tolist() == [True, False, False, False, True]
        assert reasons == [None, "wrong_placement", "not_live", "not_live", None]
        mask, _ = ch.available("", T0)
        assert mask.tolist() == [True, True, False, False, True]

    def test_eligibility_exclusions_and_consent(self) -> None:
        """Eligibility must match, no exclusion may match, consent false drops the channel."""
        acts = (
            Action("adults", "email", eligibility={"age": {"$gte": 18}}),
            Action("not_vip", "email", exclusions=({"tier": "vip"},)),
            Action("all", "email"),
        )
        ch = self._channel(acts)
        available, reasons = ch.available("", T0, reasons=True)
        stages = list(reasons)
        mask = engine.screen(ch, available, {"age": 17, "tier": "vip"}, stages)
        assert mask.tolist() == [False, False, True]
        assert stages == [Stage.INELIGIBLE, Stage.EXCLUDED, None]
        assert engine.screen(ch, available, {"age": 30}).tolist() == [True, True, True]
        stages = list(reasons)
        no = {"age": 30, "consent": {"email": False}}
        assert not engine.screen(ch, available, no, stages).any()
        assert stages == [Stage.NO_CONSENT] * 3

    @pytest.mark.parametrize(
        ("attributes", "expected"),
        [
            ({}, True),
            ({"consent": {"email": True}}, True),
            ({"consent": {"sms": False}}, True),
            ({"consent": {"email": "no"}}, True),
            ({"consent": {"email": False}}, False),
            ({"consent": "none"}, True),
        ],
    )
    def test_consent_convention(self, attributes, expected) -> None:
        """Only the boolean attributes.consent.<channel> == false excludes (opt-out)."""
        assert engine.consented(attributes, "email") is expected

    def test_policies_relevant_to_a_channel(self) -> None:
        """A channel sees policies of its channel or every channel; watched names its actions."""
        policies = (
            ContactPolicy("all", max_contacts=5, window_s=60),
            ContactPolicy("email", channel="email", max_contacts=2, window_s=60),
            ContactPolicy("sms", channel="sms", max_contacts=2, window_s=60),
            ContactPolicy("a1", action_key="a1", max_contacts=1, window_s=60),
            ContactPolicy("x", action_key="x", max_contacts=1, window_s=60),
        )
        ch = self._channel((Action("a0", "email"), Action("a1", "email")), policies)
        assert [p.key for p in ch.policies] == ["all", "email", "a1"]
        assert ch.watched == ("a1",)

    def test_holdout_membership_matches_the_hash(self) -> None:
        """A unit is held out iff targeting matches and hash_v2(seed, id) < fraction."""
        holdout = Holdout("h", fraction=0.3, covers_decisioning=True, targeting={"c": "ES"})
        ignored = Holdout("g", fraction=1.0, covers_decisioning=False)
        compiled = compile_snapshot(snapshot(holdouts=(holdout, ignored)))
        for i in range(200):
            uid = f"u{i}"
            inside = hash_v2("holdout:h", uid) < 0.3
            assert compiled.holdout_for(uid, {"c": "ES"}) == ("h" if inside else "")
            assert compiled.holdout_for(uid, {"c": "MX"}) == ""


class TestScoring:
    def test_score_is_rate_times_value_weight_lever(self) -> None:
        """Beta: score = posterior mean x value x weight x lever, one vector for all units."""
        acts = (Action("a", "email", value=2.0, weight=0.5), Action("b", "email", value=3.0))
        ch = compile_snapshot(snapshot(acts)).channel("email")
        params = ModelParams(beta={"a": (3.0, 1.0)})
        view = model_view(params, ch.keys, prior=(1.0, 1.0))
        lever = engine.levers({"lever.b": 2.0}, ch.keys)
        scored = engine.score_actions(ch, view, lever, DecisioningSettings(), None, 2)
        assert scored.rate[0].tolist() == pytest.approx([4 / 6, 0.5])
        assert scored.score[1].tolist() == pytest.approx([4 / 6 * 2 * 0.5, 0.5 * 3 * 2])


class TestLinearScoring:
    def test_one_context_equals_lin_ucb_scores(self) -> None:
        """Decide's fast LinUCB path equals ensayo.bandits.lin_ucb_scores, alone and batched."""
        from ensayo.bandits import FeatureSpec, lin_ucb_scores, linear_prior, update_batch

        rng = np.random.default_rng(3)
        acts = tuple(Action(f"a{i}", "email", value=1.0 + i) for i in range(6))
        ch = compile_snapshot(snapshot(acts)).channel("email")
        model = update_batch(
            linear_prior(6, 4, 2.0), rng.integers(0, 6, 50), rng.random((50, 4)), rng.random(50)
        )
        params = ModelParams(
            linear={
                k: LinearParams(float(model.counts[i]), model.b[i], model.a_inv[i])
                for i, k in enumerate(ch.keys)
            }
        )
        view = model_view(params, ch.keys, prior=(1, 1), linear_features=4, ridge=2.0)
        settings = DecisioningSettings(
            model=ModelKind.LINEAR, features=FeatureSpec(("bias", "a", "b", "c")), ucb_alpha=0.7
        )
        x = rng.random((3, 4))
        lever = np.ones(6)
        batch = engine.score_actions(ch, view, lever, settings, x, 3)
        expected = lin_ucb_scores(model, x, 0.7)
        np.testing.assert_allclose(batch.rank, expected, rtol=1e-12)
        for row in range(3):
            one = engine.score_actions(ch, view, lever, settings, x[row : row + 1], 1)
            np.testing.assert_allclose(one.rank[0], expected[row], rtol=1e-12)
            np.testing.assert_allclose(one.score[0], expected[row] * ch.values, rtol=1e-12)


def _choose_many(settings, priorities, scores, slots, n, ids=None):
    k = scores.size
    masks = np.ones((n, k), dtype=bool)
    ids = ids or [f"p{i}" for i in range(n)]
    return engine.choose(
        settings, priorities, np.broadcast_to(scores, (n, k)), masks, [slots] * n, ids
    )


class TestTieredChoice:
    def test_higher_tier_always_first(self) -> None:
        """A higher priority is returned first and with propensity 1, whatever its score."""
        settings = DecisioningSettings(
            exploration=ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.5)
        )
        priorities = np.array([0, 5, 0, 0])
        scores = np.array([9.0, 0.1, 3.0, 1.0])
        for choice in _choose_many(settings, priorities, scores, 2, 50):
            assert choice.indices[0] == 1
            assert choice.propensities[0] == 1.0
            assert choice.indices[1] in (0, 2, 3)

    @pytest.mark.parametrize(
        "spec",
        [
            ExplorationSpec(ExplorationPolicy.EPSILON_GREEDY, epsilon=0.3, uniform_mix=0.1),
            ExplorationSpec(ExplorationPolicy.SOFTMAX, temperature=0.5),
        ],
        ids=["epsilon_greedy", "softmax"],
    )
    def test_propensities_match_frequencies(self, spec) -> None:
        """100,000 seeded decisions: each action's share is within 3 SE of its propensity.

        Reference: the binomial standard error sqrt(p(1-p)/N) of a frequency.
        """
        settings = DecisioningSettings(exploration=spec)
        priorities = np.array([1, 0, 0, 0, 0])
        scores = np.array([0.2, 1.0, 0.8, 0.8, 0.1])
        choices = _choose_many(settings, priorities, scores, 2, DECISIONS)
        counts = np.zeros(scores.size)
        logged = {}
        for choice in choices:
            counts[choice.indices] += 1
            for i, p in zip(choice.indices.tolist(), choice.propensities.tolist(), strict=True):
                assert logged.setdefault(i, p) == pytest.approx(p)  # same candidates, same p
        expected = engine.tier_inclusion(spec, priorities, scores, 2)
        for i, p in logged.items():
            assert p == pytest.approx(expected[i])
            se = np.sqrt(p * (1 - p) / DECISIONS)
            assert abs(counts[i] / DECISIONS - p) <= 3 * se + 1e-12, (i, counts[i], p)
        assert counts[0] == DECISIONS  # the single top-tier action always goes first

    def test_thompson_propensity_is_an_estimate_with_its_error(self) -> None:
        """Thompson: the propensity is Monte Carlo, marked inexact, with a standard error."""
        settings = DecisioningSettings(exploration=ExplorationSpec(ExplorationPolicy.THOMPSON))
        acts = tuple(Action(f"a{i}", "email") for i in range(3))
        ch = compile_snapshot(snapshot(acts)).channel("email")
        view = model_view(
            ModelParams(beta={"a0": (30.0, 10.0), "a1": (10.0, 30.0)}), ch.keys, prior=(1, 1)
        )

        def sampler_for(_row, idx):
            return engine.thompson_sampler(view, np.ones(3), settings, None, idx)

        [choice] = engine.choose(
            settings,
            ch.priorities,
            np.ones((1, 3)),
            np.ones((1, 3), bool),
            [1],
            ["t"],
            sampler_for,
        )
        assert not choice.exact
        assert 0 < choice.standard_errors[0] < 0.02

    def test_same_id_same_choice(self) -> None:
        """rng_for(decision_id): a decision replays identically, alone or in a batch."""
        settings = DecisioningSettings()
        priorities = np.zeros(6, dtype=np.int64)
        scores = np.arange(6.0)
        batch = _choose_many(settings, priorities, scores, 2, 200)
        for i in (0, 17, 199):
            [alone] = _choose_many(settings, priorities, scores, 2, 1, ids=[f"p{i}"])
            assert alone.indices.tolist() == batch[i].indices.tolist()
            assert alone.propensities.tolist() == batch[i].propensities.tolist()
        assert rng_for("p0").random() == rng_for("p0").random()

    def test_no_slot_or_no_candidate_is_empty(self) -> None:
        """Zero slots or no candidates give an empty list."""
        settings = DecisioningSettings()
        [a, b] = engine.choose(
            settings,
            np.zeros(2, dtype=np.int64),
            np.ones((2, 2)),
            np.array([[True, True], [False, False]]),
            [0, 1],
            ["x", "y"],
        )
        assert a.indices.size == 0 and b.indices.size == 0


class TestBudgets:
    def test_spend_stops_at_the_first_choice_over_budget(self) -> None:
        """Budgets are spent in order; the first choice needing a spent action stops it."""
        one = engine.Choice(np.array([0]), np.ones(1), np.zeros(1), exact=True, explored=False)
        two = engine.Choice(np.array([1]), np.ones(1), np.zeros(1), exact=True, explored=False)
        fitted, left = engine.spend([one, two, one, one], np.array([2.0, np.inf]))
        assert fitted == 3
        assert left.tolist() == [0.0, np.inf]


class TestPolicyVersion:
    def test_snapshot_and_model_versions_in_one_number(self) -> None:
        """policy_version = snapshot x 1e9 + model version (mod 1e9), divmod recovers both."""
        assert divmod(engine.policy_version(12, 4567), 10**9) == (12, 4567)
