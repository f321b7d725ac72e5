"""The one table mapping Ensayo's error tree to gRPC status codes, with BadRequest details."""

from __future__ import annotations

import collections

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ensayo import errors

__all__ = ["REQUEST_ID_KEY", "STATUS_BY_ERROR", "status_for"]

REQUEST_ID_KEY = "x-request-id"
"""Metadata key of the request id: read from the client's metadata, returned with errors."""

STATUS_BY_ERROR: tuple[tuple[type[errors.EnsayoError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.VersionConflict, grpc.StatusCode.ABORTED),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.DependencyUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
)


def _code_of(exc: BaseException) -> grpc.StatusCode | None:
    for kind, code in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return code
    return None


def status_for(exc: BaseException, request_id: str) -> grpc.Status:
    """The status a client sees for ``exc``; unknown exceptions become INTERNAL, not echoed.

    Its trailing metadata carries the details and the request id (``REQUEST_ID_KEY``).
    """
    code = _code_of(exc)
    if isinstance(exc, NotImplementedError):
        code, message = grpc.StatusCode.UNIMPLEMENTED, "method not implemented yet"
    elif code is None:
        code, message = grpc.StatusCode.INTERNAL, f"internal error; request_id={request_id}"
    else:
        message = str(exc)
    proto = status_pb2.Status(code=code.value[0], message=message)
    if isinstance(exc, errors.InvalidArgument):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.reason)
                for v in exc.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(detail)
        proto.details.append(packed)
    status = rpc_status.to_status(proto)
    return _Status(
        status.code, status.details, (*status.trailing_metadata, (REQUEST_ID_KEY, request_id))
    )


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")),
    grpc.Status,
):
    """A ``grpc.Status`` (the interface has no public constructor)."""
