"""Event intake: validate, append durably with de-duplication, hand new events to observers.

Observers are, for instance, the bandit reward path of the assignment service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ensayo.catalog.ports import Clock
from ensayo.errors import ResourceExhausted
from ensayo.events.model import MAX_EVENTS_PER_CALL, Event, validate_events
from ensayo.events.ports import EventLog, EventObserver

__all__ = ["EventIntake", "TrackResult"]


@dataclass(frozen=True, slots=True)
class TrackResult:
    """How many events were new and how many repeated an event_id already stored."""

    accepted: int
    duplicates: int


class EventIntake:
    """The Track use case; all or nothing for validation, exactly once per event id."""

    def __init__(self, log: EventLog, observers: Sequence[EventObserver], clock: Clock) -> None:
        self._log = log
        self._observers = tuple(observers)
        self._clock = clock

    def track(self, events: list[Event]) -> TrackResult:
        """Validate every event, append them, notify observers of the new ones."""
        if len(events) > MAX_EVENTS_PER_CALL:
            raise ResourceExhausted("events", f"at most {MAX_EVENTS_PER_CALL} events per call")
        now: datetime = self._clock()
        validate_events(events, now)
        fresh = sum(self._log.append(events))
        # Observers see every event, duplicates included, and de-duplicate by event id
        # themselves: if one failed after the log took a batch, the client's retry (a
        # duplicate for the log) still reaches it, so nothing is lost and nothing is counted twice.
        for observer in self._observers:
            observer.observe(events)
        return TrackResult(accepted=fresh, duplicates=len(events) - fresh)
