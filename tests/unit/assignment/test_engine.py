"""The pure engine: order of evaluation, GrowthBook buckets, batch == unary, distributions."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats

from ensayo import hashing
from ensayo.assignment import engine
from ensayo.assignment.engine import (
    build_index,
    candidate,
    candidates_many,
    evaluate,
    memberships,
    resolve,
    screen,
    screen_many,
    screen_unit,
    unknown,
)
from ensayo.assignment.model import Assignment, BanditAllocation, MembershipKind, Reason, Unit
from ensayo.catalog.model import (
    Allocation,
    BanditAlgorithm,
    BanditConfig,
    Experiment,
    ExperimentState,
    Holdout,
    Layer,
    LayerRange,
    Snapshot,
    Variant,
)
from ensayo.hashing import hash_v2

RUNNING = ExperimentState.RUNNING
ES = {"country": "ES", "orders": 5}


def _exp(key: str = "exp", **kw) -> Experiment:
    kw.setdefault("variants", (Variant("control"), Variant("treatment", payload={"c": 1})))
    kw.setdefault("state", RUNNING)
    kw.setdefault("version", 3)
    return Experiment(key, **kw)


def _compiled(exp: Experiment, **snap):
    return build_index(Snapshot(1, experiments=(exp,), **snap)).experiments[exp.key]


def _ids(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_é😀"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(n)]


class TestOrderOfEvaluation:
    """Each exit of the one-pass evaluation has its own reason, in the documented order."""

    @pytest.mark.parametrize(
        "state", [ExperimentState.DRAFT, ExperimentState.PAUSED, ExperimentState.STOPPED]
    )
    def test_not_running_comes_first(self, state) -> None:
        """A non-running experiment answers NOT_RUNNING even for a forced unit."""
        exp = _compiled(_exp(state=state, forced={"u1": "treatment"}))
        a = evaluate(exp, Unit("u1"))
        assert (a.reason, a.in_experiment, a.variant_key) == (Reason.NOT_RUNNING, False, "control")

    def test_forced_beats_holdouts_layers_and_targeting(self) -> None:
        """A forced unit gets its variant with probability 1 whatever else applies."""
        exp = _compiled(
            _exp(
                forced={"u1": "treatment"},
                holdouts=("all",),
                targeting={"country": "FR"},
                layer="l",
                layer_range=LayerRange(0.0, 0.0001),
            ),
            holdouts=(Holdout("all", fraction=1.0),),
        )
        a = evaluate(exp, Unit("u1", ES))
        assert (a.reason, a.variant_key, a.variant_index, a.probability) == (
            Reason.FORCED,
            "treatment",
            1,
            1.0,
        )

    def test_holdout_members_get_the_control_and_no_probability(self) -> None:
        """A unit of a respected holdout is out: control's key, probability 0, index -1."""
        exp = _compiled(_exp(holdouts=("all",)), holdouts=(Holdout("all", fraction=1.0),))
        a = evaluate(exp, Unit("u1"))
        assert (a.reason, a.in_experiment, a.variant_key) == (Reason.HOLDOUT, False, "control")
        assert (a.probability, a.variant_index, a.experiment_version) == (0.0, -1, 3)

    def test_holdout_not_respected_does_not_apply(self) -> None:
        """A holdout the experiment does not list holds nobody out of it."""
        exp = _compiled(_exp(), holdouts=(Holdout("all", fraction=1.0),))
        assert evaluate(exp, Unit("u1")).reason is Reason.ASSIGNED

    def test_holdout_targeting_limits_who_is_held_out(self) -> None:
        """Only units matching the holdout's targeting can be held out."""
        exp = _compiled(
            _exp(holdouts=("es",)),
            holdouts=(Holdout("es", fraction=1.0, targeting={"country": "ES"}),),
        )
        assert evaluate(exp, Unit("u1", ES)).reason is Reason.HOLDOUT
        assert evaluate(exp, Unit("u1", {"country": "FR"})).reason is Reason.ASSIGNED

    def test_layer_range_excludes_units_outside_it(self) -> None:
        """Units whose layer hash is outside [start, end) are LAYER_EXCLUDED."""
        exp = _compiled(
            _exp(layer="pricing", layer_range=LayerRange(0.0, 0.5)), layers=(Layer("pricing"),)
        )
        for unit_id in _ids(200):
            inside = hash_v2("layer:pricing", unit_id) < 0.5
            reason = evaluate(exp, Unit(unit_id)).reason
            assert (reason is not Reason.LAYER_EXCLUDED) == inside

    def test_holdout_is_checked_before_the_layer(self) -> None:
        """A unit both held out and outside the layer range reports HOLDOUT."""
        exp = _compiled(
            _exp(holdouts=("all",), layer="l", layer_range=LayerRange(0.0, 0.0001)),
            holdouts=(Holdout("all", fraction=1.0),),
        )
        assert evaluate(exp, Unit("u1")).reason is Reason.HOLDOUT

    def test_targeting_excludes_non_matching_units(self) -> None:
        """A condition not matched gives NOT_TARGETED; matched goes on to bucketing."""
        exp = _compiled(_exp(targeting={"country": {"$in": ["ES", "MX"]}, "orders": {"$gte": 3}}))
        assert evaluate(exp, Unit("u1", {"country": "FR", "orders": 9})).reason is (
            Reason.NOT_TARGETED
        )
        assert evaluate(exp, Unit("u1", ES)).reason is Reason.ASSIGNED

    def test_stored_variant_wins_over_the_bucket(self) -> None:
        """After screening, a stored variant (sticky) beats coverage and the bucket."""
        exp = _compiled(_exp(coverage=0.0))
        a = evaluate(exp, Unit("u1"), stored="treatment")
        assert (a.reason, a.variant_key, a.probability) == (Reason.STICKY, "treatment", 0.5)

    def test_stored_variant_that_no_longer_exists_is_ignored(self) -> None:
        """A stored key of a removed variant falls back to the bucket."""
        exp = _compiled(_exp())
        assert resolve(exp, 0, stored="gone").reason is Reason.ASSIGNED

    def test_targeting_is_checked_before_the_sticky_lookup(self) -> None:
        """A sticky unit that leaves the targeted population is NOT_TARGETED."""
        exp = _compiled(_exp(targeting={"country": "ES"}, sticky=True))
        assert screen(exp, "u1", {"country": "FR"}).reason is Reason.NOT_TARGETED

    def test_zero_coverage_is_not_covered(self) -> None:
        """With coverage 0 nobody new is enrolled: NOT_COVERED."""
        exp = _compiled(_exp(coverage=0.0))
        a = evaluate(exp, Unit("u1"))
        assert (a.reason, a.variant_key, a.probability) == (Reason.NOT_COVERED, "control", 0.0)

    def test_assigned_carries_payload_probability_and_version(self) -> None:
        """An assigned unit gets the variant's payload and weight as probability."""
        exp = _compiled(_exp(variants=(Variant("a", 1), Variant("b", 3, payload={"x": 2}))))
        for unit_id in _ids(50):
            a = evaluate(exp, Unit(unit_id))
            assert a.in_experiment and a.reason is Reason.ASSIGNED
            assert a.probability == (0.25 if a.variant_key == "a" else 0.75)
            assert a.payload == ({} if a.variant_key == "a" else {"x": 2})

    def test_unknown_experiment(self) -> None:
        """An unknown key is a reason, not an error: empty variant, not enrolled."""
        a = unknown("nope")
        assert (a.variant_key, a.in_experiment, a.reason) == ("", False, Reason.UNKNOWN_EXPERIMENT)


CONFIGS = [
    ([1.0, 1.0], 1.0, ""),
    ([1.0, 1.0, 2.0], 1.0, "salted"),
    ([0.2, 0.3, 0.5], 0.37, ""),
    ([1.0, 1.0, 1.0], 0.5, "x"),
    ([1.0, 0.0, 1.0], 0.8, ""),
]


class TestGrowthbookCompatibility:
    """Experiments' buckets equal those of the growthbook package (hash version 2)."""

    @pytest.mark.parametrize(("weights", "coverage", "salt"), CONFIGS)
    def test_variant_equals_growthbook_run(self, weights, coverage, salt) -> None:
        """For 300 mixed ids, Ensayo's variant equals GrowthBook's run() with the same seed."""
        growthbook = pytest.importorskip("growthbook")
        variants = tuple(Variant(f"v{i}", w) for i, w in enumerate(weights))
        exp = _compiled(_exp("checkout", variants=variants, coverage=coverage, salt=salt))
        normalised = [w / sum(weights) for w in weights]
        for unit_id in _ids(300):
            gb = growthbook.GrowthBook(attributes={"id": unit_id})
            result = gb.run(
                growthbook.Experiment(
                    key="checkout",
                    variations=list(range(len(weights))),
                    weights=normalised,
                    coverage=coverage,
                    hashVersion=2,
                    seed=salt or "checkout",
                )
            )
            ours = evaluate(exp, Unit(unit_id))
            assert ours.in_experiment == result.inExperiment, unit_id
            if ours.in_experiment:
                assert ours.variant_index == result.variationId, unit_id

    def test_batch_equals_growthbook_core(self) -> None:
        """candidates_many equals GrowthBook's chooseVariation(gbhash(...)) for 5,000 ids."""
        gb = pytest.importorskip("growthbook.core")
        exp = _compiled(_exp("e", variants=(Variant("a", 2), Variant("b", 1)), coverage=0.9))
        ids = _ids(5000)
        ranges = gb.getBucketRanges(2, 0.9, [2 / 3, 1 / 3])
        expected = [gb.chooseVariation(gb.gbhash("e", i, 2), ranges) for i in ids]
        np.testing.assert_array_equal(candidates_many(exp, ids), expected)


def _rich_snapshot() -> Snapshot:
    return Snapshot(
        1,
        experiments=(
            _exp(
                "rich",
                variants=(Variant("a", 1), Variant("b", 2), Variant("c", 1)),
                coverage=0.8,
                holdouts=("global", "es"),
                layer="l",
                layer_range=LayerRange(0.1, 0.9),
                targeting={"orders": {"$gte": 2}},
                forced={"f1": "c", "f2": "a"},
            ),
        ),
        holdouts=(
            Holdout("global", fraction=0.1),
            Holdout("es", fraction=0.5, targeting={"country": "ES"}),
        ),
        layers=(Layer("l"),),
    )


def _batch(exp, ids, attributes=()):
    screened = screen_many(exp, ids, attributes)
    out = screened.index.copy()
    buckets = candidates_many(exp, ids)
    out[screened.eligible] = buckets[screened.eligible]
    return out


class TestBatchEqualsUnary:
    """The vectorised path gives every unit exactly the unary answer."""

    def test_with_attributes(self) -> None:
        """Holdouts (with targeting), layer, targeting, forced, coverage: same as evaluate."""
        exp = build_index(_rich_snapshot()).experiments["rich"]
        rng = random.Random(3)
        ids = [*_ids(4000), "f1", "f2"]
        attrs = [{"country": rng.choice(["ES", "FR"]), "orders": rng.randint(0, 4)} for _ in ids]
        units = [Unit(i, a) for i, a in zip(ids, attrs, strict=True)]
        expected = [evaluate(exp, u).variant_index for u in units]
        np.testing.assert_array_equal(_batch(exp, ids, attrs), expected)

    def test_without_attributes_targeting_sees_empty_attributes(self) -> None:
        """With no attributes, every unit is evaluated as having none (here: not targeted)."""
        exp = build_index(_rich_snapshot()).experiments["rich"]
        ids = [*(i for i in _ids(500) if i not in {"f1", "f2"}), "f1"]
        expected = [evaluate(exp, Unit(i)).variant_index for i in ids]
        got = _batch(exp, ids)
        np.testing.assert_array_equal(got, expected)
        assert set(got[:-1].tolist()) == {-1} and got[-1] == 2

    def test_not_running_batch_is_all_out(self) -> None:
        """A paused experiment gives -1 for everyone, forced units included."""
        exp = _compiled(_exp(state=ExperimentState.PAUSED, forced={"u": "treatment"}))
        assert _batch(exp, ["u", "v"]).tolist() == [-1, -1]


class TestDistributions:
    """Traffic splits follow the weights (Pearson's chi-square goodness of fit)."""

    def test_split_matches_weights(self) -> None:
        """100,000 ids over weights 1:1:2 at coverage 0.6: chi-square p > 0.001 (pinned ids)."""
        exp = _compiled(
            _exp(variants=(Variant("a", 1), Variant("b", 1), Variant("c", 2)), coverage=0.6)
        )
        ids = [f"user-{i}" for i in range(100_000)]
        got = _batch(exp, ids)
        counts = np.bincount(got + 1, minlength=4)
        expected = 100_000 * np.array([0.4, 0.15, 0.15, 0.3])
        assert stats.chisquare(counts, expected).pvalue > 0.001

    def test_holdout_fraction(self) -> None:
        """A 10% holdout holds out 10% of 100,000 ids (two-sided binomial test p > 0.001)."""
        exp = _compiled(_exp(holdouts=("h",)), holdouts=(Holdout("h", fraction=0.1),))
        ids = [f"user-{i}" for i in range(100_000)]
        held = int((~screen_many(exp, ids).eligible).sum())
        assert stats.binomtest(held, 100_000, 0.1).pvalue > 0.001


class TestExclusivity:
    """Layers and holdouts exclude units over large samples."""

    def test_layer_experiments_never_share_a_unit(self) -> None:
        """Two experiments owning [0, .5) and [.5, 1) of a layer: no unit in both (200,000)."""
        snap = Snapshot(
            1,
            experiments=(
                _exp("left", layer="l", layer_range=LayerRange(0.0, 0.5)),
                _exp("right", layer="l", layer_range=LayerRange(0.5, 1.0)),
            ),
            layers=(Layer("l"),),
        )
        index = build_index(snap)
        ids = [f"u{i}" for i in range(200_000)]
        left = _batch(index.experiments["left"], ids) >= 0
        right = _batch(index.experiments["right"], ids) >= 0
        assert not np.any(left & right)
        assert np.all(left | right)  # together they cover the whole layer
        assert stats.binomtest(int(left.sum()), len(ids), 0.5).pvalue > 0.001

    def test_holdout_members_are_in_no_respecting_experiment(self) -> None:
        """Members of a 20% global holdout are in none of three experiments respecting it."""
        snap = Snapshot(
            1,
            experiments=tuple(_exp(f"e{i}", holdouts=("g",)) for i in range(3)),
            holdouts=(Holdout("g", fraction=0.2),),
        )
        index = build_index(snap)
        ids = [f"u{i}" for i in range(100_000)]
        held = np.array([hash_v2("holdout:g", i) < 0.2 for i in ids])
        for exp in index.running:
            enrolled = _batch(exp, ids) >= 0
            assert not np.any(enrolled & held)
            assert np.all(enrolled[~held])


class TestMemberships:
    """GetMemberships lists every holdout, layer and running experiment with the reason."""

    def test_rows(self) -> None:
        """Holdout position and membership, layer owner, experiment reason and variant."""
        snap = Snapshot(
            1,
            experiments=(
                _exp("in-layer", layer="l", layer_range=LayerRange(0.0, 1.0)),
                _exp("paused", state=ExperimentState.PAUSED),
                _exp("held", holdouts=("h",)),
            ),
            holdouts=(Holdout("h", fraction=1.0),),
            layers=(Layer("l"), Layer("empty")),
        )
        rows = memberships(build_index(snap), Unit("u1"), {})
        by = {(r.kind, r.key): r for r in rows}
        assert set(by) == {
            (MembershipKind.HOLDOUT, "h"),
            (MembershipKind.LAYER, "l"),
            (MembershipKind.LAYER, "empty"),
            (MembershipKind.EXPERIMENT, "in-layer"),
            (MembershipKind.EXPERIMENT, "held"),
        }
        assert by[(MembershipKind.HOLDOUT, "h")].member
        assert by[(MembershipKind.HOLDOUT, "h")].position == hash_v2("holdout:h", "u1")
        assert by[(MembershipKind.LAYER, "l")].owner == "in-layer"
        assert not by[(MembershipKind.LAYER, "empty")].member
        held = by[(MembershipKind.EXPERIMENT, "held")]
        assert (held.member, held.reason, held.variant_key) == (False, Reason.HOLDOUT, "control")

    def test_stored_variants_show_as_sticky(self) -> None:
        """A stored variant appears with reason STICKY."""
        snap = Snapshot(1, experiments=(_exp("s", sticky=True),))
        rows = memberships(build_index(snap), Unit("u1"), {"s": "treatment"})
        assert (rows[0].reason, rows[0].variant_key) == (Reason.STICKY, "treatment")


class TestIndex:
    """The index is built once per snapshot; bandits bucket with their allocation."""

    def test_conditions_are_reused_when_versions_do_not_change(self) -> None:
        """Rebuilding with an unchanged experiment keeps its compiled condition."""
        snap = Snapshot(1, experiments=(_exp(targeting={"a": 1}),))
        first = build_index(snap)
        second = build_index(snap, {}, first)
        assert second.experiments["exp"].targeting is first.experiments["exp"].targeting

    def test_a_changed_condition_is_recompiled_even_at_the_same_version(self) -> None:
        """Reuse is by the condition itself, so a changed condition never keeps the old one."""
        first = build_index(Snapshot(1, experiments=(_exp(targeting={"a": 1}),)))
        second = build_index(Snapshot(2, experiments=(_exp(targeting={"a": 2}),)), {}, first)
        assert not evaluate(second.experiments["exp"], Unit("u", {"a": 1})).in_experiment
        assert evaluate(second.experiments["exp"], Unit("u", {"a": 2})).in_experiment

    def test_bandit_uses_the_published_allocation(self) -> None:
        """A matching allocation sets the weights, ranges and allocation version."""
        exp = _exp(
            allocation=Allocation.BANDIT,
            bandit=BanditConfig(BanditAlgorithm.THOMPSON_BERNOULLI, "m", 0.1),
        )
        alloc = BanditAllocation("exp", 4, ("control", "treatment"), (0.2, 0.8))
        compiled = build_index(Snapshot(1, experiments=(exp,)), {"exp": alloc}).experiments["exp"]
        assert (compiled.weights, compiled.allocation_version) == ((0.2, 0.8), 4)
        assert compiled.stores and compiled.bandit
        assert compiled.ranges == ((0.0, 0.2), (0.2, 1.0))

    def test_unservable_experiment_is_not_running(self) -> None:
        """A definition that cannot be bucketed (coverage 2) is served as NOT_RUNNING."""
        compiled = _compiled(_exp(coverage=2.0))
        assert evaluate(compiled, Unit("u")).reason is Reason.NOT_RUNNING

    def test_candidate_matches_candidates_many(self) -> None:
        """The unary bucket equals the vectorised one."""
        exp = _compiled(_exp())
        ids = _ids(300)
        assert [candidate(exp, i) for i in ids] == candidates_many(exp, ids).tolist()


SHARED = {"country": {"$in": ["ES", "MX"]}, "orders": {"$gte": 3}}


class TestScreenUnit:
    """Assign's path over many experiments equals evaluating them one by one."""

    def _index(self):
        experiments = (
            *(_exp(f"shared-{i}", targeting=SHARED) for i in range(4)),
            _exp("plain"),
            _exp("other-targeting", targeting={"plan": "pro"}),
            _exp("half", coverage=0.5, targeting=SHARED),
            _exp("forced", forced={"u1": "treatment", "u2": "control"}, targeting={"x": 1}),
            _exp("held", holdouts=("h", "es")),
            _exp("layered", layer="l", layer_range=LayerRange(0.2, 0.7)),
            _exp("layered-too", layer="l", layer_range=LayerRange(0.7, 0.9)),
            _exp("sticky", sticky=True, targeting=SHARED),
            _exp("sticky-plain", sticky=True, holdouts=("h",)),
            _exp("paused", state=ExperimentState.PAUSED),
            _exp("three", variants=(Variant("a", 1), Variant("b", 1), Variant("c", 2))),
        )
        return build_index(
            Snapshot(
                1,
                experiments=experiments,
                holdouts=(
                    Holdout("h", fraction=0.3),
                    Holdout("es", fraction=0.5, targeting={"country": "ES"}),
                ),
                layers=(Layer("l"),),
            )
        )

    @pytest.mark.parametrize(
        "attributes", [ES, {"country": "FR", "orders": 9, "plan": "pro"}, {}], ids=str
    )
    @pytest.mark.parametrize("keys", [(), ("paused", "nope", "sticky", "plain", "held")], ids=str)
    def test_equals_one_by_one(self, attributes, keys) -> None:
        """Answers, placeholders and pending buckets match screen/candidate/resolve."""
        index = self._index()
        plan = index.plan(keys)
        wanted = [index.experiments.get(k) or k for k in keys] if keys else index.running
        for unit_id in ["u1", "u2", *_ids(150)]:
            results, pending = screen_unit(plan, unit_id, attributes)
            assert len(results) == len(wanted)
            expected_pending = []
            for position, exp in enumerate(wanted):
                if isinstance(exp, str):
                    assert results[position] == unknown(exp)
                    continue
                screened = screen(exp, unit_id, attributes)
                if screened is not None:
                    assert results[position] is screened
                elif exp.stores:
                    assert results[position] is None
                    expected_pending.append((position, exp, candidate(exp, unit_id)))
                else:
                    expected = evaluate(exp, Unit(unit_id, attributes))
                    assert results[position] is resolve(exp, candidate(exp, unit_id))
                    assert results[position] == expected
            assert pending == expected_pending

    def test_answers_are_shared_and_equal_to_fresh_ones(self) -> None:
        """Units with the same outcome get the same instance, equal to a hand-built one."""
        exp = _compiled(_exp(variants=(Variant("a"), Variant("b", payload={"x": 1}))))
        a = resolve(exp, 1)
        assert a is resolve(exp, 1)
        assert a == Assignment("exp", "b", True, Reason.ASSIGNED, 1, {"x": 1}, 3, probability=0.5)
        assert resolve(exp, -1) == Assignment(
            "exp", "a", False, Reason.NOT_COVERED, payload={}, experiment_version=3
        )

    @pytest.mark.parametrize(("weights", "coverage", "salt"), [*CONFIGS, ([1.0], 0.0, "")])
    def test_variant_of_every_bucket(self, weights, coverage, salt) -> None:
        """The run-length coded buckets give choose_variant(k / 10000, ranges) for every k."""
        variants = tuple(Variant(f"v{i}", w) for i, w in enumerate(weights))
        exp = _compiled(_exp(variants=variants, coverage=coverage, salt=salt))
        for k in range(hashing.BUCKETS):
            assert exp.variant_of(k) == hashing.choose_variant(k / 10_000, exp.ranges), k

    def test_plans_are_cached_per_key_list(self) -> None:
        """One plan per distinct list of keys; the empty list is every running experiment."""
        index = self._index()
        assert index.plan(("plain",)) is index.plan(("plain",))
        assert index.plan(()) is index.plan(())
        assert index.plan(()).fixed == (None,) * len(index.running)
        for i in range(engine.MAX_PLANS + 5):
            index.plan((f"k{i}",))
        assert len(index.plans) <= engine.MAX_PLANS
