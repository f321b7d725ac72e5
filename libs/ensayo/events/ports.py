"""Ports of the event pipeline.

The durable log events are appended to, and observers that react to newly accepted events
(bandit rewards) in the same call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ensayo.events.model import Event

__all__ = ["EventLog", "EventObserver", "EventSink"]


class EventLog(Protocol):
    """Durable, de-duplicating append of events (a Redis Stream in production)."""

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Store events; per event, True if new, False if its event_id was seen before.

        Returns only after the log has them durably; raises DependencyUnavailable otherwise.
        """
        ...


class EventObserver(Protocol):
    """Reacts to tracked events; must be idempotent per event id (retries reach it again)."""

    def observe(self, events: Sequence[Event]) -> None:
        """Handle tracked events, ignoring event ids it has already handled."""
        ...


class EventSink(Protocol):
    """Where a service hands over events it logs itself (decisions), durable now or soon.

    ``ensayo.events.shipper`` has both kinds: ``DirectSink`` appends before returning (and
    raises DependencyUnavailable like the log), ``EventShipper`` returns at once and appends
    from a background thread in batches.
    """

    def submit(self, events: Sequence[Event]) -> None:
        """Hand events over to the log."""
        ...
