"""The event log on a Redis Stream: de-duplicated append in one Lua script per batch.

A per-event marker key (``SET NX`` with a TTL) and the ``XADD`` happen atomically, so a retried
event is appended once however many replicas receive it; SQL's primary key on event_id is the
final guarantee downstream. All keys share the ``{ensayo:events}`` hash tag (Redis Cluster).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import redis

from ensayo.events.model import Event
from ensayo.state.client import LuaScript, bulk, redis_errors

__all__ = [
    "SEEN_TTL_S",
    "STREAM_KEY",
    "RedisEventLog",
    "decode_entry",
    "encode_event",
    "seen_key",
]

STREAM_KEY = "{ensayo:events}:stream"
SEEN_TTL_S = 7 * 24 * 3600
_BATCH = 500
_DECODER = json.JSONDecoder()  # raw_decode: entries have no surrounding whitespace to skip
_PROPS = json.JSONEncoder(separators=(",", ":"), sort_keys=True, allow_nan=False)
# json.dumps' own escaping of a string (ensure_ascii), quotes included; TypeError otherwise.
_string: Callable[[str], str] = json.encoder.encode_basestring_ascii

# KEYS[1] = stream; ARGV = ttl, then pairs (event_id, payload). Returns 1/0 per event. Only
# for a batch whose event ids hold a newline (the packed script below cannot split them).
_APPEND = """
local out = {}
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local seen = '{ensayo:events}:seen:' .. ARGV[i]
  if redis.call('SET', seen, '1', 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 1])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
# The same with the batch packed in three arguments: ttl, the event ids and the payloads,
# each list joined by newlines (event JSON never holds a raw newline; ids are checked), and
# the answer as one string of "1" (new) and "0" (seen) per event. A thousand arguments and a
# thousand-element reply cost the client more than the whole script costs Redis.
_APPEND_PACKED = """
local ttl = ARGV[1]
local ids, payloads = ARGV[2], ARGV[3]
local call, find, sub = redis.call, string.find, string.sub
local out = {}
local i, p = 1, 1
while true do
  local i_end = find(ids, '\\n', i, true)
  local p_end = find(payloads, '\\n', p, true)
  if (i_end == nil) ~= (p_end == nil) then
    return redis.error_reply('ERR ids and payloads differ in number')
  end
  local id = sub(ids, i, (i_end or 0) - 1)
  if call('SET', '{ensayo:events}:seen:' .. id, '1', 'NX', 'EX', ttl) then
    call('XADD', KEYS[1], '*', 'e', sub(payloads, p, (p_end or 0) - 1))
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
  if not i_end then break end
  i, p = i_end + 1, p_end + 1
end
return table.concat(out)
"""


def seen_key(event_id: str) -> str:
    """The de-duplication marker of an event id."""
    return "{ensayo:events}:seen:" + event_id


def _encode_slow(e: Event) -> str:
    return json.dumps(
        {
            "allocation_version": e.allocation_version,
            "decision_id": e.decision_id,
            "event_id": e.event_id,
            "experiment_key": e.experiment_key,
            "experiment_version": e.experiment_version,
            "name": e.name,
            "probability": e.probability,
            "properties": e.properties,
            "time": e.time.isoformat(),
            "unit_id": e.unit_id,
            "value": e.value,
            "variant_key": e.variant_key,
        },
        separators=(",", ":"),
        sort_keys=True,
        allow_nan=False,
    )


def encode_event(e: Event) -> str:
    """The stream entry's JSON of an event: the same text as ``codec.dumps(e)``, built directly.

    Every tracked event goes through here, so it writes the key-sorted text itself, with
    ``json``'s own string escaping and number spelling, instead of reflecting over the
    dataclass or sorting a dict (several times faster); fields of unexpected types, and
    non-finite numbers (which raise ValueError), take ``json.dumps``. A unit test pins the
    equality with the codec.
    """
    return _encode(e, e.time.isoformat())


def _encode(e: Event, iso_time: str) -> str:
    """:func:`encode_event` with ``e.time.isoformat()`` given (a batch shares most times)."""
    value, probability = e.value, e.probability
    version, allocation = e.experiment_version, e.allocation_version
    properties = e.properties
    if not (
        type(value) is float
        and type(probability) is float
        and type(version) is int
        and type(allocation) is int
        and value - value == 0.0  # finite (inf - inf and nan - nan are nan)
        and probability - probability == 0.0
    ):
        return _encode_slow(e)
    try:
        props = "{}" if type(properties) is dict and not properties else _PROPS.encode(properties)
        return (
            f'{{"allocation_version":{allocation},"decision_id":{_string(e.decision_id)},'
            f'"event_id":{_string(e.event_id)},"experiment_key":{_string(e.experiment_key)},'
            f'"experiment_version":{version},"name":{_string(e.name)},'
            f'"probability":{probability!r},"properties":{props},'
            f'"time":"{iso_time}","unit_id":{_string(e.unit_id)},'
            f'"value":{value!r},"variant_key":{_string(e.variant_key)}}}'
        )
    except TypeError:  # a field that is no string, or a key of properties that is none
        return _encode_slow(e)


def decode_entry(fields: dict[bytes, bytes]) -> Event:
    """The event stored in one stream entry (field ``e``, written by :func:`encode_event`).

    Raises KeyError, ValueError or TypeError for an entry that is not such an event.
    """
    data: dict[str, Any] = _DECODER.raw_decode(fields[b"e"].decode())[0]
    if type(data) is not dict:
        raise TypeError("an event is a JSON object")
    properties = data.get("properties") or {}
    if not isinstance(properties, dict):
        raise TypeError("properties must be an object")
    return Event(
        event_id=str(data["event_id"]),
        unit_id=str(data["unit_id"]),
        name=str(data["name"]),
        time=datetime.fromisoformat(data["time"]),
        value=float(data.get("value", 1.0)),
        experiment_key=str(data.get("experiment_key") or ""),
        experiment_version=int(data.get("experiment_version") or 0),
        variant_key=str(data.get("variant_key") or ""),
        probability=float(data.get("probability") or 0.0),
        decision_id=str(data.get("decision_id") or ""),
        properties=properties,
        allocation_version=int(data.get("allocation_version") or 0),
    )


class RedisEventLog:
    """``EventLog`` on a Redis Stream (AOF or replicas make it durable in production)."""

    def __init__(self, client: redis.Redis, stream: str = STREAM_KEY) -> None:
        self._client = client
        self._stream = stream
        self._head = bulk(b"1") + bulk(stream.encode()) + bulk(b"%d" % SEEN_TTL_S)  # keys, ttl
        self._script = LuaScript(client, _APPEND)
        self._packed = LuaScript(client, _APPEND_PACKED)

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Append new events; per event, whether it was new."""
        flags: list[bool] = []
        with redis_errors():
            for start in range(0, len(events), _BATCH):
                chunk = events[start : start + _BATCH]
                ids = "\n".join([event.event_id for event in chunk])
                if ids.count("\n") != len(chunk) - 1:  # an id holds a newline: one by one
                    flags += self._append_each(chunk)
                    continue
                payloads = []
                when, text = None, ""
                for event in chunk:
                    if event.time is not when:
                        when, text = event.time, event.time.isoformat()
                    payloads.append(_encode(event, text))
                reply = self._packed.call(
                    5,
                    self._head + bulk(ids.encode()) + bulk("\n".join(payloads).encode()),
                )
                answer: bytes = reply
                if len(answer) != len(chunk):
                    raise RuntimeError(f"append answered {len(answer)} flags for {len(chunk)}")
                flags += [flag == 49 for flag in answer]  # 49: b"1"
        return flags

    def _append_each(self, chunk: Sequence[Event]) -> list[bool]:
        """Append with one argument pair per event (ids holding a newline)."""
        args = [self._head]
        for event in chunk:
            args += [bulk(event.event_id.encode()), bulk(encode_event(event).encode())]
        return [bool(x) for x in self._script.call(3 + 2 * len(chunk), b"".join(args))]
