"""The event store on SQL: idempotent batch writes keyed by event_id, and the derived tables.

Every event becomes one ``events`` row; ``$decision`` and ``$outcome`` events are also projected
into ``decisions`` and ``outcomes`` (indexed for off-policy evaluation), and every unit into
``event_units`` (the holdout report's population). One transaction per batch, every insert
``ON CONFLICT DO NOTHING``, so a re-delivered batch changes nothing: the stream consumer may
replay any batch whose acknowledgement was lost. The consumer hands over each stream entry's
event JSON, which :meth:`SqlEventStore.decode` reads straight into an ``events`` row tuple (no
Event object on the way: building them cost about as much as the SQLite insert).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Engine,
    String,
    Table,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from ensayo.errors import DependencyUnavailable, InvalidArgument
from ensayo.events.model import DECISION, OUTCOME, Event
from ensayo.storage.schema import (
    decisions,
    event_units,
    events,
    outcomes,
)

__all__ = [
    "EventRow",
    "SqlEventStore",
    "event_row",
    "insert_ignoring_duplicates",
    "read_engine",
    "time_us",
    "time_from_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DECODER = json.JSONDecoder()
_PROPERTIES = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
_TIME_CACHE = 4_096

EventRow = tuple[str, str, str, int, float, str, int, str, float, str, int, str]
"""An ``events`` row in column order: event_id, unit_id, name, time_us, value,
experiment_key, experiment_version, variant_key, probability, decision_id,
allocation_version, properties (compact key-sorted JSON text)."""


def time_us(value: datetime) -> int:
    """Microseconds since the Unix epoch (UTC) of an aware datetime (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def time_from_us(value: int) -> datetime:
    """Inverse of :func:`time_us`."""
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


def read_engine(url: str) -> Engine:
    """An engine for long reports that never blocks writers.

    ``ensayo.storage.engine.create`` takes SQLite's write lock at every BEGIN (right for
    read-then-write transactions); a report holding it for seconds would stall the consumer.
    This engine opens deferred transactions on SQLite (WAL gives them a stable snapshot while
    writers go on) and is otherwise a plain engine.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


def _ignoring_insert(dialect_name: str, table: Table) -> Any:
    if dialect_name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect_name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return None


def insert_ignoring_duplicates(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert ``rows``, skipping any whose primary key exists (one statement, executemany).

    SQLite and PostgreSQL get ``INSERT ... ON CONFLICT DO NOTHING``; any other dialect gets
    a read of the existing keys first (correct under the consumer's one-writer-per-entry rule).
    """
    if not rows:
        return
    statement = _ignoring_insert(conn.dialect.name, table)
    if statement is not None:
        conn.execute(statement, rows)
        return
    keys = [c.name for c in table.primary_key.columns]  # pragma: no cover  (other warehouses)
    if len(keys) != 1:  # pragma: no cover
        raise NotImplementedError(f"{conn.dialect.name}: composite keys need ON CONFLICT")
    key = table.c[keys[0]]  # pragma: no cover
    wanted = {row[keys[0]] for row in rows}  # pragma: no cover
    seen = set(conn.execute(select(key).where(key.in_(wanted))).scalars())  # pragma: no cover
    fresh = {row[keys[0]]: row for row in rows if row[keys[0]] not in seen}  # pragma: no cover
    if fresh:  # pragma: no cover
        conn.execute(table.insert(), list(fresh.values()))


def _unnest_insert(table: Table) -> Any:
    """PostgreSQL: one ``INSERT ... SELECT * FROM unnest(arrays) ON CONFLICT DO NOTHING``.

    A batch travels as one array per column in a single statement, instead of one protocol
    round of the driver's executemany per row (several times faster in psycopg 3).
    """
    names = list(table.c.keys())
    # Strings travel as unbounded text: a cast to VARCHAR(n)[] truncates silently, and two ids
    # that differ past n characters then collide; into the column, too long is an error.
    arrays = [
        cast(
            bindparam(n),
            postgresql.ARRAY(Text() if isinstance(table.c[n].type, String) else table.c[n].type),
        )
        for n in names
    ]
    source = select(func.unnest(*arrays).table_valued(*names).render_derived("batch"))
    return postgresql.insert(table).from_select(names, source).on_conflict_do_nothing()


class _BulkInsert:
    """One table's idempotent insert, prepared once per dialect, fed tuples in column order.

    SQLite (and any dialect with ON CONFLICT and positional parameters) gets SQLAlchemy's own
    ``INSERT ... ON CONFLICT DO NOTHING`` text run as the driver's executemany, skipping
    SQLAlchemy's per-row parameter processing (most of the Python cost of a 1,000-row batch);
    PostgreSQL gets :func:`_unnest_insert`; anything else the portable fallback.
    """

    def __init__(self, conn: Connection, table: Table) -> None:
        self.table = table
        self.names = tuple(c.name for c in table.columns)
        self.sql = ""
        self.order: list[int] | None = None
        self.columnar: Any = None
        statement = _ignoring_insert(conn.dialect.name, table)
        if conn.dialect.name == "postgresql":
            self.columnar = _unnest_insert(table)
        elif statement is not None:
            compiled = statement.compile(dialect=conn.dialect, column_keys=list(self.names))
            if compiled.positiontup:
                self.sql = compiled.string
                self.order = [self.names.index(k) for k in compiled.positiontup]

    def run(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.columnar is not None:
            columns = {name: [row[i] for row in rows] for i, name in enumerate(self.names)}
            conn.execute(self.columnar, columns)
        elif self.order is not None:
            if self.order == list(range(len(self.names))):
                conn.exec_driver_sql(self.sql, list(rows))
            else:
                order = self.order
                conn.exec_driver_sql(self.sql, [tuple(row[i] for i in order) for row in rows])
        else:
            dicts = [dict(zip(self.names, row, strict=True)) for row in rows]
            insert_ignoring_duplicates(conn, self.table, dicts)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def event_row(e: Event) -> EventRow:
    """The ``events`` row of an event."""
    props = e.properties
    return (
        e.event_id,
        e.unit_id,
        e.name,
        time_us(e.time),
        e.value,
        e.experiment_key,
        e.experiment_version,
        e.variant_key,
        e.probability,
        e.decision_id,
        e.allocation_version,
        _PROPERTIES.encode(props) if props else "{}",
    )


def _decision_row(row: EventRow, props: dict[str, Any]) -> tuple[Any, ...]:
    return (  # in the decisions table's column order
        row[0],
        row[1],
        row[3],
        _text(props.get("channel"))[:128],
        _text(props.get("placement"))[:128],
        _text(props.get("policy_version"))[:128],
        1 if props.get("holdout") is True else 0,
    )


def _outcome_row(row: EventRow, props: dict[str, Any]) -> tuple[Any, ...]:
    return (  # in the outcomes table's column order
        row[0],
        row[9],
        _text(props.get("action_key"))[:128],
        row[4],
        row[3],
    )


class SqlEventStore:
    """Writes tracked events to SQL exactly once per event_id (the consumer's sink).

    Units already written by this process are remembered (up to ``unit_cache`` of them) so
    a batch re-inserts only new units into ``event_units``; a restart forgets, harmlessly.
    """

    def __init__(self, engine: Engine, *, unit_cache: int = 200_000) -> None:
        self._engine = engine
        self._inserts: dict[str, _BulkInsert] = {}
        self._units: dict[str, None] = {}
        self._unit_cache = unit_cache
        self._times: dict[str, int] = {}

    def _insert(self, conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        bulk = self._inserts.get(table.name)
        if bulk is None:
            bulk = self._inserts[table.name] = _BulkInsert(conn, table)
        bulk.run(conn, rows)

    def decode(self, payload: bytes) -> EventRow:
        """The row of an event's JSON (``codec.dumps(event)``, as a stream entry holds it).

        Reads what ``ensayo.state.events.decode_entry`` reads, without building the Event:
        ``decode(p) == event_row(decode_entry({b"e": p}))``. Raises KeyError, ValueError or
        TypeError for text that is not such an event.
        """
        data: dict[str, Any] = _DECODER.raw_decode(payload.decode())[0]
        if type(data) is not dict:
            raise TypeError("an event is a JSON object")
        get = data.get
        properties = get("properties") or {}
        if not isinstance(properties, dict):
            raise TypeError("properties must be an object")
        text = data["time"]
        micros = self._times.get(text)  # a batch's events mostly share a time (Track's now)
        if micros is None:
            micros = time_us(datetime.fromisoformat(text))
            if len(self._times) >= _TIME_CACHE:
                self._times.clear()
            self._times[text] = micros
        return (
            str(data["event_id"]),
            str(data["unit_id"]),
            str(data["name"]),
            micros,
            float(get("value", 1.0)),
            str(get("experiment_key") or ""),
            int(get("experiment_version") or 0),
            str(get("variant_key") or ""),
            float(get("probability") or 0.0),
            str(get("decision_id") or ""),
            int(get("allocation_version") or 0),
            _PROPERTIES.encode(properties) if properties else "{}",
        )

    def write(self, batch: Sequence[Event]) -> None:
        """Store ``batch`` in one transaction; events already stored are skipped.

        Raises DependencyUnavailable when the database cannot be reached, InvalidArgument
        when it refuses the data (too long a key); nothing is stored in either case.
        """
        self.write_rows([event_row(e) for e in batch])

    def write_rows(self, rows: Sequence[EventRow]) -> None:
        """:meth:`write` for events already in row form (:func:`event_row`, :meth:`decode`)."""
        known = self._units
        units: dict[str, None] = {}
        decision_rows: list[tuple[Any, ...]] = []
        outcome_rows: list[tuple[Any, ...]] = []
        for row in rows:
            unit, name = row[1], row[2]
            if unit not in known:
                units[unit] = None
            if name == DECISION:
                decision_rows.append(_decision_row(row, json.loads(row[11])))
            elif name == OUTCOME and row[9]:
                outcome_rows.append(_outcome_row(row, json.loads(row[11])))
        try:
            with self._engine.begin() as conn:
                self._insert(conn, events, rows)
                self._insert(conn, event_units, [(u,) for u in units])
                self._insert(conn, decisions, decision_rows)
                self._insert(conn, outcomes, outcome_rows)
        except OperationalError as exc:
            raise DependencyUnavailable("sql", str(exc.orig) or type(exc).__name__) from exc
        except (DataError, IntegrityError) as exc:
            raise InvalidArgument("events", f"refused by the database: {exc.orig}") from exc
        known.update(units)
        while len(known) > self._unit_cache:  # forget the oldest (dicts keep insertion order)
            del known[next(iter(known))]

    def count(self, name: str | None = None) -> int:
        """Events stored (of one name when given)."""
        query = select(func.count()).select_from(events)
        if name is not None:
            query = query.where(events.c.name == name)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def event_ids(self) -> list[str]:
        """Every stored event id (tests and audits; unbounded)."""
        with self._engine.connect() as conn:
            return list(conn.execute(select(events.c.event_id)).scalars())
