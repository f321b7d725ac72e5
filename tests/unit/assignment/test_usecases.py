"""Assignment use cases over fakes: sticky, exposures, degradation, validation, limits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from structlog.testing import capture_logs

from ensayo.assignment.model import (
    MAX_BATCH_UNITS,
    AssignQuery,
    BanditAllocation,
    BatchQuery,
    MembershipKind,
    Reason,
    Unit,
)
from ensayo.assignment.usecases import AssignmentUseCases
from ensayo.catalog.model import (
    Allocation,
    BanditAlgorithm,
    BanditConfig,
    Experiment,
    ExperimentState,
    Holdout,
    Snapshot,
    Variant,
)
from ensayo.errors import (
    DependencyUnavailable,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from ensayo.events.model import EXPOSURE, exposure_id
from tests.unit.assignment.fakes import (
    FixedAllocations,
    FixedSnapshots,
    MemoryBanditStore,
    MemoryEventLog,
    MemoryStickyStore,
    StepClock,
)

RUNNING = ExperimentState.RUNNING


def _exp(key: str, **kw) -> Experiment:
    kw.setdefault("variants", (Variant("control"), Variant("treatment")))
    return Experiment(key, state=RUNNING, version=2, **kw)


def _snapshot(version: int = 1, weights=(1.0, 1.0), coverage: float = 1.0) -> Snapshot:
    sticky = _exp(
        "sticky",
        variants=(Variant("control", weights[0]), Variant("treatment", weights[1])),
        coverage=coverage,
        sticky=True,
    )
    return Snapshot(
        version,
        experiments=(
            _exp("plain", forced={"vip": "treatment"}),
            sticky,
            _exp("held", holdouts=("h",)),
            Experiment("draft", (Variant("control"), Variant("treatment"))),
        ),
        holdouts=(Holdout("h", fraction=1.0),),
    )


class Rig:
    """Use cases wired to fakes the test can inspect and break."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.snapshots = FixedSnapshots(snapshot or _snapshot())
        self.allocations = FixedAllocations()
        self.sticky = MemoryStickyStore()
        self.log = MemoryEventLog()
        self.bandits = MemoryBanditStore()
        self.clock = StepClock()
        self.degraded: list[int] = []
        self.usecases = AssignmentUseCases(
            self.snapshots,
            self.allocations,
            self.sticky,
            self.log,
            self.clock,
            bandits=self.bandits,
        )
        self.usecases.signals = self

    def sticky_degraded(self, experiments: int) -> None:
        self.degraded.append(experiments)

    def assign(self, unit_id: str, *keys: str, log: bool = False, **attributes):
        return self.usecases.assign(AssignQuery(Unit(unit_id, attributes), keys, log))

    def batch(self, key: str, ids, attributes=(), log: bool = False):
        return self.usecases.assign_batch(BatchQuery(key, ids, attributes, log))


@pytest.fixture
def rig() -> Rig:
    return Rig()


class TestAssign:
    """One unit, many experiments."""

    def test_empty_keys_mean_every_running_experiment(self, rig) -> None:
        """Without keys, each running experiment once, in catalog order (drafts left out)."""
        assert [a.experiment_key for a in rig.assign("u1")] == ["plain", "sticky", "held"]

    def test_request_order_and_unknown_keys(self, rig) -> None:
        """Answers follow the request; unknown keys answer UNKNOWN_EXPERIMENT."""
        got = rig.assign("u1", "held", "nope", "draft")
        assert [(a.experiment_key, a.reason) for a in got] == [
            ("held", Reason.HOLDOUT),
            ("nope", Reason.UNKNOWN_EXPERIMENT),
            ("draft", Reason.NOT_RUNNING),
        ]

    def test_no_store_call_without_sticky_experiments(self, rig) -> None:
        """Non-sticky experiments never touch the sticky store."""
        rig.assign("u1", "plain", "held")
        rig.batch("plain", ["a", "b"])
        assert rig.sticky.calls == 0

    def test_sticky_is_one_round_trip_per_call(self, rig) -> None:
        """Every sticky experiment of a call shares one claim."""
        snap = Snapshot(1, experiments=(_exp("s1", sticky=True), _exp("s2", sticky=True)))
        rig = Rig(snap)
        rig.assign("u1")
        assert rig.sticky.calls == 1 and set(rig.sticky.data["u1"]) == {"s1", "s2"}

    @pytest.mark.parametrize("bad", ["", "x" * 513, "user\x0042"])
    def test_unit_id_is_validated(self, rig, bad) -> None:
        """An id outside 1..512 characters, or holding a NUL (its $exposure could not be
        stored in PostgreSQL), is INVALID_ARGUMENT naming unit.id."""
        with pytest.raises(InvalidArgument) as err:
            rig.assign(bad)
        assert err.value.field == "unit.id"

    def test_too_many_keys(self, rig) -> None:
        """More than 1000 experiment keys is RESOURCE_EXHAUSTED."""
        with pytest.raises(ResourceExhausted):
            rig.assign("u1", *(f"k{i}" for i in range(1001)))

    def test_no_snapshot_is_failed_precondition(self) -> None:
        """Before the first snapshot, calls fail with FailedPrecondition."""
        rig = Rig()
        rig.snapshots.loaded = None
        with pytest.raises(FailedPrecondition):
            rig.assign("u1")


class TestSticky:
    """First assignments are kept across weight and coverage changes."""

    def test_survives_weight_and_coverage_changes(self, rig) -> None:
        """After weights flip to 0:1 and coverage drops, stored units keep their variant."""
        ids = [f"u{i}" for i in range(300)]
        first = {i: rig.assign(i, "sticky")[0].variant_key for i in ids}
        assert set(first.values()) == {"control", "treatment"}
        rig.snapshots.loaded = _snapshot(2, weights=(0.0, 1.0), coverage=0.5)
        again = rig.assign(ids[0], "sticky")[0]
        assert again.reason is Reason.STICKY
        assert {i: rig.assign(i, "sticky")[0].variant_key for i in ids} == first
        batch = rig.batch("sticky", ids)
        assert [batch.variant_keys[v] for v in batch.variant_index] == [first[i] for i in ids]

    def test_new_units_follow_the_new_weights(self, rig) -> None:
        """Units never seen before are bucketed with the current weights."""
        rig.snapshots.loaded = _snapshot(2, weights=(0.0, 1.0))
        got = {rig.assign(f"new{i}", "sticky")[0].variant_key for i in range(100)}
        assert got == {"treatment"}

    def test_not_covered_units_are_not_stored(self, rig) -> None:
        """A unit outside the coverage is not stored, so it can join later."""
        rig.snapshots.loaded = _snapshot(2, coverage=0.0)
        assert rig.assign("u1", "sticky")[0].reason is Reason.NOT_COVERED
        assert "sticky" not in rig.sticky.data.get("u1", {})

    def test_removed_variant_is_replaced(self, rig) -> None:
        """A stored variant that no longer exists is replaced by the unit's bucket."""
        rig.sticky.data["u1"] = {"sticky": "gone"}
        a = rig.assign("u1", "sticky")[0]
        assert a.reason is Reason.ASSIGNED and rig.sticky.data["u1"]["sticky"] == a.variant_key

    def test_store_down_falls_back_to_the_bucket(self, rig) -> None:
        """Sticky store down: ASSIGNED from the bucket, not stored, signalled and logged."""
        expected = rig.assign("u1", "sticky")[0].variant_key
        rig.sticky.data.clear()
        rig.sticky.down = True
        with capture_logs() as logs:
            a = rig.assign("u1", "sticky", "plain")
            b = rig.batch("sticky", ["u1", "u2"])
        assert (a[0].reason, a[0].variant_key) == (Reason.ASSIGNED, expected)
        assert a[1].reason is Reason.ASSIGNED
        assert b.variant_keys[b.variant_index[0]] == expected
        assert rig.degraded == [1, 2]
        assert [e["event"] for e in logs] == ["sticky_degraded"]  # throttled to one a minute

    def test_memberships_read_but_never_write(self, rig) -> None:
        """GetMemberships shows stored variants and stores nothing."""
        rig.sticky.data["u1"] = {"sticky": "treatment"}
        rows = rig.usecases.memberships(Unit("u2"))
        assert "u2" not in rig.sticky.data
        rows = rig.usecases.memberships(Unit("u1"))
        sticky = next(r for r in rows if r.key == "sticky")
        assert (sticky.kind, sticky.reason, sticky.variant_key) == (
            MembershipKind.EXPERIMENT,
            Reason.STICKY,
            "treatment",
        )


class TestExposures:
    """log_exposure writes one $exposure per enrolled, non-forced assignment."""

    def test_unary_exposures(self, rig) -> None:
        """Enrolled assignments are logged with the contract's id, version and probability."""
        rig.assign("u1", "plain", "held", "nope", log=True)
        [event] = rig.log.events
        assert event.event_id == exposure_id("plain", 2, "u1") == "$exposure:plain:2:u1"
        assert (event.name, event.unit_id, event.experiment_version) == (EXPOSURE, "u1", 2)
        assert event.probability == 0.5 and event.variant_key in {"control", "treatment"}

    def test_forced_units_are_not_logged(self, rig) -> None:
        """A forced (QA) assignment shows its variant but is not an exposure."""
        [a] = rig.assign("vip", "plain", log=True)
        assert a.reason is Reason.FORCED and rig.log.events == []

    def test_batch_exposures_equal_unary_ones(self, rig) -> None:
        """A batch logs the same events as unary calls would (ids, variants, probabilities)."""
        ids = [f"u{i}" for i in range(50)] + ["vip"]
        rig.batch("plain", ids, log=True)
        batch_events = {e.event_id: (e.variant_key, e.probability) for e in rig.log.events}
        other = Rig()
        for i in ids:
            other.assign(i, "plain", log=True)
        assert batch_events == {
            e.event_id: (e.variant_key, e.probability) for e in other.log.events
        }
        assert len(batch_events) == 50

    def test_repeated_exposures_collapse(self, rig) -> None:
        """The same unit, experiment and version is one event."""
        rig.assign("u1", "plain", log=True)
        rig.assign("u1", "plain", log=True)
        assert len(rig.log.events) == 1

    def test_log_down_is_unavailable(self, rig) -> None:
        """If exposures were asked for and cannot be written, the call fails (retryable)."""
        rig.log.down = True
        with pytest.raises(DependencyUnavailable):
            rig.assign("u1", "plain", log=True)
        with pytest.raises(DependencyUnavailable):
            rig.batch("plain", ["u1"], log=True)
        assert rig.assign("u1", "plain")[0].in_experiment  # without logging, answers continue


class TestBatchValidation:
    """AssignBatch is all or nothing, with documented limits."""

    def test_unknown_experiment_is_not_found(self, rig) -> None:
        """An unknown key fails the batch with NotFound."""
        with pytest.raises(NotFound):
            rig.batch("nope", ["u1"])

    def test_too_many_ids(self, rig) -> None:
        """More than 100,000 ids is RESOURCE_EXHAUSTED."""
        with pytest.raises(ResourceExhausted) as err:
            rig.batch("plain", ["u"] * (MAX_BATCH_UNITS + 1))
        assert err.value.field == "unit_ids"

    @pytest.mark.parametrize(
        ("ids", "field"),
        [
            ([], "unit_ids"),
            (["a", "", "b"], "unit_ids[1]"),
            (["a", "b", "x" * 513], "unit_ids[2]"),
            (["a", "b", "c", "user\x0042"], "unit_ids[3]"),  # as Assign refuses (review)
        ],
    )
    def test_bad_ids_are_named(self, rig, ids, field) -> None:
        """No ids, an empty or too long one, or one with a NUL (its exposure could not be
        stored in PostgreSQL): INVALID_ARGUMENT naming the item."""
        with pytest.raises(InvalidArgument) as err:
            rig.batch("plain", ids)
        assert err.value.field == field

    def test_attributes_must_be_parallel(self, rig) -> None:
        """Attributes are empty or one per id."""
        with pytest.raises(InvalidArgument) as err:
            rig.batch("plain", ["a", "b"], [{"x": 1}])
        assert err.value.field == "attributes"

    def test_batch_equals_unary_for_every_unit(self, rig) -> None:
        """Each unit's batch index is its unary variant (forced, holdout, sticky included)."""
        ids = [f"u{i}" for i in range(200)] + ["vip"]
        for key in ("plain", "sticky", "held"):
            batch = rig.batch(key, ids)
            unary = [rig.assign(i, key)[0] for i in ids]
            assert batch.variant_index.tolist() == [
                batch.variant_keys.index(a.variant_key) if a.in_experiment else -1 for a in unary
            ]


class TestBandits:
    """Bandit experiments bucket with the allocation and count enrollments once."""

    def _rig(self) -> Rig:
        exp = _exp(
            "band",
            allocation=Allocation.BANDIT,
            bandit=BanditConfig(BanditAlgorithm.THOMPSON_BERNOULLI, "m", 0.1),
        )
        return Rig(Snapshot(1, experiments=(exp,)))

    def test_allocation_version_and_probability(self) -> None:
        """Answers carry the allocation's version and the arm's weight."""
        rig = self._rig()
        rig.allocations.set(
            {"band": BanditAllocation("band", 7, ("control", "treatment"), (0.1, 0.9))}
        )
        a = rig.assign("u1", "band", log=True)[0]
        assert a.allocation_version == 7
        assert a.probability == (0.1 if a.variant_key == "control" else 0.9)
        assert rig.log.events[0].allocation_version == 7

    def test_arms_are_kept_and_enrollments_counted_once(self) -> None:
        """A unit keeps its arm when the allocation moves; each unit is counted once."""
        rig = self._rig()
        ids = [f"u{i}" for i in range(200)]
        first = [rig.assign(i, "band")[0].variant_key for i in ids]
        rig.allocations.set(
            {"band": BanditAllocation("band", 1, ("control", "treatment"), (0.9, 0.1))}
        )
        batch = rig.batch("band", ids)
        assert [batch.variant_keys[v] for v in batch.variant_index] == first
        arms = rig.bandits.arm_stats("band", ["control", "treatment"])
        assert [a.n for a in arms] == [first.count("control"), first.count("treatment")]


class TestIndexCache:
    """The compiled index is rebuilt only when the snapshot or allocations change."""

    def test_same_index_until_a_change(self, rig) -> None:
        """Same objects in, same index out; a new snapshot gives a new index."""
        first = rig.usecases.index()
        assert rig.usecases.index() is first
        rig.snapshots.loaded = dataclasses.replace(rig.snapshots.loaded, version=9)
        assert rig.usecases.index() is not first
        assert rig.usecases.index().snapshot_version == 9

    def test_batch_result_shape(self, rig) -> None:
        """A batch answers int32 indices, the variant keys and the version."""
        result = rig.batch("plain", ["a", "b", "c"])
        assert result.variant_index.dtype == np.int32
        assert (result.variant_keys, result.experiment_version) == (("control", "treatment"), 2)
