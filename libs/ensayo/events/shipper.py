"""Event sinks: append now (``DirectSink``) or from a background thread (``EventShipper``).

Decisioning logs every delivered decision as a ``$decision`` event. Appending it inside the
call costs a Redis round trip and the JSON encoding on the request's thread; shipping it from
one background thread turns those into one batched append every ``flush_s``. The price is
stated, not hidden: a process killed without SIGTERM loses at most the decisions handed over
since the last flush (plus whatever waited out a Redis outage); a graceful stop flushes. The
decision's own record, which outcomes join against, is still written with the contact
reservation inside the call. Appends are idempotent by event id, so retrying a batch after a
partial failure never logs a decision twice.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

import structlog

from ensayo.errors import DependencyUnavailable
from ensayo.events.model import Event
from ensayo.events.ports import EventLog

__all__ = ["DirectSink", "EventShipper"]

_log = structlog.get_logger()


class DirectSink:
    """``EventSink`` that appends before returning; errors reach the caller."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def submit(self, events: Sequence[Event]) -> None:
        """Append ``events`` now."""
        self._log.append(events)


class EventShipper:
    """``EventSink`` that returns at once; a daemon thread appends in batches.

    ``flush_s`` is how long the thread lets events gather before appending; ``max_batch``
    bounds one append; ``max_pending`` bounds memory during an outage: beyond it the oldest
    events are dropped and counted (``dropped``), with a warning. Failed appends are retried
    every ``retry_s``.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        flush_s: float = 0.005,
        max_batch: int = 500,
        max_pending: int = 100_000,
        retry_s: float = 0.5,
        name: str = "event-shipper",
    ) -> None:
        self._log = log
        self._flush_s = flush_s
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._retry_s = retry_s
        self._pending: deque[Event] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._in_flight = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Events handed over and not yet appended (including a batch being appended)."""
        with self._wake:
            return len(self._pending) + self._in_flight

    def submit(self, events: Sequence[Event]) -> None:
        """Queue ``events`` for the next batch (never blocks on Redis)."""
        with self._wake:
            was_empty = not self._pending
            self._pending.extend(events)
            overflow = len(self._pending) - self._max_pending
            if overflow > 0:
                for _ in range(overflow):
                    self._pending.popleft()
                self.dropped += overflow
                _log.warning("events_dropped", dropped=overflow, total_dropped=self.dropped)
            if was_empty:  # the thread may be asleep
                self._wake.notify()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything handed over so far is appended; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._wake:
            self._wake.notify()
            while self._pending or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.01))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Append what is pending (for up to ``timeout_s``), then stop the thread."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._thread.join(timeout_s)
        left = self.pending
        if left:
            _log.warning("events_not_shipped", pending=left)

    def _take(self) -> list[Event] | None:
        """The next batch, after letting events gather; None once closing and drained."""
        with self._wake:
            while not self._pending and not self._closing:
                self._wake.wait()
            if not self._pending:
                return None
            if not self._closing and len(self._pending) < self._max_batch:
                self._wake.wait(self._flush_s)  # gather; submit does not notify a busy queue
            count = min(len(self._pending), self._max_batch)
            batch = [self._pending.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            while True:
                try:
                    self._log.append(batch)
                    break
                except DependencyUnavailable as exc:
                    _log.warning("events_ship_failed", error=str(exc), events=len(batch))
                    with self._wake:
                        if self._closing:  # give up: close() reports what is left
                            self._pending.extendleft(reversed(batch))
                            self._in_flight = 0
                            return
                        self._wake.wait(self._retry_s)
                except Exception:  # noqa: BLE001 - a bug: retrying would block every later batch
                    _log.exception("events_ship_error", events=len(batch))
                    with self._wake:
                        self.dropped += len(batch)
                    break
            with self._wake:
                self._in_flight = 0
                self._wake.notify_all()
