"""gRPC adapter for decisioning; behaviour lives in ``ensayo.decisioning.usecases``."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from ensayo.decisioning.usecases import DecisioningUseCases
from ensayo.v1 import decisioning_service_pb2 as pb
from ensayo.v1 import decisioning_service_pb2_grpc as pb_grpc
from services.decisioning import convert

__all__ = ["DecisioningServicer"]


class DecisioningServicer(pb_grpc.DecisioningServiceServicer):
    """Thin adapter: proto in, use case, proto out."""

    def __init__(self, usecases: DecisioningUseCases) -> None:
        self._usecases = usecases

    def Decide(
        self, request: pb.DecideRequest, context: grpc.ServicerContext
    ) -> pb.DecideResponse:
        """Decide for one unit."""
        decision = self._usecases.decide(convert.decide_query_from_pb(request))
        return convert.decision_to_pb(decision)

    def ReportOutcome(
        self, request: pb.ReportOutcomeRequest, context: grpc.ServicerContext
    ) -> pb.ReportOutcomeResponse:
        """Learn from one outcome, exactly once per event id."""
        result = self._usecases.report_outcome(convert.outcome_from_pb(request))
        return pb.ReportOutcomeResponse(duplicate=result.duplicate)

    def DecideBatch(
        self, request: pb.DecideBatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DecideResponse]:
        """Decide for an audience, one response per unit, in order."""
        for decision in self._usecases.decide_batch(convert.batch_query_from_pb(request)):
            yield convert.decision_to_pb(decision, with_unit=True)
