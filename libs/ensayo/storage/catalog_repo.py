"""The catalog repository on SQL.

Immutable versions, a head row per key as the optimistic lock, and an audit record committed
in the same transaction as the version it describes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ensayo.catalog import codec
from ensayo.catalog.model import (
    CLASS_OF,
    AuditOperation,
    AuditRecord,
    Definition,
    Kind,
    Snapshot,
)
from ensayo.catalog.ports import Build
from ensayo.errors import AlreadyExists, VersionConflict
from ensayo.storage.schema import audit_records, definition_heads, definition_versions

__all__ = ["SqlCatalogRepository"]


def _aware(value: datetime) -> datetime:
    """SQLite drops the zone; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class SqlCatalogRepository:
    """``CatalogRepository`` over any SQLAlchemy engine (SQLite, PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, kind: Kind, key: str, version: int = 0) -> Definition | None:
        """A version (0: the latest), or None."""
        v = definition_versions
        query = select(v.c.body).where(v.c.kind == kind.value, v.c.key == key)
        if version:
            query = query.where(v.c.version == version)
        else:
            h = definition_heads
            query = query.join(
                h, and_(h.c.kind == v.c.kind, h.c.key == v.c.key, h.c.version == v.c.version)
            )
        with self._engine.connect() as conn:
            body = conn.execute(query).scalar_one_or_none()
        return codec.loads(CLASS_OF[kind], body) if body is not None else None

    def list(self, kind: Kind, after_key: str, limit: int) -> Sequence[Definition]:
        """Latest versions with key > after_key, ordered by key."""
        with self._engine.connect() as conn:
            return _latest(conn, kind, after_key, limit)

    def save(
        self,
        kind: Kind,
        key: str,
        build: Build,
        expected_version: int | None,
        actor: str,
        now: datetime,
    ) -> Definition:
        """Write a new version, its head and its audit record in one transaction."""
        h = definition_heads
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # One writer at a time (SQLite's BEGIN IMMEDIATE does the same): audit ids,
                    # which version snapshots, then commit in the order they are handed out,
                    # and checks across definitions read what no one else is changing.
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})")
                head = conn.execute(
                    select(h.c.version)
                    .where(h.c.kind == kind.value, h.c.key == key)
                    .with_for_update()
                ).scalar_one_or_none()
                _check_expected(kind, key, head, expected_version)
                current = self.get_in(conn, kind, key, head) if head else None
                new, operation = build(current, lambda k: _latest(conn, k, "", None))
                conn.execute(
                    insert(definition_versions).values(
                        kind=kind.value,
                        key=key,
                        version=new.version,
                        body=codec.dumps(new),
                        created_at=now,
                        actor=actor,
                    )
                )
                if head is None:
                    conn.execute(insert(h).values(kind=kind.value, key=key, version=new.version))
                else:
                    moved = conn.execute(
                        update(h)
                        .where(h.c.kind == kind.value, h.c.key == key, h.c.version == head)
                        .values(version=new.version)
                    )
                    if moved.rowcount != 1:
                        raise VersionConflict(kind.value, key, head, head + 1)
                conn.execute(
                    insert(audit_records).values(
                        time=now,
                        actor=actor,
                        kind=kind.value,
                        key=key,
                        version=new.version,
                        operation=operation.value,
                        diff=json.dumps(codec.diff(current, new), sort_keys=True),
                    )
                )
        except IntegrityError as exc:
            # A concurrent writer created or advanced the same key first.
            raise VersionConflict(kind.value, key, expected_version or 0, -1) from exc
        return new

    @staticmethod
    def get_in(conn: object, kind: Kind, key: str, version: int) -> Definition | None:
        """A version read inside an open transaction."""
        v = definition_versions
        body = conn.execute(  # type: ignore[attr-defined]
            select(v.c.body).where(v.c.kind == kind.value, v.c.key == key, v.c.version == version)
        ).scalar_one_or_none()
        return codec.loads(CLASS_OF[kind], body) if body is not None else None

    def audit(
        self, kind: str, key: str, before_id: int, limit: int
    ) -> Sequence[tuple[int, AuditRecord]]:
        """Audit records with id < before_id (0: newest), newest first."""
        a = audit_records
        query = select(a).order_by(a.c.id.desc()).limit(limit)
        if before_id:
            query = query.where(a.c.id < before_id)
        if kind:
            query = query.where(a.c.kind == kind)
        if key:
            query = query.where(a.c.key == key)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            (
                row["id"],
                AuditRecord(
                    actor=row["actor"],
                    time=_aware(row["time"]),
                    kind=Kind(row["kind"]),
                    key=row["key"],
                    version=row["version"],
                    operation=AuditOperation(row["operation"]),
                    diff=json.loads(row["diff"]),
                ),
            )
            for row in rows
        ]

    def snapshot(self, now: datetime) -> Snapshot:
        """Every latest definition; the version is the id of the last committed write."""
        v, h = definition_versions, definition_heads
        query = (
            select(v.c.kind, v.c.body)
            .join(h, and_(h.c.kind == v.c.kind, h.c.key == v.c.key, h.c.version == v.c.version))
            .order_by(v.c.kind, v.c.key)
        )
        with self._engine.begin() as conn:
            version = conn.execute(select(func.max(audit_records.c.id))).scalar_one_or_none() or 0
            rows = conn.execute(query).all()
        grouped: dict[Kind, list[Definition]] = {k: [] for k in Kind}
        for kind, body in rows:
            k = Kind(kind)
            grouped[k].append(codec.loads(CLASS_OF[k], body))
        return Snapshot(
            version=int(version),
            experiments=tuple(grouped[Kind.EXPERIMENT]),  # type: ignore[arg-type]
            holdouts=tuple(grouped[Kind.HOLDOUT]),  # type: ignore[arg-type]
            layers=tuple(grouped[Kind.LAYER]),  # type: ignore[arg-type]
            metrics=tuple(grouped[Kind.METRIC]),  # type: ignore[arg-type]
            actions=tuple(grouped[Kind.ACTION]),  # type: ignore[arg-type]
            contact_policies=tuple(grouped[Kind.CONTACT_POLICY]),  # type: ignore[arg-type]
            created_at=now,
        )


_WRITE_LOCK = 0x656E7362  # "ensb": the catalog's write lock on PostgreSQL (migrations: "ensa")


def _latest(conn: Connection, kind: Kind, after_key: str, limit: int | None) -> list[Definition]:
    """Latest versions of ``kind`` with key > ``after_key``, by key, at most ``limit``."""
    v, h = definition_versions, definition_heads
    query = (
        select(v.c.body)
        .join(h, and_(h.c.kind == v.c.kind, h.c.key == v.c.key, h.c.version == v.c.version))
        .where(v.c.kind == kind.value, v.c.key > after_key)
        .order_by(v.c.key)
    )
    if limit is not None:
        query = query.limit(limit)
    cls = CLASS_OF[kind]
    return [codec.loads(cls, body) for body in conn.execute(query).scalars().all()]


def _check_expected(kind: Kind, key: str, head: int | None, expected: int | None) -> None:
    if expected is None:
        return
    if expected == 0:
        if head is not None:
            raise AlreadyExists(kind.value, key)
        return
    if head != expected:
        raise VersionConflict(kind.value, key, expected, head or 0)
