"""gRPC adapter for the catalog; behaviour lives in ``ensayo.catalog.usecases``."""

from __future__ import annotations

from typing import Any

import grpc

from ensayo.catalog.model import ExperimentState, Kind
from ensayo.catalog.usecases import CatalogUseCases
from ensayo.serverkit.context import current_actor
from ensayo.serverkit.protoconv import from_message
from ensayo.v1 import catalog_service_pb2 as pb
from ensayo.v1 import catalog_service_pb2_grpc as pb_grpc
from ensayo.v1 import definitions_pb2
from services.catalog import convert

__all__ = ["CatalogServicer"]

_PLURAL = {
    Kind.EXPERIMENT: "Experiments",
    Kind.HOLDOUT: "Holdouts",
    Kind.LAYER: "Layers",
    Kind.METRIC: "Metrics",
    Kind.ACTION: "Actions",
    Kind.CONTACT_POLICY: "ContactPolicies",
}
# Handlers are typed loosely: each template serves six request types.
Handler = Any


def _camel(kind: Kind) -> str:
    return "".join(part.title() for part in kind.value.split("_"))


def _expected(request: Any) -> int | None:
    return request.expected_version if request.HasField("expected_version") else None


def _page_size(request: Any) -> int | None:
    return request.page_size if request.HasField("page_size") else None


def _apply(kind: Kind) -> Handler:
    field, response = convert.FIELD_OF[kind], getattr(pb, f"Apply{_camel(kind)}Response")

    def handler(self: CatalogServicer, request: Any, _context: grpc.ServicerContext) -> Any:
        definition = convert.definition_from_pb(kind, getattr(request, field))
        stored = self._usecases.apply(definition, _expected(request), current_actor(), field)
        return response(**{field: convert.definition_to_pb(stored)})

    return handler


def _get(kind: Kind) -> Handler:
    field, response = convert.FIELD_OF[kind], getattr(pb, f"Get{_camel(kind)}Response")

    def handler(self: CatalogServicer, request: Any, _context: grpc.ServicerContext) -> Any:
        found = self._usecases.get(kind, request.key, request.version)
        return response(**{field: convert.definition_to_pb(found)})

    return handler


def _list(kind: Kind) -> Handler:
    plural = _PLURAL[kind]
    items_field = pb.DESCRIPTOR.message_types_by_name[f"List{plural}Response"].fields[0].name
    response = getattr(pb, f"List{plural}Response")

    def handler(self: CatalogServicer, request: Any, _context: grpc.ServicerContext) -> Any:
        page = self._usecases.list_definitions(kind, _page_size(request), request.page_token)
        items = [convert.definition_to_pb(d) for d in page.items]  # type: ignore[arg-type]
        return response(**{items_field: items, "next_page_token": page.next_page_token})

    return handler


class CatalogServicer(pb_grpc.CatalogServiceServicer):
    """Thin adapter: proto in, use case, proto out.

    The Apply/Get/List methods of every kind are generated below from one template each, so
    all kinds behave alike.
    """

    def __init__(self, usecases: CatalogUseCases) -> None:
        self._usecases = usecases

    ApplyExperiment = _apply(Kind.EXPERIMENT)
    GetExperiment = _get(Kind.EXPERIMENT)
    ListExperiments = _list(Kind.EXPERIMENT)
    ApplyHoldout = _apply(Kind.HOLDOUT)
    GetHoldout = _get(Kind.HOLDOUT)
    ListHoldouts = _list(Kind.HOLDOUT)
    ApplyLayer = _apply(Kind.LAYER)
    GetLayer = _get(Kind.LAYER)
    ListLayers = _list(Kind.LAYER)
    ApplyMetric = _apply(Kind.METRIC)
    GetMetric = _get(Kind.METRIC)
    ListMetrics = _list(Kind.METRIC)
    ApplyAction = _apply(Kind.ACTION)
    GetAction = _get(Kind.ACTION)
    ListActions = _list(Kind.ACTION)
    ApplyContactPolicy = _apply(Kind.CONTACT_POLICY)
    GetContactPolicy = _get(Kind.CONTACT_POLICY)
    ListContactPolicies = _list(Kind.CONTACT_POLICY)

    def SetExperimentState(
        self, request: pb.SetExperimentStateRequest, context: grpc.ServicerContext
    ) -> pb.SetExperimentStateResponse:
        """Move an experiment along its lifecycle."""
        state = from_message(request).get("state")
        stored = self._usecases.set_experiment_state(
            request.key,
            ExperimentState(state) if state else None,
            _expected(request),
            current_actor(),
        )
        message = convert.definition_to_pb(stored)
        assert isinstance(message, definitions_pb2.Experiment)  # noqa: S101
        return pb.SetExperimentStateResponse(experiment=message)

    def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditRecordsResponse:
        """Audit records, newest first."""
        page = self._usecases.audit(
            request.kind, request.key, _page_size(request), request.page_token
        )
        return pb.ListAuditRecordsResponse(
            records=[convert.audit_record_to_pb(r) for r in page.items],  # type: ignore[arg-type]
            next_page_token=page.next_page_token,
        )
