"""gRPC adapter for assignment; behaviour lives in ``ensayo.assignment.usecases``."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from ensayo.assignment.usecases import AssignmentUseCases
from ensayo.v1 import assignment_service_pb2 as pb
from ensayo.v1 import assignment_service_pb2_grpc as pb_grpc
from services.assignment import convert

__all__ = ["AssignmentServicer", "register"]


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
        self, request: pb.AssignBatchRequest | bytes, context: grpc.ServicerContext
    ) -> pb.AssignBatchResponse:
        """Many units, one experiment (``bytes`` when registered by ``register``)."""
        query = convert.batch_query_from_pb(request)
        return convert.batch_result_to_pb(self._usecases.assign_batch(query))

    def AssignStream(
        self,
        request_iterator: Iterator[pb.AssignBatchRequest | bytes],
        context: grpc.ServicerContext,
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


def register(servicer: AssignmentServicer, server: grpc.Server) -> None:
    """``add_AssignmentServiceServicer_to_server``, except that batches arrive as bytes.

    ``AssignBatch`` and ``AssignStream`` get each request message undecoded, so that
    ``convert.batch_query_from_pb`` can read fixed-width ids straight from the wire
    (``ensayo.protowire``) instead of materialising 100,000 Python strings.
    """
    handlers = {
        "Assign": grpc.unary_unary_rpc_method_handler(
            servicer.Assign,
            request_deserializer=pb.AssignRequest.FromString,
            response_serializer=pb.AssignResponse.SerializeToString,
        ),
        "AssignBatch": grpc.unary_unary_rpc_method_handler(
            servicer.AssignBatch,
            response_serializer=pb.AssignBatchResponse.SerializeToString,
        ),
        "AssignStream": grpc.stream_stream_rpc_method_handler(
            servicer.AssignStream,
            response_serializer=pb.AssignBatchResponse.SerializeToString,
        ),
        "GetMemberships": grpc.unary_unary_rpc_method_handler(
            servicer.GetMemberships,
            request_deserializer=pb.GetMembershipsRequest.FromString,
            response_serializer=pb.GetMembershipsResponse.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["AssignmentService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)  # type: ignore[attr-defined]
