"""Protobuf <-> plain dict conversion used by the catalog converters and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ensayo.catalog.model import Action, Experiment, Metric
from ensayo.serverkit.protoconv import from_message, to_message
from ensayo.v1 import definitions_pb2 as pb
from services.catalog import convert


class TestProtoconv:
    def test_enums_become_short_names(self) -> None:
        """EXPERIMENT_STATE_RUNNING reads as 'running'; UNSPECIFIED is left out."""
        msg = pb.Experiment(key="e", state=pb.EXPERIMENT_STATE_RUNNING)
        assert from_message(msg)["state"] == "running"
        assert "allocation" not in from_message(pb.Experiment(key="e"))

    def test_round_trip_every_field_kind(self) -> None:
        """Structs, maps, repeated messages, optionals and timestamps survive both ways."""
        msg = pb.Action(key="a", channel="email", placements=["top"], value=0.0, priority=3)
        msg.eligibility.update({"orders": {"$lt": 1}})
        msg.exclusions.add().update({"vip": True})
        msg.start_time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
        again = to_message(from_message(msg), pb.Action())
        assert again == msg
        assert again.HasField("value")  # explicit zero kept its presence

    def test_strict_names_unknown_fields(self) -> None:
        """Strict mode rejects unknown keys with their path."""
        with pytest.raises(ValueError, match=r"variants\[0\].colour: unknown field"):
            to_message({"key": "e", "variants": [{"colour": "red"}]}, pb.Experiment(), strict=True)

    def test_strict_names_bad_enum(self) -> None:
        """Strict mode rejects an unknown enum value with its path."""
        with pytest.raises(ValueError, match="state: invalid value"):
            to_message({"key": "e", "state": "sleeping"}, pb.Experiment(), strict=True)


class TestCatalogConvert:
    def test_unset_optionals_take_contract_defaults(self) -> None:
        """Unset coverage, weight and value mean 1 (CONTRACT.md defaults)."""
        exp = convert.definition_from_pb(
            convert.Kind.EXPERIMENT, pb.Experiment(key="e", variants=[pb.Variant(key="a")])
        )
        assert isinstance(exp, Experiment)
        assert exp.coverage == 1.0
        assert exp.variants[0].weight == 1.0
        action = convert.definition_from_pb(convert.Kind.ACTION, pb.Action(key="a"))
        assert isinstance(action, Action)
        assert (action.value, action.weight) == (1.0, 1.0)

    def test_explicit_zero_is_kept(self) -> None:
        """coverage = 0 set explicitly is 0, not the default."""
        exp = convert.definition_from_pb(
            convert.Kind.EXPERIMENT, pb.Experiment(key="e", coverage=0)
        )
        assert isinstance(exp, Experiment)
        assert exp.coverage == 0.0

    def test_output_only_fields_are_ignored(self) -> None:
        """A client cannot set version."""
        metric = convert.definition_from_pb(convert.Kind.METRIC, pb.Metric(key="m", version=99))
        assert isinstance(metric, Metric)
        assert metric.version == 0

    def test_to_pb_round_trip(self) -> None:
        """Domain -> proto -> domain is the identity."""
        exp = Experiment("e", metrics=("m",), forced={"u": "a"})
        again = convert.definition_from_pb(convert.Kind.EXPERIMENT, convert.definition_to_pb(exp))
        assert again == exp
