"""gRPC adapters of intake and reports; behaviour lives in ensayo.events and ensayo.analysis."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import grpc

from ensayo.analysis.usecases import AnalysisUseCases
from ensayo.events.usecases import EventIntake
from ensayo.v1 import analysis_service_pb2 as pb
from ensayo.v1 import analysis_service_pb2_grpc as pb_grpc
from ensayo.v1 import events_service_pb2 as events_pb
from ensayo.v1 import events_service_pb2_grpc as events_grpc
from services.analysis import convert

__all__ = ["AnalysisServicer", "EventsServicer"]


class EventsServicer(events_grpc.EventsServiceServicer):
    """Thin adapter: proto events in, intake, counts out."""

    def __init__(self, intake: EventIntake, clock: Callable[[], datetime]) -> None:
        self._intake = intake
        self._clock = clock

    def Track(
        self, request: events_pb.TrackRequest, context: grpc.ServicerContext
    ) -> events_pb.TrackResponse:
        """Store events (all or nothing), acknowledging only what Redis holds."""
        result = self._intake.track(convert.events_from_pb(request.events, self._clock()))
        return events_pb.TrackResponse(accepted=result.accepted, duplicates=result.duplicates)


class AnalysisServicer(pb_grpc.AnalysisServiceServicer):
    """Thin adapter: proto request in, use case, proto report out."""

    def __init__(self, usecases: AnalysisUseCases, clock: Callable[[], datetime]) -> None:
        self._usecases = usecases
        self._clock = clock

    def GetExperimentReport(
        self, request: pb.GetExperimentReportRequest, context: grpc.ServicerContext
    ) -> pb.GetExperimentReportResponse:
        """Every metric, every treatment against the control."""
        report = self._usecases.experiment_report(convert.report_request_from_pb(request))
        return pb.GetExperimentReportResponse(report=convert.experiment_report_to_pb(report))

    def GetHoldoutReport(
        self, request: pb.GetHoldoutReportRequest, context: grpc.ServicerContext
    ) -> pb.GetHoldoutReportResponse:
        """The holdout against everyone else."""
        report = self._usecases.holdout_report(
            request.holdout_key,
            tuple(request.metric_keys),
            request.alpha if request.HasField("alpha") else 0.05,
        )
        return pb.GetHoldoutReportResponse(report=convert.holdout_report_to_pb(report))

    def PlanSampleSize(
        self, request: pb.PlanSampleSizeRequest, context: grpc.ServicerContext
    ) -> pb.PlanSampleSizeResponse:
        """Units per variant to detect the effect."""
        plan = self._usecases.plan_sample_size(**convert.plan_from_pb(request))
        return pb.PlanSampleSizeResponse(
            units_per_variant=plan.units_per_variant, total_units=plan.total_units
        )

    def EvaluatePolicy(
        self, request: pb.EvaluatePolicyRequest, context: grpc.ServicerContext
    ) -> pb.EvaluatePolicyResponse:
        """Off-policy estimates of a candidate policy."""
        query = convert.policy_request_from_pb(request, self._clock())
        return convert.policy_report_to_pb(self._usecases.evaluate_policy(query))
