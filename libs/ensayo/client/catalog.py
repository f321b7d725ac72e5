"""Typed client of the catalog: apply, get, list, set state, audit; results are protobufs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf.message import Message

from ensayo.client.channel import DEFAULT_TIMEOUT_S
from ensayo.v1 import catalog_service_pb2 as pb
from ensayo.v1 import catalog_service_pb2_grpc as pb_grpc
from ensayo.v1 import definitions_pb2 as defs

__all__ = ["KINDS", "CatalogClient"]

# kind name -> (message class, request field, RPC stem, plural RPC stem)
KINDS: dict[str, tuple[type[Message], str, str, str]] = {
    "Layer": (defs.Layer, "layer", "Layer", "Layers"),
    "Holdout": (defs.Holdout, "holdout", "Holdout", "Holdouts"),
    "Metric": (defs.Metric, "metric", "Metric", "Metrics"),
    "Action": (defs.Action, "action", "Action", "Actions"),
    "ContactPolicy": (defs.ContactPolicy, "contact_policy", "ContactPolicy", "ContactPolicies"),
    "Experiment": (defs.Experiment, "experiment", "Experiment", "Experiments"),
}


class CatalogClient:
    """Calls CatalogService with a deadline on every call; the channel retries UNAVAILABLE."""

    def __init__(self, channel: grpc.Channel, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._stub = pb_grpc.CatalogServiceStub(channel)
        self._timeout = timeout_s

    def apply(self, kind: str, definition: Message, expected_version: int | None = None) -> Any:
        """Apply a definition of ``kind`` (``Experiment``, ``Holdout``...); returns it stored."""
        _, field, stem, _ = KINDS[kind]
        request = getattr(pb, f"Apply{stem}Request")(**{field: definition})
        if expected_version is not None:
            request.expected_version = expected_version
        response = getattr(self._stub, f"Apply{stem}")(request, timeout=self._timeout)
        return getattr(response, field)

    def get(self, kind: str, key: str, version: int = 0) -> Any:
        """A definition at ``version`` (0: latest)."""
        _, field, stem, _ = KINDS[kind]
        request = getattr(pb, f"Get{stem}Request")(key=key, version=version)
        return getattr(getattr(self._stub, f"Get{stem}")(request, timeout=self._timeout), field)

    def list(self, kind: str, page_size: int = 200) -> Iterator[Any]:
        """Every definition of ``kind``, following pages."""
        _, _, _, plural = KINDS[kind]
        token = ""
        while True:
            request = getattr(pb, f"List{plural}Request")(page_size=page_size, page_token=token)
            response = getattr(self._stub, f"List{plural}")(request, timeout=self._timeout)
            yield from getattr(response, response.DESCRIPTOR.fields_by_number[1].name)
            token = response.next_page_token
            if not token:
                return

    def set_experiment_state(
        self, key: str, state: int, expected_version: int | None = None
    ) -> defs.Experiment:
        """Move an experiment to ``state`` (an ``ExperimentState`` value)."""
        request = pb.SetExperimentStateRequest(key=key, state=state)  # type: ignore[arg-type]
        if expected_version is not None:
            request.expected_version = expected_version
        return self._stub.SetExperimentState(request, timeout=self._timeout).experiment

    def audit(
        self, kind: str = "", key: str = "", page_size: int = 50
    ) -> Iterator[defs.AuditRecord]:
        """Audit records newest first, following pages."""
        token = ""
        while True:
            response = self._stub.ListAuditRecords(
                pb.ListAuditRecordsRequest(
                    kind=kind, key=key, page_size=page_size, page_token=token
                ),
                timeout=self._timeout,
            )
            yield from response.records
            token = response.next_page_token
            if not token:
                return
