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
import math
from collections.abc import Sequence

import redis

from ensayo.catalog import codec
from ensayo.decisioning.contacts import ContactReply, ContactRequest, ContactState, member
from ensayo.state.client import redis_errors

__all__ = ["TAG_LENGTH", "RedisContactStore", "contacts_key", "decision_key", "unit_tag"]

# KEYS[1] = the unit's sorted set. ARGV: now_ms, retention_ms, max_actions, reserve (1/0),
# expected capped flags ('0'/'1' per watched action), expected slots, policy count, then per
# policy channel, action, window_ms, max_contacts; watched count and keys; chosen count and
# members; then the decision record (JSON, or '') and its TTL in seconds, stored at KEYS[2]
# with the reservation. Returns {matched, capped flags, slots, count per policy...}.
_SETTLE = """
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
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
local since = '(' .. (now - retention)
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES')
for i = 1, #entries, 2 do
  local ch, act = string.match(entries[i], '^[^\\031]*\\031([^\\031]*)\\031(.*)$')
  local t = tonumber(entries[i + 1])
  for p = 1, np do
    if t > now - pwin[p] and (pch[p] == '' or pch[p] == ch)
        and (pact[p] == '' or pact[p] == act) then
      counts[p] = counts[p] + 1
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
    for i = 1, nc do redis.call('ZADD', KEYS[1], now, ARGV[pos + i]) end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - retention)
    redis.call('PEXPIRE', KEYS[1], retention)
  end
  local record = ARGV[pos + nc + 1]
  if record ~= '' then
    redis.call('SET', KEYS[2], record, 'EX', tonumber(ARGV[pos + nc + 2]))
  end
end
local out = {matched and 1 or 0, state, slots}
for p = 1, np do out[#out + 1] = counts[p] end
return out
"""


TAG_LENGTH = 16
"""Hex digits of a unit's hash tag (a 64-bit BLAKE2b digest of its id)."""


def unit_tag(unit_id: str) -> str:
    """The unit's hash tag: keys never hold the id in clear, and share the unit's slot."""
    return hashlib.blake2b(unit_id.encode(), digest_size=8, person=b"ensayo.unit").hexdigest()


def contacts_key(unit_id: str) -> str:
    """The sorted set of a unit's counted deliveries, hash-tagged by the unit."""
    return "ensayo:contacts:{" + unit_tag(unit_id) + "}"


def decision_key(decision_id: str) -> str:
    """A decision's record, in the slot of the tag its id starts with (its unit's)."""
    return "ensayo:decision:{" + decision_id[:TAG_LENGTH] + "}:" + decision_id


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _args(request: ContactRequest) -> list[str | int]:
    args: list[str | int] = [
        math.floor(request.now.timestamp() * 1000),
        _ms(request.retention_s),
        request.max_actions,
        1 if request.reserve else 0,
        "".join("1" if c else "0" for c in request.expected.capped),
        request.expected.slots,
        len(request.policies),
    ]
    for p in request.policies:
        args += [p.channel, p.action_key, _ms(p.window_s), p.max_contacts]
    args += [len(request.watched), *request.watched, len(request.chosen)]
    args += [member(request.decision_id, request.channel, key) for key in request.chosen]
    record = request.record
    args += [
        codec.dumps(record) if record is not None else "",
        max(1, math.ceil(request.record_ttl_s)),
    ]
    return args


def _keys(request: ContactRequest) -> list[str]:
    return [contacts_key(request.unit_id), decision_key(request.decision_id)]


def _reply(raw: list[object]) -> ContactReply:
    flags = raw[1].decode() if isinstance(raw[1], bytes) else str(raw[1])
    return ContactReply(
        state=ContactState(tuple(c == "1" for c in flags), int(raw[2])),  # type: ignore[call-overload]
        counts=tuple(int(c) for c in raw[3:]),  # type: ignore[call-overload]
        matched=bool(raw[0]),
    )


class RedisContactStore:
    """``ContactStore`` on Redis; one script call per unit, pipelined for a batch."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_SETTLE)

    def settle(self, requests: Sequence[ContactRequest]) -> list[ContactReply]:
        """Check and (when the expected state holds) reserve, atomically per unit."""
        with redis_errors():
            if len(requests) == 1:  # the Decide path: one EVALSHA, no pipeline bookkeeping
                request = requests[0]
                raw = self._script(keys=_keys(request), args=_args(request))
                return [_reply(raw)]
            pipe = self._client.pipeline(transaction=False)
            for request in requests:
                self._script(keys=_keys(request), args=_args(request), client=pipe)
            return [_reply(raw) for raw in pipe.execute()]
