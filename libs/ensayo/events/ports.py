"""Ports of the event pipeline.

The durable log events are appended to, and observers that react to newly accepted events
(bandit rewards) in the same call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ensayo.events.model import Event

__all__ = ["EventLog", "EventObserver"]


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
