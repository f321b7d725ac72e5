"""The event log on a Redis Stream: de-duplicated append in one Lua script per batch.

A per-event marker key (``SET NX`` with a TTL) and the ``XADD`` happen atomically, so a retried
event is appended once however many replicas receive it; SQL's primary key on event_id is the
final guarantee downstream. All keys share the ``{ensayo:events}`` hash tag (Redis Cluster).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from ensayo.catalog import codec
from ensayo.events.model import Event
from ensayo.state.client import redis_errors

__all__ = ["SEEN_TTL_S", "STREAM_KEY", "RedisEventLog", "decode_entry", "seen_key"]

STREAM_KEY = "{ensayo:events}:stream"
SEEN_TTL_S = 7 * 24 * 3600
_BATCH = 500

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


def decode_entry(fields: dict[bytes, bytes]) -> Event:
    """The event stored in one stream entry."""
    return codec.loads(Event, fields[b"e"])


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
                    args += [event.event_id, codec.dumps(event)]
                result = self._script(keys=[self._stream], args=args)
                flags += [bool(x) for x in result]
        return flags
