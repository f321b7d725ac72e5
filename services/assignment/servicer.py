"""gRPC adapter for assignment; behaviour lives in ``ensayo.assignment.usecases``."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from ensayo.assignment.usecases import AssignmentUseCases
from ensayo.v1 import assignment_service_pb2 as pb
from ensayo.v1 import assignment_service_pb2_grpc as pb_grpc
from services.assignment import convert

__all__ = ["AssignmentServicer"]


class AssignmentServicer(pb_grpc.AssignmentServiceServicer):
    """Thin adapter: proto in, use case, proto out."""

    def __init__(self, usecases: AssignmentUseCases) -> None:
        self._usecases = usecases

    def Assign(
        self, request: pb.AssignRequest, context: grpc.ServicerContext
    ) -> pb.AssignResponse:
        """One unit, many experiments."""
        query = convert.assign_query_from_pb(request)
        return convert.assign_response_to_pb(self._usecases.assign(query))

    def AssignBatch(
        self, request: pb.AssignBatchRequest, context: grpc.ServicerContext
    ) -> pb.AssignBatchResponse:
        """Many units, one experiment."""
        query = convert.batch_query_from_pb(request)
        return convert.batch_result_to_pb(self._usecases.assign_batch(query))

    def AssignStream(
        self, request_iterator: Iterator[pb.AssignBatchRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AssignBatchResponse]:
        """AssignBatch per message, one response per request, in order."""
        for request in request_iterator:
            query = convert.batch_query_from_pb(request)
            yield convert.batch_result_to_pb(self._usecases.assign_batch(query))

    def GetMemberships(
        self, request: pb.GetMembershipsRequest, context: grpc.ServicerContext
    ) -> pb.GetMembershipsResponse:
        """Where a unit stands everywhere."""
        unit = convert.unit_from_pb(request.unit)
        return convert.memberships_response_to_pb(self._usecases.memberships(unit))
