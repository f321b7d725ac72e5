"""Sticky assignments on Redis: one hash per unit, experiment key -> variant key.

The key ``{unit:<id>}:sticky`` carries the unit's hash tag, so every command touches one slot
(Redis Cluster). A Lua script reads and, where nothing is stored, stores in the same round
trip; batches pipeline one script call per unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis

from ensayo.state.client import redis_errors

__all__ = ["PIPELINE_CHUNK", "RedisStickyStore", "sticky_key"]

PIPELINE_CHUNK = 2000
"""Commands per pipeline round trip in batch calls."""

# KEYS[1] = the unit's hash; ARGV = pairs (experiment key, candidate variant key or '').
# Returns, per pair, the variant stored before the call or '' when none was (in which case a
# non-empty candidate is stored: first assignment wins, replicas cannot disagree).
_CLAIM = """
local out = {}
for i = 1, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  if stored then
    out[#out + 1] = stored
  else
    if ARGV[i + 1] ~= '' then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    end
    out[#out + 1] = ''
  end
end
return out
"""


def sticky_key(unit_id: str) -> str:
    """The Redis key of a unit's sticky assignments (hash-tagged by unit)."""
    return "{unit:" + unit_id + "}:sticky"


def _text(value: bytes | str | None) -> str | None:
    if value is None or value in (b"", ""):
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisStickyStore:
    """``StickyStore`` on Redis; every failure to reach it is ``DependencyUnavailable``."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._claim = client.register_script(_CLAIM)

    def claim(self, unit_id: str, candidates: Mapping[str, str]) -> dict[str, str]:
        """Per experiment, the variant stored before this call; stores absent candidates."""
        if not candidates:
            return {}
        keys = list(candidates)
        args: list[str] = []
        for key in keys:
            args += [key, candidates[key]]
        with redis_errors():
            result = self._claim(keys=[sticky_key(unit_id)], args=args)
        return {k: v for k, raw in zip(keys, result, strict=True) if (v := _text(raw)) is not None}

    def claim_many(
        self, experiment_key: str, unit_ids: Sequence[str], candidates: Sequence[str]
    ) -> list[str | None]:
        """``claim`` for many units of one experiment, pipelined in chunks."""
        out: list[str | None] = []
        with redis_errors():
            for lo in range(0, len(unit_ids), PIPELINE_CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for unit_id, want in zip(
                    unit_ids[lo : lo + PIPELINE_CHUNK],
                    candidates[lo : lo + PIPELINE_CHUNK],
                    strict=True,
                ):
                    self._claim(
                        keys=[sticky_key(unit_id)], args=[experiment_key, want], client=pipe
                    )
                out += [_text(r[0]) for r in pipe.execute()]
        return out

    def lookup_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, str]]:
        """Read-only: the stored variants of each (unit, experiment keys), pipelined."""
        out: list[dict[str, str]] = []
        with redis_errors():
            for lo in range(0, len(requests), PIPELINE_CHUNK):
                chunk = requests[lo : lo + PIPELINE_CHUNK]
                pipe = self._client.pipeline(transaction=False)
                for unit_id, keys in chunk:
                    pipe.hmget(sticky_key(unit_id), list(keys))
                for (_, keys), values in zip(chunk, pipe.execute(), strict=True):
                    out.append(
                        {
                            k: v
                            for k, raw in zip(keys, values, strict=True)
                            if (v := _text(raw)) is not None
                        }
                    )
        return out

    def replace(self, unit_id: str, experiment_key: str, variant_key: str) -> None:
        """Overwrite one stored variant."""
        with redis_errors():
            self._client.hset(sticky_key(unit_id), experiment_key, variant_key)

    def forget(self, unit_id: str) -> None:
        """Erase every sticky assignment of a unit."""
        with redis_errors():
            self._client.delete(sticky_key(unit_id))
