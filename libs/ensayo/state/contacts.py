"""Contact counters on Redis: one sorted set per unit, checked and reserved in one Lua script.

Each delivery that a contact policy counts is a member ``decision, channel, action`` (joined
by the byte 0x1F) scored by its time in milliseconds. The script counts every relevant
policy's window, compares the unit's state with the one the decision assumed and, only if
they agree, records the chosen actions: two concurrent decisions can never both pass a cap.
The key is hash-tagged by a digest of the unit id (Redis Cluster); ``contacts_key`` lets
ForgetUnit find it. A delivered decision's record is written by the same script, into the
unit's slot (decision ids start with the unit's tag, see ``state.decisions``), so a record
exists exactly when its contacts were reserved, in one round trip.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence

import redis

from ensayo.catalog import codec
from ensayo.catalog.model import ContactPolicy
from ensayo.decisioning.contacts import ContactReply, ContactRequest, ContactState, member
from ensayo.decisioning.model import DecisionRecord
from ensayo.state.client import LuaScript, bulk, bulks, redis_errors

__all__ = [
    "TAG_LENGTH",
    "RedisContactStore",
    "contacts_key",
    "decision_key",
    "encode_record",
    "unit_tag",
]

# KEYS[1] = the unit's sorted set. ARGV: now_ms, retention_ms, max_actions, reserve (1/0),
# expected capped flags ('0'/'1' per watched action), expected slots, policy count, then per
# policy channel, action, window_ms, max_contacts; watched count and keys; chosen count and
# members; then the decision record (JSON, or '') and its TTL in seconds, stored at KEYS[2]
# with the reservation. Returns "matched,capped flags,slots,count per policy..." as one
# string (cheaper than a table for both sides). The whole set is read (it holds only the
# retention window and what aged out since the last reservation), so expired entries are
# seen, and removed only when there are some.
_SETTLE = """
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
local oldest = now - retention
local slots = tonumber(ARGV[3])
local reserve = ARGV[4] == '1'
local np = tonumber(ARGV[7])
local pos = 8
local pch, pact, pwin, pmax, counts = {}, {}, {}, {}, {}
for p = 1, np do
  pch[p], pact[p] = ARGV[pos], ARGV[pos + 1]
  pwin[p], pmax[p] = tonumber(ARGV[pos + 2]), tonumber(ARGV[pos + 3])
  counts[p] = 0
  pos = pos + 4
end
local nw = tonumber(ARGV[pos])
local watched = {}
for i = 1, nw do watched[i] = ARGV[pos + i] end
pos = pos + nw + 1
local nc = tonumber(ARGV[pos])
local find, sub = string.find, string.sub
local expired = false
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local t = tonumber(entries[i + 1])
  if t <= oldest then
    expired = true
  else
    local entry = entries[i]
    local a = find(entry, '\\031', 1, true)
    local b = a and find(entry, '\\031', a + 1, true)
    local ch, act
    if b then ch, act = sub(entry, a + 1, b - 1), sub(entry, b + 1) end
    for p = 1, np do
      if t > now - pwin[p] and (pch[p] == '' or pch[p] == ch)
          and (pact[p] == '' or pact[p] == act) then
        counts[p] = counts[p] + 1
      end
    end
  end
end
local capped = {}
for i = 1, nw do
  capped[i] = '0'
  for p = 1, np do
    if pact[p] == watched[i] and counts[p] >= pmax[p] then capped[i] = '1' end
  end
end
for p = 1, np do
  if pact[p] == '' then slots = math.min(slots, math.max(0, pmax[p] - counts[p])) end
end
local state = table.concat(capped)
local matched = state == ARGV[5] and slots == tonumber(ARGV[6])
if matched and reserve then
  if nc > 0 then
    local add = {}
    for i = 1, nc do add[2 * i - 1], add[2 * i] = now, ARGV[pos + i] end
    redis.call('ZADD', KEYS[1], unpack(add))
    if expired then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', oldest) end
    redis.call('PEXPIRE', KEYS[1], retention)
  end
  local record = ARGV[pos + nc + 1]
  if record ~= '' then
    redis.call('SET', KEYS[2], record, 'EX', tonumber(ARGV[pos + nc + 2]))
  end
end
local out = {matched and '1' or '0', state, slots}
for p = 1, np do out[#out + 1] = counts[p] end
return table.concat(out, ',')
"""


TAG_LENGTH = 16
"""Hex digits of a unit's hash tag (a 64-bit BLAKE2b digest of its id)."""

_CACHED_SHAPES = 64
"""Encoded (policies, watched) pairs a store keeps: one per channel of a snapshot or two."""

_string: Callable[[str], str] = json.encoder.encode_basestring_ascii  # json.dumps' escaping


def unit_tag(unit_id: str) -> str:
    """The unit's hash tag: keys never hold the id in clear, and share the unit's slot."""
    return hashlib.blake2b(unit_id.encode(), digest_size=8, person=b"ensayo.unit").hexdigest()


def contacts_key(unit_id: str) -> str:
    """The sorted set of a unit's counted deliveries, hash-tagged by the unit."""
    return "ensayo:contacts:{" + unit_tag(unit_id) + "}"


def decision_key(decision_id: str) -> str:
    """A decision's record, in the slot of the tag its id starts with (its unit's)."""
    return "ensayo:decision:{" + decision_id[:TAG_LENGTH] + "}:" + decision_id


def encode_record(record: DecisionRecord) -> str:
    """``codec.dumps(record)``'s exact text, written directly (a Decide stores one each).

    Reflecting over the dataclass costs more than the rest of building the script's
    arguments; unexpected field types and non-finite features (ValueError, as the codec)
    take ``codec.dumps``. A unit test pins the equality.
    """
    if type(record) is DecisionRecord:
        try:
            total = sum(record.features)
            if total - total == 0.0:  # finite: an inf or nan feature makes the sum inf or nan
                return (
                    f'{{"action_keys":[{",".join(map(_string, record.action_keys))}],'
                    f'"decision_id":{_string(record.decision_id)},'
                    f'"feature_spec":{_string(record.feature_spec)},'
                    f'"features":[{",".join(map(float.__repr__, record.features))}],'
                    f'"holdout_key":{_string(record.holdout_key)},'
                    f'"time":{_string(record.time.isoformat())},'
                    f'"unit_id":{_string(record.unit_id)}}}'
                )
        except (TypeError, AttributeError):  # a field of another type than declared
            pass
    return codec.dumps(record)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _shape(policies: Sequence[ContactPolicy], watched: Sequence[str]) -> tuple[int, bytes]:
    """The script's policy and watched-key arguments, as RESP bulk strings, and their count."""
    parts = [bulk(b"%d" % len(policies))]
    for p in policies:
        parts += [
            bulk(p.channel.encode()),
            bulk(p.action_key.encode()),
            bulk(b"%d" % _ms(p.window_s)),
            bulk(b"%d" % p.max_contacts),
        ]
    parts.append(bulk(b"%d" % len(watched)))
    parts += [bulk(key.encode()) for key in watched]
    return len(parts), b"".join(parts)


_NUMKEYS = bulk(b"2")


def _command(request: ContactRequest, shape: tuple[int, bytes]) -> tuple[int, bytes]:
    """The script's numkeys, keys and arguments for ``request`` (see ``_SETTLE``)."""
    decision_id, channel, chosen, record = (
        request.decision_id,
        request.channel,
        request.chosen,
        request.record,
    )
    head = bulks(
        [
            contacts_key(request.unit_id).encode(),
            decision_key(decision_id).encode(),
            b"%d" % math.floor(request.now.timestamp() * 1000),
            b"%d" % _ms(request.retention_s),
            b"%d" % request.max_actions,
            b"1" if request.reserve else b"0",
            "".join(["1" if c else "0" for c in request.expected.capped]).encode(),
            b"%d" % request.expected.slots,
        ]
    )
    tail = bulks(
        [
            b"%d" % len(chosen),
            *[member(decision_id, channel, key).encode() for key in chosen],
            encode_record(record).encode() if record is not None else b"",
            b"%d" % max(1, math.ceil(request.record_ttl_s)),
        ]
    )
    return 12 + shape[0] + len(chosen), b"".join((_NUMKEYS, head, shape[1], tail))


def _reply(raw: bytes) -> ContactReply:
    matched, flags, slots, *counts = raw.split(b",")
    return ContactReply(
        state=ContactState(tuple([c == 49 for c in flags]), int(slots)),  # 49: b"1"
        counts=tuple([int(c) for c in counts]),
        matched=matched == b"1",
    )


class RedisContactStore:
    """``ContactStore`` on Redis; one script call per unit, pipelined for a batch."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = LuaScript(client, _SETTLE)
        # (id(policies), id(watched)) -> (policies, watched, encoded): a snapshot hands every
        # request of a channel the same tuples; holding them keeps the ids from being reused.
        self._shapes: dict[
            tuple[int, int],
            tuple[Sequence[ContactPolicy], Sequence[str], tuple[int, bytes]],
        ] = {}

    def settle(self, requests: Sequence[ContactRequest]) -> list[ContactReply]:
        """Check and (when the expected state holds) reserve, atomically per unit."""
        commands = [_command(r, self._shape(r.policies, r.watched)) for r in requests]
        with redis_errors():
            return [_reply(raw) for raw in self._script.call_many(commands)]

    def _shape(
        self, policies: Sequence[ContactPolicy], watched: Sequence[str]
    ) -> tuple[int, bytes]:
        """:func:`_shape`, encoded once per snapshot's tuples."""
        cached = self._shapes.get((id(policies), id(watched)))
        if cached is not None and cached[0] is policies and cached[1] is watched:
            return cached[2]
        shape = _shape(policies, watched)
        if len(self._shapes) >= _CACHED_SHAPES:
            self._shapes.clear()
        self._shapes[(id(policies), id(watched))] = (policies, watched, shape)
        return shape
