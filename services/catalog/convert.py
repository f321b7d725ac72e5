"""Catalog protobuf <-> domain conversion; output-only fields are ignored on the way in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from ensayo.catalog import codec
from ensayo.catalog.model import CLASS_OF, KIND_OF, AuditRecord, Definition, Kind
from ensayo.errors import InvalidArgument
from ensayo.serverkit.protoconv import from_message, to_message
from ensayo.v1 import definitions_pb2 as pb

__all__ = [
    "FIELD_OF",
    "PB_CLASS_OF",
    "audit_record_to_pb",
    "definition_from_pb",
    "definition_to_pb",
]

PB_CLASS_OF: Mapping[Kind, type[Message]] = {
    Kind.EXPERIMENT: pb.Experiment,
    Kind.HOLDOUT: pb.Holdout,
    Kind.LAYER: pb.Layer,
    Kind.METRIC: pb.Metric,
    Kind.ACTION: pb.Action,
    Kind.CONTACT_POLICY: pb.ContactPolicy,
}
# The request/response field holding each kind (ApplyHoldoutRequest.holdout...).
FIELD_OF: Mapping[Kind, str] = {k: k.value for k in Kind}
_OUTPUT_ONLY = ("version", "update_time")


def definition_from_pb(kind: Kind, message: Message) -> Definition:
    """The domain definition in ``message``; raises InvalidArgument naming the field."""
    try:  # from_message too: a NaN in a Struct, a Timestamp out of range raise ValueError
        return codec.decode(CLASS_OF[kind], from_message(message, skip=_OUTPUT_ONLY))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(FIELD_OF[kind], f"malformed definition: {exc}") from exc


def definition_to_pb(definition: Definition) -> Message:
    """The protobuf message for a stored definition."""
    kind = KIND_OF[type(definition)]
    data: dict[str, Any] = codec.encode(definition)
    return to_message(data, PB_CLASS_OF[kind]())


def audit_record_to_pb(record: AuditRecord) -> pb.AuditRecord:
    """The protobuf message of an audit record."""
    message = to_message(codec.encode(record), pb.AuditRecord())
    assert isinstance(message, pb.AuditRecord)  # noqa: S101
    return message
