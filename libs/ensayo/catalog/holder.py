"""The latest catalog snapshot, held in memory for the data plane.

It swaps atomically when a newer one is published and keeps serving the last good one when
Redis is unreachable (stale-while-revalidate).
"""

from __future__ import annotations

import threading
from typing import Protocol

import structlog

from ensayo.catalog.model import Snapshot
from ensayo.errors import DependencyUnavailable, FailedPrecondition

__all__ = ["SnapshotHolder", "SnapshotSource"]

_log = structlog.get_logger()


class SnapshotSource(Protocol):
    """Where published snapshots are read from."""

    def version(self) -> int:
        """The published version (0 when none)."""
        ...

    def fetch(self) -> Snapshot | None:
        """The published snapshot."""
        ...

    def wait_for_change(self, timeout_s: float) -> None:
        """Block until a change is announced or the timeout passes."""
        ...


class SnapshotHolder:
    """The in-memory snapshot; reads are a plain attribute load (atomic under the GIL)."""

    def __init__(self, source: SnapshotSource, poll_s: float = 1.0) -> None:
        self._source = source
        self._poll_s = poll_s
        self._current: Snapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> Snapshot:
        """The snapshot to serve from; FailedPrecondition before the first one arrives."""
        snap = self._current
        if snap is None:
            raise FailedPrecondition("no catalog snapshot loaded yet: is the catalog running?")
        return snap

    @property
    def loaded(self) -> Snapshot | None:
        """The snapshot, or None before the first one."""
        return self._current

    def refresh(self) -> bool:
        """Load a newer snapshot if one is published; True when swapped.

        Raises DependencyUnavailable when the source is down (the old snapshot stays).
        """
        held = self._current.version if self._current else 0
        if self._source.version() <= held:
            return False
        snap = self._source.fetch()
        if snap is None or snap.version <= held:
            return False
        self._current = snap
        _log.info("snapshot_swapped", version=snap.version, previous=held)
        return True

    def start(self) -> None:
        """Refresh in a daemon thread until ``stop``; a first refresh is tried right away."""
        try:
            self.refresh()
        except DependencyUnavailable as exc:
            _log.warning("snapshot_refresh_failed", error=str(exc))
        self._thread = threading.Thread(target=self._run, name="snapshot", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the refresher."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._source.wait_for_change(self._poll_s)
                self.refresh()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the refresher must outlive any error
                # Redis down (DependencyUnavailable), or a body this release cannot read (an
                # unknown enum during a rolling upgrade): keep serving the last snapshot and
                # keep trying. Anything but an outage is logged with its traceback, once.
                failures += 1
                if failures == 1 and isinstance(exc, DependencyUnavailable):
                    _log.warning("snapshot_refresh_failed", error=str(exc))
                elif failures == 1:
                    _log.exception("snapshot_refresh_error")
                self._stop.wait(min(self._poll_s * failures, 10.0))
