"""The event shipper: batches, flushes, retries outages, bounds memory, stops cleanly."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from ensayo.errors import DependencyUnavailable
from ensayo.events.model import DECISION, Event
from ensayo.events.shipper import DirectSink, EventShipper

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _events(start: int, n: int) -> list[Event]:
    return [Event(f"e{i}", f"u{i}", DECISION, T0) for i in range(start, start + n)]


class _Log:
    """An in-memory EventLog that records each append and can be switched off."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.lock = threading.Lock()

    def append(self, events):
        with self.lock:
            if self.down:
                raise DependencyUnavailable("redis", "down")
            self.batches.append([e.event_id for e in events])
            return [True] * len(events)

    @property
    def ids(self) -> list[str]:
        with self.lock:
            return [i for b in self.batches for i in b]


def test_direct_sink_appends_before_returning_and_raises() -> None:
    log = _Log()
    DirectSink(log).submit(_events(0, 2))
    assert log.ids == ["e0", "e1"]
    log.down = True
    with pytest.raises(DependencyUnavailable):
        DirectSink(log).submit(_events(2, 1))


def test_everything_submitted_is_appended_once_in_order_and_batched() -> None:
    log = _Log()
    shipper = EventShipper(log, flush_s=0.05, max_batch=100)
    for i in range(0, 250, 5):
        shipper.submit(_events(i, 5))
    assert shipper.flush(5.0)
    assert log.ids == [f"e{i}" for i in range(250)]
    assert all(len(b) <= 100 for b in log.batches)
    assert len(log.batches) < 50  # gathered, not one append per submit
    shipper.close()


def test_an_outage_is_retried_and_nothing_is_lost() -> None:
    log = _Log()
    log.down = True
    shipper = EventShipper(log, flush_s=0.001, retry_s=0.01)
    shipper.submit(_events(0, 3))
    assert not shipper.flush(0.1)  # still down
    assert shipper.pending == 3
    log.down = False
    assert shipper.flush(5.0)
    assert log.ids == ["e0", "e1", "e2"]
    shipper.close()


def test_close_ships_what_is_pending() -> None:
    log = _Log()
    shipper = EventShipper(log, flush_s=10.0)  # would gather for a long time
    shipper.submit(_events(0, 4))
    shipper.close(5.0)
    assert log.ids == ["e0", "e1", "e2", "e3"]
    assert shipper.pending == 0


def test_close_during_an_outage_gives_up_and_reports_pending() -> None:
    log = _Log()
    log.down = True
    shipper = EventShipper(log, flush_s=0.001, retry_s=0.01)
    shipper.submit(_events(0, 2))
    shipper.close(5.0)
    assert log.ids == []
    assert shipper.pending == 2


def test_memory_is_bounded_by_dropping_the_oldest() -> None:
    log = _Log()
    log.down = True
    shipper = EventShipper(log, flush_s=0.001, retry_s=0.01, max_pending=5, max_batch=2)
    shipper.submit(_events(0, 4))
    shipper.submit(_events(4, 4))
    assert shipper.dropped >= 1  # 3 if the thread had not yet taken a batch to retry
    assert shipper.pending <= 5 + 2  # the batch being retried is held apart
    log.down = False
    assert shipper.flush(5.0)
    assert log.ids[-3:] == ["e5", "e6", "e7"]  # the newest survive
    assert len(log.ids) + shipper.dropped == 8
    shipper.close()


def test_a_failing_bug_drops_the_batch_instead_of_blocking_the_rest() -> None:
    class Buggy(_Log):
        def append(self, events):
            if any(e.event_id == "bad" for e in events):
                raise ValueError("cannot encode")
            return super().append(events)

    log = Buggy()
    shipper = EventShipper(log, flush_s=0.0)
    shipper.submit([Event("bad", "u", DECISION, T0)])
    assert shipper.flush(5.0)
    shipper.submit(_events(0, 1))
    assert shipper.flush(5.0)
    assert log.ids == ["e0"] and shipper.dropped == 1
    shipper.close()


def test_one_submission_beyond_the_bound_still_wakes_the_thread() -> None:
    log = _Log()
    shipper = EventShipper(log, flush_s=0.001, max_pending=3)
    shipper.submit(_events(0, 5))  # trimmed to the newest 3
    deadline = time.monotonic() + 5.0
    while not log.ids and time.monotonic() < deadline:  # no flush(): it would wake the thread
        time.sleep(0.01)
    assert log.ids == ["e2", "e3", "e4"] and shipper.dropped == 2
    shipper.close()
