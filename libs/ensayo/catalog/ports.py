"""What the catalog use cases need from the outside world (SQL storage, snapshot publishing)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from ensayo.catalog.model import AuditOperation, AuditRecord, Definition, Kind, Snapshot

__all__ = ["Build", "CatalogRepository", "Clock", "ReadAll", "SnapshotPublisher"]

Clock = Callable[[], datetime]
# Given the stored latest version (or None), return the new definition and the operation;
# raises to abort the write. Runs inside the storage transaction.
ReadAll = Callable[[Kind], Sequence[Definition]]
"""Every latest definition of a kind, read inside the writing transaction."""
Build = Callable[[Definition | None, ReadAll], tuple[Definition, AuditOperation]]
"""``build(current, read_all)``: the new version from the current one, inside the write
transaction, which holds the catalog's write lock: what it reads cannot change before the
commit (so a check across definitions, such as layer ranges, cannot race another write)."""


class CatalogRepository(Protocol):
    """Versioned, audited storage of definitions."""

    def get(self, kind: Kind, key: str, version: int = 0) -> Definition | None:
        """A version (0: the latest), or None."""
        ...

    def list(self, kind: Kind, after_key: str, limit: int) -> Sequence[Definition]:
        """Latest versions with key > after_key, ordered by key."""
        ...

    def save(
        self,
        kind: Kind,
        key: str,
        build: Build,
        expected_version: int | None,
        actor: str,
        now: datetime,
    ) -> Definition:
        """Write a new version atomically with its audit record; enforce expected_version."""
        ...

    def audit(
        self, kind: str, key: str, before_id: int, limit: int
    ) -> Sequence[tuple[int, AuditRecord]]:
        """Audit records with id < before_id (0: newest), newest first, optionally filtered."""
        ...

    def snapshot(self, now: datetime) -> Snapshot:
        """Every latest definition, versioned by the last write."""
        ...


class SnapshotPublisher(Protocol):
    """Makes a snapshot visible to the data plane."""

    def publish(self, snapshot: Snapshot) -> bool:
        """Publish unless a newer one is already out; True when this one was published."""
        ...
