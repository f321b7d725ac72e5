"""Assignment protobuf <-> domain conversion.

Requests become ``ensayo.assignment`` queries (attributes converted lazily, only for units a
condition reads); results become responses, the batch's indices packed with numpy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import overload

import numpy as np
from google.protobuf import struct_pb2

from ensayo.assignment.model import (
    Assignment,
    AssignQuery,
    BatchQuery,
    BatchResult,
    Membership,
    MembershipKind,
    Reason,
    Unit,
)
from ensayo.v1 import assignment_service_pb2 as pb
from ensayo.v1 import common_pb2

__all__ = [
    "REASON_FROM_PB",
    "REASON_TO_PB",
    "assign_query_from_pb",
    "assign_response_to_pb",
    "batch_query_from_pb",
    "batch_result_to_pb",
    "memberships_response_to_pb",
    "struct_to_dict",
    "unit_from_pb",
]

REASON_TO_PB: Mapping[Reason, pb.AssignmentReason.ValueType] = {
    r: pb.AssignmentReason.Value(f"ASSIGNMENT_REASON_{r.name}") for r in Reason
}
REASON_FROM_PB: Mapping[int, Reason] = {int(v): r for r, v in REASON_TO_PB.items()}
_KIND_TO_PB: Mapping[MembershipKind, pb.MembershipKind.ValueType] = {
    k: pb.MembershipKind.Value(f"MEMBERSHIP_KIND_{k.name}") for k in MembershipKind
}
_NO_REASON = pb.AssignmentReason.ASSIGNMENT_REASON_UNSPECIFIED
_PACKED_INDEX_TAG = b"\x12"  # field 2 (variant_index), wire type 2 (length-delimited)
_ONE_BYTE_ZIGZAG = 63  # zigzag(i) = 2i < 128 fits one varint byte up to i = 63


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, object]:
    """A ``google.protobuf.Struct`` as plain Python values (numbers are floats)."""
    return {key: _value(value) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value) -> object:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None


class _LazyAttributes(Sequence[Mapping[str, object]]):
    """Attributes parallel to the unit ids, each Struct converted only when read."""

    def __init__(self, structs: Sequence[struct_pb2.Struct]) -> None:
        self._structs = structs

    def __len__(self) -> int:
        return len(self._structs)

    @overload
    def __getitem__(self, index: int) -> Mapping[str, object]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, object]]: ...
    def __getitem__(
        self, index: int | slice
    ) -> Mapping[str, object] | Sequence[Mapping[str, object]]:
        if isinstance(index, slice):
            return [struct_to_dict(s) for s in self._structs[index]]
        return struct_to_dict(self._structs[index])

    def __iter__(self) -> Iterator[Mapping[str, object]]:
        return (struct_to_dict(s) for s in self._structs)


def unit_from_pb(unit: common_pb2.Unit) -> Unit:
    """The domain unit (the id is validated by the use case)."""
    return Unit(unit.id, struct_to_dict(unit.attributes))


def assign_query_from_pb(request: pb.AssignRequest) -> AssignQuery:
    """``AssignRequest`` → ``AssignQuery``."""
    return AssignQuery(
        unit_from_pb(request.unit), tuple(request.experiment_keys), request.log_exposure
    )


def _assignment_to_pb(a: Assignment) -> pb.Assignment:
    message = pb.Assignment(
        experiment_key=a.experiment_key,
        variant_key=a.variant_key,
        in_experiment=a.in_experiment,
        reason=REASON_TO_PB[a.reason],
        experiment_version=a.experiment_version,
        probability=a.probability,
        allocation_version=a.allocation_version,
    )
    if a.payload:
        message.payload.update(a.payload)
    return message


def assign_response_to_pb(assignments: Sequence[Assignment]) -> pb.AssignResponse:
    """The assignments, in request order."""
    return pb.AssignResponse(assignments=[_assignment_to_pb(a) for a in assignments])


def batch_query_from_pb(request: pb.AssignBatchRequest) -> BatchQuery:
    """``AssignBatchRequest`` → ``BatchQuery``; the ids are copied to a list once."""
    return BatchQuery(
        request.experiment_key,
        list(request.unit_ids),
        _LazyAttributes(request.attributes) if len(request.attributes) else (),
        request.log_exposure,
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def batch_result_to_pb(result: BatchResult) -> pb.AssignBatchResponse:
    """The batch's answer.

    With up to 64 variants the packed indices are built with numpy (the zigzag varint of
    -1..63 is one byte) and merged in, instead of going through a Python list.
    """
    response = pb.AssignBatchResponse(
        variant_keys=result.variant_keys,
        experiment_version=result.experiment_version,
        allocation_version=result.allocation_version,
    )
    index = result.variant_index
    if index.size == 0:
        return response
    if len(result.variant_keys) <= _ONE_BYTE_ZIGZAG + 1:
        wide = index.astype(np.int64)
        zigzag = ((wide << 1) ^ (wide >> 63)).astype(np.uint8).tobytes()
        response.MergeFromString(_PACKED_INDEX_TAG + _varint(len(zigzag)) + zigzag)
    else:
        response.variant_index.extend(index.tolist())
    return response


def memberships_response_to_pb(rows: Sequence[Membership]) -> pb.GetMembershipsResponse:
    """Every membership row."""
    return pb.GetMembershipsResponse(
        memberships=[
            pb.Membership(
                kind=_KIND_TO_PB[m.kind],
                key=m.key,
                member=m.member,
                reason=REASON_TO_PB[m.reason] if m.reason is not None else _NO_REASON,
                variant_key=m.variant_key,
                position=m.position,
                owner=m.owner,
            )
            for m in rows
        ]
    )
