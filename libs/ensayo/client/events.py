"""Typed client of intake: ``Track`` with domain events, batched, retried on UNAVAILABLE.

A retried ``Track`` is safe: event ids make it idempotent (a re-sent event counts as a
duplicate, never twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import grpc
from google.protobuf import json_format, struct_pb2

from ensayo.client.channel import DEFAULT_TIMEOUT_S
from ensayo.events.model import MAX_EVENTS_PER_CALL, Event
from ensayo.events.usecases import TrackResult
from ensayo.v1 import events_service_pb2 as pb
from ensayo.v1 import events_service_pb2_grpc as pb_grpc

__all__ = ["EventsClient", "event_to_pb"]


def event_to_pb(event: Event) -> pb.Event:
    """The wire form of a domain event (its ``value`` and ``time`` always set)."""
    message = pb.Event(
        event_id=event.event_id,
        unit_id=event.unit_id,
        name=event.name,
        value=event.value,
        experiment_key=event.experiment_key,
        experiment_version=event.experiment_version,
        variant_key=event.variant_key,
        probability=event.probability,
        decision_id=event.decision_id,
        allocation_version=event.allocation_version,
    )
    message.time.FromDatetime(event.time)
    if event.properties:
        message.properties.CopyFrom(json_format.ParseDict(event.properties, struct_pb2.Struct()))
    return message


class EventsClient:
    """Calls EventsService with a deadline on every call; the channel retries UNAVAILABLE."""

    def __init__(self, channel: grpc.Channel, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._stub = pb_grpc.EventsServiceStub(channel)
        self._timeout = timeout_s

    def track(self, events: Iterable[Event | pb.Event]) -> TrackResult:
        """Store up to 10,000 events in one all-or-nothing call."""
        messages = [e if isinstance(e, pb.Event) else event_to_pb(e) for e in events]
        reply = self._stub.Track(pb.TrackRequest(events=messages), timeout=self._timeout)
        return TrackResult(accepted=reply.accepted, duplicates=reply.duplicates)

    def track_all(
        self, events: Iterable[Event | pb.Event], batch_size: int = 1_000
    ) -> TrackResult:
        """Store any number of events in calls of ``batch_size``; the counts are summed.

        Each call is all or nothing; if one fails, the calls before it stay stored and
        re-sending everything is safe (duplicates are acknowledged, not counted).
        """
        if not 1 <= batch_size <= MAX_EVENTS_PER_CALL:
            raise ValueError(f"batch_size must be in [1, {MAX_EVENTS_PER_CALL}]")
        accepted = duplicates = 0
        iterator = iter(events)
        while batch := list(islice(iterator, batch_size)):
            result = self.track(batch)
            accepted += result.accepted
            duplicates += result.duplicates
        return TrackResult(accepted=accepted, duplicates=duplicates)
