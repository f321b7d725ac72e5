"""The catalog codec: lossless JSON round trips and audit diffs."""

from __future__ import annotations

from datetime import UTC, datetime

from ensayo.catalog import codec
from ensayo.catalog.model import (
    Action,
    BanditAlgorithm,
    BanditConfig,
    Experiment,
    ExperimentState,
    LayerRange,
    Snapshot,
    Variant,
)


class TestCodec:
    def test_experiment_round_trip(self) -> None:
        """Every field of an experiment survives dumps/loads."""
        exp = Experiment(
            key="e",
            variants=(Variant("a", 2.0, {"x": [1, "y"]}), Variant("b")),
            layer="l",
            layer_range=LayerRange(0.1, 0.2),
            holdouts=("h",),
            targeting={"n": {"$gt": 2}},
            forced={"u": "a"},
            sticky=True,
            bandit=BanditConfig(BanditAlgorithm.UCB1, "m"),
            metrics=("m",),
            state=ExperimentState.RUNNING,
            version=3,
            update_time=datetime(2026, 5, 1, tzinfo=UTC),
        )
        assert codec.loads(Experiment, codec.dumps(exp)) == exp

    def test_snapshot_round_trip(self) -> None:
        """Snapshots with nested tuples of definitions round-trip."""
        snap = Snapshot(
            7,
            experiments=(Experiment("e", (Variant("a"), Variant("b"))),),
            actions=(Action("x", "email", exclusions=({"a": 1},)),),
        )
        assert codec.loads(Snapshot, codec.dumps(snap)) == snap

    def test_unknown_keys_are_ignored(self) -> None:
        """A newer writer's extra fields do not break an older reader."""
        assert codec.decode(Variant, {"key": "a", "future": 1}) == Variant("a")

    def test_dumps_is_stable(self) -> None:
        """Equal objects give byte-identical JSON."""
        a = Experiment("e", (Variant("a"), Variant("b")), forced={"z": "a", "b": "b"})
        b = Experiment("e", (Variant("a"), Variant("b")), forced={"b": "b", "z": "a"})
        assert codec.dumps(a) == codec.dumps(b)


class TestDiff:
    def test_create_lists_set_fields(self) -> None:
        """A create diffs against nothing."""
        changes = codec.diff(None, Variant("a", 2.0))
        assert changes["key"] == {"before": None, "after": "a"}
        assert changes["weight"] == {"before": None, "after": 2.0}

    def test_update_lists_only_changes_and_skips_output_fields(self) -> None:
        """Only changed fields appear; version and update_time never do."""
        old = Experiment("e", (Variant("a"), Variant("b")), coverage=1.0, version=1)
        new = Experiment("e", (Variant("a"), Variant("b")), coverage=0.5, version=2)
        assert codec.diff(old, new) == {"coverage": {"before": 1.0, "after": 0.5}}


class TestForeignModules:
    def test_dataclasses_elsewhere_using_json_objects_decode(self) -> None:
        """A dataclass in another module whose field is a JsonObject decodes (forward refs)."""
        from ensayo.events.model import Event

        event = Event(
            "e1",
            "u1",
            "purchase",
            datetime(2026, 1, 1, tzinfo=UTC),
            properties={"a": [1, {"b": None}]},
        )
        assert codec.loads(Event, codec.dumps(event)) == event
