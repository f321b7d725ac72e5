"""Track and report conversion: contract defaults, field paths in errors, unset figures."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from google.protobuf import struct_pb2

from ensayo.analysis.model import (
    ExperimentReport,
    MetricResult,
    VariantComparison,
    VariantSummary,
)
from ensayo.errors import InvalidArgument, ResourceExhausted
from ensayo.events.model import Event
from ensayo.stats import AnalysisMethod, Comparison, Correction, MetricKind, SrmResult
from ensayo.v1 import analysis_service_pb2 as pb
from ensayo.v1 import events_service_pb2 as events_pb
from services.analysis import convert

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


class TestEventsFromPb:
    def test_unset_value_is_one_and_unset_time_is_now(self) -> None:
        """CONTRACT.md defaults: Event.value 1, time when received."""
        (event,) = convert.events_from_pb(
            [events_pb.Event(event_id="e", unit_id="u", name="n")], NOW
        )
        assert event.value == 1.0
        assert event.time == NOW

    def test_every_field_lands_in_its_place(self) -> None:
        """Each message field becomes the Event field of the same name."""
        message = events_pb.Event(
            event_id="e",
            unit_id="u",
            name="n",
            value=2.5,
            experiment_key="x",
            experiment_version=3,
            variant_key="v",
            probability=0.25,
            decision_id="d",
            allocation_version=7,
        )
        message.properties.update({"k": "p"})
        (event,) = convert.events_from_pb([message], NOW)
        assert event == Event("e", "u", "n", NOW, 2.5, "x", 3, "v", 0.25, "d", {"k": "p"}, 7)

    def test_explicit_zero_value_and_time_are_kept(self) -> None:
        """An explicit value of 0 is not the default (the field is optional)."""
        message = events_pb.Event(event_id="e", unit_id="u", name="n", value=0.0)
        message.time.FromDatetime(datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=UTC))
        (event,) = convert.events_from_pb([message], NOW)
        assert event.value == 0.0
        assert event.time == datetime(2025, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)

    def test_properties_become_plain_json(self) -> None:
        """Struct properties arrive as dicts and lists (numbers as floats)."""
        message = events_pb.Event(event_id="e", unit_id="u", name="n")
        message.properties.update({"channel": "email", "chosen": [{"propensity": 0.25}]})
        (event,) = convert.events_from_pb([message], NOW)
        assert event.properties == {"channel": "email", "chosen": [{"propensity": 0.25}]}

    def test_non_finite_property_names_its_path(self) -> None:
        """A NaN inside properties is INVALID_ARGUMENT at events[i].properties.<path>."""
        good = events_pb.Event(event_id="a", unit_id="u", name="n")
        bad = events_pb.Event(event_id="b", unit_id="u", name="n")
        bad.properties.update({"x": {"y": 1.0}})
        bad.properties["x"]["y"] = math.nan
        with pytest.raises(InvalidArgument) as info:
            convert.events_from_pb([good, bad], NOW)
        assert info.value.field == "events[1].properties.x.y"

    def test_long_keys_are_rejected_by_field(self) -> None:
        """Experiment and variant keys longer than the catalog allows are refused."""
        message = events_pb.Event(event_id="e", unit_id="u", name="n", variant_key="v" * 129)
        with pytest.raises(InvalidArgument) as info:
            convert.events_from_pb([message], NOW)
        assert info.value.field == "events[0].variant_key"

    def test_every_wire_problem_is_named_in_event_order(self) -> None:
        """Time, keys and properties of every event, in that order per event."""
        first = events_pb.Event(event_id="a", unit_id="u", name="n", experiment_key="x" * 129)
        first.time.seconds = 2**62  # beyond year 9999
        second = events_pb.Event(
            event_id="b", unit_id="u", name="n", variant_key="v" * 129, decision_id="d" * 257
        )
        second.properties.update({"p": 1.0})
        second.properties["p"] = math.inf
        with pytest.raises(InvalidArgument) as info:
            convert.events_from_pb([first, second], NOW)
        assert [v.field for v in info.value.violations] == [
            "events[0].time",
            "events[0].experiment_key",
            "events[1].variant_key",
            "events[1].decision_id",
            "events[1].properties.p",
        ]

    def test_more_than_ten_thousand_events_is_resource_exhausted(self) -> None:
        """The batch limit is checked before any conversion work."""
        many = [events_pb.Event()] * 10_001
        with pytest.raises(ResourceExhausted):
            convert.events_from_pb(many, NOW)


class TestReportToPb:
    def test_figures_a_method_does_not_compute_stay_unset(self) -> None:
        """None becomes an unset optional field, never 0."""
        comparison = Comparison(
            "b", control_mean=0.0, treatment_mean=0.1, absolute_lift=0.1, p_value=0.2
        )
        report = ExperimentReport(
            experiment_key="exp",
            method=AnalysisMethod.FREQUENTIST,
            variants=(VariantSummary("control", 10, 0.5), VariantSummary("b", 10, 0.5)),
            srm=SrmResult(0.9, 0.01, True, 1),
            metrics=(
                MetricResult(
                    "conv",
                    MetricKind.CONVERSION,
                    False,
                    (VariantComparison(comparison, 10, 10),),
                ),
            ),
            warnings=("w",),
            recommendation="",
            alpha=0.05,
            correction=Correction.NONE,
            weighting="",
            generate_time=NOW,
        )
        message = convert.experiment_report_to_pb(report)
        c = message.metrics[0].comparisons[0]
        assert c.HasField("control_mean") and c.control_mean == 0.0
        for field in ("relative_lift", "ci_low", "chance_to_win", "adjusted_p_value"):
            assert not c.HasField(field), field
        assert c.variance_reduction == 0.0
        assert message.correction == pb.CORRECTION_NONE
        assert message.generate_time.ToDatetime(tzinfo=UTC) == NOW

    def test_request_defaults(self) -> None:
        """Unset method is frequentist, unset alpha 0.05, unset correction none."""
        request = convert.report_request_from_pb(pb.GetExperimentReportRequest(experiment_key="e"))
        assert (request.method, request.alpha, request.correction) == (
            AnalysisMethod.FREQUENTIST,
            0.05,
            Correction.NONE,
        )

    def test_unknown_policy_names_the_field(self) -> None:
        """EvaluatePolicy's policy must be one of the candidates."""
        with pytest.raises(InvalidArgument) as info:
            convert.policy_request_from_pb(pb.EvaluatePolicyRequest(policy="best"), NOW)
        assert info.value.field == "policy"

    def test_struct_helper_accepts_nested_lists(self) -> None:
        """ListValue inside a Struct converts element by element."""
        value = struct_pb2.Struct()
        value.update({"a": [1, [2, {"b": "c"}]]})
        assert convert._plain(value, "p") == {"a": [1.0, [2.0, {"b": "c"}]]}
