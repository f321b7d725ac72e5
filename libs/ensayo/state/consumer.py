"""The event stream's consumer group: read a batch, commit it to SQL, then acknowledge it.

At-least-once delivery plus an idempotent sink (SQL keyed by event_id) gives exactly-once
storage. A crash anywhere leaves the batch pending in the group: after read, nothing was
committed and the batch is re-read; after commit, the re-read batch inserts nothing new. A
restarted consumer (same name) finishes its own pending entries first; any other consumer
reclaims a dead one's entries with ``XAUTOCLAIM`` once they have been idle ``claim_idle_ms``.
Acknowledged entries are trimmed (``XTRIM MINID ~``, up to TRIM_LIMIT per call, five times a
second) below the oldest entry any group of the stream still needs, so the stream does not
grow forever.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import structlog

from ensayo.errors import DependencyUnavailable, InvalidArgument
from ensayo.state.client import redis_errors
from ensayo.state.events import STREAM_KEY

__all__ = [
    "DEAD_LETTER_KEY",
    "DEFAULT_GROUP",
    "TRIM_LIMIT",
    "ConsumerHooks",
    "ConsumerWorker",
    "EventSink",
    "StreamConsumer",
    "default_consumer_name",
    "safe_trim_id",
]

DEFAULT_GROUP = "analysis"
TRIM_LIMIT = 100_000
"""Most entries one XTRIM may remove: bounds the time Redis spends in one call (the
default with ``~`` is 10,000, less than a busy second of intake)."""
DEAD_LETTER_KEY = "{ensayo:events}:dead"
_log = structlog.get_logger()

# A non-blocking XREADGROUP whose reply is packed into one string: "id\nkind\npayload\n...",
# kind "e" (the event's JSON), "d" (entry deleted while pending), "x" (no "e" field) or "n"
# (a payload holding a raw newline, which the packing cannot carry: read again natively). A
# thousand-entry reply parsed element by element costs more in Python than the rest of the
# batch; one bulk string splits in microseconds. Ensayo's event JSON never holds a raw newline.
_READ = """
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
                     'STREAMS', KEYS[1], ARGV[4])
if not r then return '' end
local out = {}
for _, entry in ipairs(r[1][2]) do
  local fields = entry[2]
  local kind, payload = 'x', ''
  if not fields then
    kind = 'd'
  else
    for i = 1, #fields, 2 do
      if fields[i] == 'e' then
        kind, payload = 'e', fields[i + 1]
        if string.find(payload, '\\n', 1, true) then kind, payload = 'n', '' end
      end
    end
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = kind
  out[#out + 1] = payload
end
return table.concat(out, '\\n')
"""
# XACK of a batch whose ids travel as one comma-separated argument (packing a thousand
# arguments costs the client more than the acknowledgement costs Redis).
_ACK = """
local ids = {}
for id in string.gmatch(ARGV[2], '[^,]+') do ids[#ids + 1] = id end
local acked = 0
for i = 1, #ids, 500 do
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids, i, math.min(i + 499, #ids)))
end
return acked
"""


class EventSink(Protocol):
    """Where consumed events go: ``decode`` reads one, ``write_rows`` commits a batch.

    A row is whatever the sink decodes an entry's event JSON into (the SQL store's own row
    tuple, so no Event object is built on the way to SQL); the consumer only carries it.
    """

    def decode(self, payload: bytes) -> Any:
        """The row of one entry's event JSON; KeyError, ValueError or TypeError if it is none."""
        ...

    def write_rows(self, rows: Sequence[Any]) -> None:
        """Store the rows in one transaction (idempotent per event_id).

        Raises DependencyUnavailable when the store is down, InvalidArgument when it refuses
        the data itself (retrying cannot help).
        """
        ...


Hook = Callable[[Sequence[str]], None]


def _no_hook(_ids: Sequence[str]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ConsumerHooks:
    """Called with the batch's entry ids at the two crash points tests exercise."""

    after_read: Hook = _no_hook
    after_commit: Hook = _no_hook


def default_consumer_name() -> str:
    """``host-pid``: unique per process, stable across nothing (a restart is a new consumer)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _decode_id(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _rows(messages: Any) -> list[tuple[str, bytes, bytes]]:
    """``(id, kind, payload)`` of natively parsed entries, as the Lua read packs them."""
    rows = []
    for raw_id, fields in messages:
        if not fields:
            rows.append((_decode_id(raw_id), b"d", b""))
        elif b"e" in fields:
            rows.append((_decode_id(raw_id), b"e", fields[b"e"]))
        else:
            rows.append((_decode_id(raw_id), b"x", b""))
    return rows


def _next_id(entry_id: str) -> str:
    """The smallest stream id after ``entry_id``."""
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def safe_trim_id(groups: Sequence[tuple[str, str | None]]) -> str | None:
    """The MINID below which every group is done, from ``(last_delivered, oldest_pending)``.

    An entry is still needed by a group while it is pending (delivered, not acknowledged)
    or not yet delivered (its id is above the group's last delivered id). None when there is
    no group (nobody has said what it needs, so nothing may go).
    """
    if not groups:
        return None
    needed = []
    for last_delivered, oldest_pending in groups:
        needed.append(oldest_pending if oldest_pending else _next_id(last_delivered))
    return min(needed, key=_id_key)


@dataclass
class _Stats:
    consumed: int = 0
    batches: int = 0
    reclaimed: int = 0
    dead_lettered: int = 0
    trimmed: int = 0


class StreamConsumer:
    """One member of the consumer group; call :meth:`step` in a loop (or use ConsumerWorker).

    ``claim_idle_ms`` is how long another consumer's entry must sit unacknowledged before
    this one takes it over (it must exceed the longest normal batch, or two consumers would
    work on one batch; that stays correct, only wasteful). ``trim_interval_s`` rate-limits
    trimming.
    """

    def __init__(
        self,
        client: redis.Redis,
        sink: EventSink,
        *,
        name: str | None = None,
        group: str = DEFAULT_GROUP,
        stream: str = STREAM_KEY,
        batch_size: int = 1000,
        block_ms: int = 200,
        claim_idle_ms: int = 60_000,
        claim_interval_s: float = 5.0,
        trim_interval_s: float = 0.2,
        hooks: ConsumerHooks | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._sink = sink
        self.name = name or default_consumer_name()
        self._group = group
        self._stream = stream
        self._batch = batch_size
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._claim_interval_s = claim_interval_s
        self._trim_interval_s = trim_interval_s
        self._hooks = hooks or ConsumerHooks()
        self._clock = clock
        self._own_pending = True  # a restart under the same name finishes its old entries
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_trim = 0.0
        self._group_ready = False
        self._script = client.register_script(_READ)
        self._ack = client.register_script(_ACK)
        self.stats = _Stats()

    def ensure_group(self) -> None:
        """Create the group at the stream's start (and the stream) unless it exists."""
        with redis_errors():
            try:
                self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    def step(self) -> int:
        """Process at most one batch: own pending, else reclaimed, else new entries.

        Returns the number of entries handled (0 when idle). Raises DependencyUnavailable when
        Redis or SQL is down; the batch then stays pending and is retried by the next step.
        """
        if not self._group_ready:
            self.ensure_group()
        entries = self._next_batch()
        if not entries:
            self._maybe_trim()
            return 0
        ids = [entry_id for entry_id, _ in entries]
        try:
            self._hooks.after_read(ids)
            batch: list[tuple[str, bytes, Any]] = []
            dead: list[tuple[str, bytes]] = []
            decode = self._sink.decode
            for entry_id, payload in entries:
                try:
                    batch.append((entry_id, payload, decode(payload)))
                except Exception:  # noqa: BLE001 - any entry that is no event (OverflowError and
                    # RecursionError included) goes to the dead letters, never blocks the group
                    dead.append((entry_id, payload))
            dead += self._write(batch)
            self._hooks.after_commit(ids)
            with redis_errors():
                if dead:
                    pipe = self._client.pipeline(transaction=False)
                    for entry_id, payload in dead:
                        pipe.xadd(DEAD_LETTER_KEY, {"e": payload, "id": entry_id})
                    pipe.execute()
                # Not in the pipeline: a pipeline holding a script asks SCRIPT EXISTS first.
                self._ack(keys=[self._stream], args=[self._group, ",".join(ids)])
        except BaseException:
            self._own_pending = True  # whatever failed, re-read our own entries next time
            raise
        if dead:
            _log.error("events_dead_lettered", count=len(dead), stream=DEAD_LETTER_KEY)
        self.stats.consumed += len(entries) - len(dead)
        self.stats.dead_lettered += len(dead)
        self.stats.batches += 1
        self._maybe_trim()
        return len(entries)

    def _write(self, batch: list[tuple[str, bytes, Any]]) -> list[tuple[str, bytes]]:
        """Commit the batch; if the database rejects it, isolate the events it rejects.

        An outage (DependencyUnavailable) propagates: the batch stays pending. A sink that
        refuses the data (InvalidArgument) gets the batch again event by event, and the events
        it still refuses go to the dead-letter stream instead of blocking the group forever.
        """
        if not batch:
            return []
        try:
            self._sink.write_rows([row for _, _, row in batch])
        except InvalidArgument as exc:
            _log.error("event_batch_rejected", size=len(batch), error=str(exc))
        else:
            return []
        rejected = []
        for entry_id, payload, row in batch:
            try:
                self._sink.write_rows([row])
            except InvalidArgument:
                rejected.append((entry_id, payload))
        return rejected

    def drain(self, max_steps: int = 1_000_000) -> int:
        """Step until a step finds nothing (tests and benchmarks); entries handled."""
        total = 0
        for _ in range(max_steps):
            handled = self.step()
            if not handled:
                return total
            total += handled
        return total

    def _read(self, start: str, block: int | None) -> list[tuple[str, bytes]]:
        """Entries from ``start`` (``0``: own pending, ``>``: new), packed by the Lua read.

        When there is nothing new and ``block`` is set, waits up to ``block`` ms with a
        plain blocking XREADGROUP (scripts cannot block).
        """
        try:
            with redis_errors():
                packed = self._script(
                    keys=[self._stream], args=[self._group, self.name, self._batch, start]
                )
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.ensure_group()  # the stream or group was deleted (FLUSHALL): start again
            return []
        if packed:
            parts = bytes(packed).split(b"\n")
            ids = [raw.decode() for raw in parts[0::3]]
            kinds = parts[1::3]
            if kinds.count(b"e") == len(kinds):  # the usual batch: every entry holds an event
                return list(zip(ids, parts[2::3], strict=True))
            return self._entries(list(zip(ids, kinds, parts[2::3], strict=True)))
        if block is None:
            return []
        reply: Any
        with redis_errors():
            reply = self._client.xreadgroup(
                self._group, self.name, {self._stream: start}, count=self._batch, block=block
            )
        if not reply:
            return []
        # RESP2 answers [[stream, messages]]; RESP3 answers {stream: [messages]}.
        messages = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return self._entries(_rows(messages))

    def _entries(self, rows: Sequence[tuple[str, bytes, bytes]]) -> list[tuple[str, bytes]]:
        """Entries to process; entries deleted while pending are acknowledged right away.

        A payload the packed read could not carry ("n") is read again with XRANGE.
        """
        out = []
        deleted = []
        for entry_id, kind, payload in rows:
            if kind == b"d":
                deleted.append(entry_id)
            elif kind == b"n":
                out.append((entry_id, self._payload(entry_id)))
            else:  # "x" (no event field) keeps an empty payload and goes to the dead letters
                out.append((entry_id, payload))
        if deleted:
            with redis_errors():
                self._client.xack(self._stream, self._group, *deleted)
        return out

    def _payload(self, entry_id: str) -> bytes:
        """The ``e`` field of one entry, read natively (empty if it was deleted meanwhile)."""
        with redis_errors():
            found = self._client.xrange(self._stream, entry_id, entry_id)
        fields = found[0][1] if found else None
        payload = fields.get(b"e", b"") if fields else b""
        return payload if isinstance(payload, bytes) else payload.encode()

    def _next_batch(self) -> list[tuple[str, bytes]]:
        if self._own_pending:
            entries = self._read("0", None)
            if entries:
                return entries
            self._own_pending = False
        now = self._clock()
        if now >= self._next_claim:
            entries = self._claim()
            if entries:
                return entries
            self._next_claim = now + self._claim_interval_s
        return self._read(">", self._block_ms)

    def _claim(self) -> list[tuple[str, bytes]]:
        """Take over entries idle longer than ``claim_idle_ms`` (a dead consumer's)."""
        with redis_errors():
            reply = self._client.xautoclaim(
                self._stream,
                self._group,
                self.name,
                min_idle_time=self._claim_idle_ms,
                start_id=self._claim_cursor,
                count=self._batch,
            )
        parts: Any = reply
        cursor, messages = _decode_id(parts[0]), parts[1]
        self._claim_cursor = cursor
        entries = self._entries(_rows(messages))
        if entries:
            self.stats.reclaimed += len(entries)
            _log.warning("events_reclaimed", count=len(entries), consumer=self.name)
        return entries

    def _maybe_trim(self) -> None:
        now = self._clock()
        if now < self._next_trim:
            return
        self._next_trim = now + self._trim_interval_s
        self.trim()

    def trim(self) -> int:
        """Drop entries every group of the stream is done with; returns entries removed."""
        with redis_errors():
            try:
                groups = self._client.xinfo_groups(self._stream)
            except redis.ResponseError:  # no stream (yet, or flushed): nothing to trim
                return 0
            needs: list[tuple[str, str | None]] = []
            for info in groups:
                name = _decode_id(info["name"])
                last = _decode_id(info["last-delivered-id"])
                oldest = None
                if int(info["pending"]):
                    summary = self._client.xpending(self._stream, name)
                    oldest = _decode_id(summary["min"]) if summary["min"] else None
                needs.append((last, oldest))
            minid = safe_trim_id(needs)
            if minid is None:
                return 0
            removed = int(
                self._client.xtrim(self._stream, minid=minid, approximate=True, limit=TRIM_LIMIT)
            )
        self.stats.trimmed += removed
        return removed


class ConsumerWorker:
    """Runs a StreamConsumer in a daemon thread until ``stop``; backs off while deps are down."""

    def __init__(self, consumer: StreamConsumer, *, max_backoff_s: float = 5.0) -> None:
        self.consumer = consumer
        self._max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def start(self) -> None:
        """Start consuming in the background."""
        self._thread = threading.Thread(target=self._run, name="event-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the current batch and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.consumer.step()
                if self.failures:
                    _log.info("event_consumer_recovered", after_failures=self.failures)
                self.failures = 0
            except DependencyUnavailable as exc:
                self.failures += 1
                if self.failures == 1:
                    _log.warning("event_consumer_unavailable", error=str(exc))
                self._stop.wait(min(0.1 * 2 ** min(self.failures, 10), self._max_backoff_s))
            except Exception:  # noqa: BLE001  (a bug must not stop intake: log, back off, retry)
                self.failures += 1
                _log.exception("event_consumer_failed")
                self._stop.wait(self._max_backoff_s)
