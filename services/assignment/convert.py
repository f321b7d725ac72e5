"""Assignment protobuf <-> domain conversion.

Requests become ``ensayo.assignment`` queries (attributes converted lazily, only for units a
condition reads); results become responses, the batch's indices packed with numpy. Each
``Assignment`` the engine shares between units is encoded once (cached weakly on the
instance) and a response is parsed from the concatenated encodings.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import overload

import numpy as np
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError

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
from ensayo.errors import InvalidArgument
from ensayo.protowire import split_fixed_width
from ensayo.serverkit.protoconv import struct_to_dict
from ensayo.unit_ids import FixedWidthIds
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
_ASSIGNMENTS_TAG = b"\x0a"  # AssignResponse field 1 (assignments), length-delimited
_ONE_BYTE_ZIGZAG = 63  # zigzag(i) = 2i < 128 fits one varint byte up to i = 63


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


_encoded: dict[int, tuple[weakref.ref[Assignment], bytes]] = {}
"""``id(a)`` -> (a weak reference to ``a``, ``a`` as a length-delimited response field)."""


def _encode(a: Assignment) -> bytes:
    """``a`` as field 1 of ``AssignResponse``, cached until ``a`` is garbage."""
    key = id(a)
    entry = _encoded.get(key)
    if entry is not None and entry[0]() is a:
        return entry[1]
    body = _assignment_to_pb(a).SerializeToString()
    chunk = _ASSIGNMENTS_TAG + _varint(len(body)) + body
    if a.reason is not Reason.UNKNOWN_EXPERIMENT:  # those are built per call: not worth it

        def forget(_: weakref.ref[Assignment]) -> None:
            _encoded.pop(key, None)

        _encoded[key] = (weakref.ref(a, forget), chunk)
    return chunk


def assign_response_to_pb(assignments: Sequence[Assignment]) -> pb.AssignResponse:
    """The assignments, in request order."""
    cached = _encoded.get
    chunks = []
    for a in assignments:
        entry = cached(id(a))
        chunks.append(entry[1] if entry is not None and entry[0]() is a else _encode(a))
    return pb.AssignResponse.FromString(b"".join(chunks))


def batch_query_from_pb(request: pb.AssignBatchRequest | bytes) -> BatchQuery:
    """``AssignBatchRequest`` (parsed, or its bytes) → ``BatchQuery``.

    From bytes, ids of one width in ASCII (UUIDs, zero-padded numbers) are read straight
    from the buffer as ``FixedWidthIds`` (see ``ensayo.protowire``); other ids are copied to
    a list once. Bytes that are no ``AssignBatchRequest`` are INVALID_ARGUMENT.
    """
    ids: Sequence[str] | None = None
    if isinstance(request, bytes):
        raw, split = request, split_fixed_width(request, _UNIT_IDS_FIELD)
        request = _parse_batch(split[1] if split is not None else raw)
        if split is not None and not len(request.unit_ids):
            ids = FixedWidthIds(split[0])
        elif split is not None:  # more ids after other fields: read the message whole
            request = _parse_batch(raw)
    return BatchQuery(
        request.experiment_key,
        list(request.unit_ids) if ids is None else ids,
        _LazyAttributes(request.attributes) if len(request.attributes) else (),
        request.log_exposure,
    )


_UNIT_IDS_FIELD = pb.AssignBatchRequest.DESCRIPTOR.fields_by_name["unit_ids"].number


def _parse_batch(raw: bytes) -> pb.AssignBatchRequest:
    try:
        return pb.AssignBatchRequest.FromString(raw)
    except DecodeError:
        raise InvalidArgument("request", "is not a valid AssignBatchRequest") from None


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
