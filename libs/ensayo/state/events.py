"""The event log on a Redis Stream: de-duplicated append in one Lua script per batch.

A per-event marker key (``SET NX`` with a TTL) and the ``XADD`` happen atomically, so a retried
event is appended once however many replicas receive it; SQL's primary key on event_id is the
final guarantee downstream. All keys share the ``{ensayo:events}`` hash tag (Redis Cluster).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis

from ensayo.events.model import Event
from ensayo.state.client import redis_errors

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

# KEYS[1] = stream; ARGV = ttl, then pairs (event_id, payload). Returns 1/0 per event.
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


def seen_key(event_id: str) -> str:
    """The de-duplication marker of an event id."""
    return "{ensayo:events}:seen:" + event_id


def encode_event(e: Event) -> str:
    """The stream entry's JSON of an event: the same text as ``codec.dumps(e)``, built directly.

    Every tracked event goes through here, so it spells the fields out instead of reflecting
    over the dataclass (about ten times faster); a unit test pins the equality with the codec.
    """
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


def decode_entry(fields: dict[bytes, bytes]) -> Event:
    """The event stored in one stream entry (field ``e``, written by :func:`encode_event`).

    Raises KeyError, ValueError or TypeError for an entry that is not such an event.
    """
    data: dict[str, Any] = _DECODER.raw_decode(fields[b"e"].decode())[0]
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
        self._script = client.register_script(_APPEND)

    def append(self, events: Sequence[Event]) -> list[bool]:
        """Append new events; per event, whether it was new."""
        flags: list[bool] = []
        with redis_errors():
            for start in range(0, len(events), _BATCH):
                chunk = events[start : start + _BATCH]
                args: list[str | int] = [SEEN_TTL_S]
                for event in chunk:
                    args += [event.event_id, encode_event(event)]
                result = self._script(keys=[self._stream], args=args)
                flags += [bool(x) for x in result]
        return flags
