"""Bandit experiments' state on Redis: per-arm statistics, allocation versions, the lock.

Every key of an experiment carries its hash tag ``{exp:<key>}``, so each Lua script touches one
slot (Redis Cluster). Rewards are applied in Lua exactly once per (experiment, event id): a
``SET NX`` marker and the ``HINCRBYFLOAT`` updates happen atomically. Also the provider module
of the reward observer (``make_observer``, listed in ``ensayo.events.observers.PROVIDERS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from ensayo.assignment.bandit import Credit
from ensayo.assignment.model import BanditAllocation
from ensayo.assignment.ports import SnapshotReader
from ensayo.assignment.rewards import BanditRewards
from ensayo.bandits import ArmStats
from ensayo.catalog import codec
from ensayo.state.client import redis_errors
from ensayo.state.sticky import PIPELINE_CHUNK, RedisStickyStore

__all__ = [
    "SEEN_TTL_S",
    "RedisBanditState",
    "allocation_key",
    "history_key",
    "make_observer",
    "stats_key",
]

SEEN_TTL_S = 30 * 24 * 3600
"""How long a credited event id is remembered (a retry later than this would count again)."""

# KEYS: stats hash, per-unit totals hash, the event's marker. ARGV: arm, unit, value,
# conversion ('1' or '0'), marker ttl. Returns 1 when a sum changed.
_CREDIT = """
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[5])) then
  return 0
end
local arm = ARGV[1]
if ARGV[4] == '1' then
  if redis.call('HSETNX', KEYS[2], ARGV[2], '1') == 0 then
    return 0
  end
  redis.call('HINCRBY', KEYS[1], 'r:' .. arm, 1)
  redis.call('HINCRBYFLOAT', KEYS[1], 'sum:' .. arm, 1)
  redis.call('HINCRBYFLOAT', KEYS[1], 'sumsq:' .. arm, 1)
  return 1
end
local raw = redis.call('HGET', KEYS[2], ARGV[2])
local prev = 0
if raw then
  prev = tonumber(raw)
else
  redis.call('HINCRBY', KEYS[1], 'r:' .. arm, 1)
end
local total = prev + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], string.format('%.17g', total))
redis.call('HINCRBYFLOAT', KEYS[1], 'sum:' .. arm, ARGV[3])
local squares = string.format('%.17g', total * total - prev * prev)
redis.call('HINCRBYFLOAT', KEYS[1], 'sumsq:' .. arm, squares)
return 1
"""

# KEYS: allocation hash, history hash. ARGV: expected version (-1: none), version, body.
_PUBLISH = """
local current = redis.call('HGET', KEYS[1], 'version')
local held = -1
if current then held = tonumber(current) end
if held ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'body', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _tag(experiment_key: str) -> str:
    return "{exp:" + experiment_key + "}"


def stats_key(experiment_key: str) -> str:
    """Per-arm sufficient statistics (a hash).

    ``n:<arm>`` enrolled units, ``r:<arm>`` rewarded units, ``sum:<arm>`` and ``sumsq:<arm>``
    over the units' reward totals.
    """
    return _tag(experiment_key) + ":bandit:stats"


def allocation_key(experiment_key: str) -> str:
    """The published allocation: fields ``version`` and ``body`` (JSON)."""
    return _tag(experiment_key) + ":bandit:alloc"


def history_key(experiment_key: str) -> str:
    """Every published allocation by version (for analysis by allocation period)."""
    return _tag(experiment_key) + ":bandit:alloc:history"


def _units_key(experiment_key: str) -> str:
    return _tag(experiment_key) + ":bandit:units"


def _seen_key(experiment_key: str, event_id: str) -> str:
    return _tag(experiment_key) + ":bandit:seen:" + event_id


def _lock_key(name: str) -> str:
    return "ensayo:lock:" + name


class RedisBanditState:
    """``BanditStore`` on Redis; failures to reach it are ``DependencyUnavailable``."""

    def __init__(self, client: redis.Redis, seen_ttl_s: int = SEEN_TTL_S) -> None:
        self._client = client
        self._seen_ttl_s = seen_ttl_s
        self._credit = client.register_script(_CREDIT)
        self._publish = client.register_script(_PUBLISH)
        self._unlock = client.register_script(_UNLOCK)

    def allocations(self, experiment_keys: Sequence[str]) -> dict[str, BanditAllocation]:
        """The published allocation of each experiment that has one."""
        if not experiment_keys:
            return {}
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            for key in experiment_keys:
                pipe.hget(allocation_key(key), "body")
            bodies = pipe.execute()
        return {
            key: codec.loads(BanditAllocation, body)
            for key, body in zip(experiment_keys, bodies, strict=True)
            if body
        }

    def publish_allocation(self, allocation: BanditAllocation, expected_version: int) -> bool:
        """Compare-and-set on the version; True when stored."""
        key = allocation.experiment_key
        with redis_errors():
            done = self._publish(
                keys=[allocation_key(key), history_key(key)],
                args=[expected_version, allocation.version, codec.dumps(allocation)],
            )
        return bool(done)

    def history(self, experiment_key: str) -> dict[int, BanditAllocation]:
        """Every published allocation of an experiment, by version."""
        with redis_errors():
            raw: dict[bytes, bytes] = self._client.hgetall(history_key(experiment_key))  # type: ignore[assignment]
        return {int(v): codec.loads(BanditAllocation, body) for v, body in raw.items()}

    def arm_stats(self, experiment_key: str, variant_keys: Sequence[str]) -> list[ArmStats]:
        """Each arm's statistics; ``n`` is the larger of enrolled and rewarded units."""
        with redis_errors():
            raw: dict[bytes, bytes] = self._client.hgetall(stats_key(experiment_key))  # type: ignore[assignment]
        fields = {k.decode(): v for k, v in raw.items()}

        def number(name: str) -> float:
            value = fields.get(name)
            return float(value) if value is not None else 0.0

        arms: list[ArmStats] = []
        for arm in variant_keys:
            n = int(max(number(f"n:{arm}"), number(f"r:{arm}")))
            total, squares = number(f"sum:{arm}"), max(number(f"sumsq:{arm}"), 0.0)
            arms.append(ArmStats(n, total, squares) if n > 0 else ArmStats())
        return arms

    def record_enrollments(self, experiment_key: str, counts: Mapping[str, int]) -> None:
        """Add newly enrolled units per arm."""
        if not counts:
            return
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            for arm, count in counts.items():
                pipe.hincrby(stats_key(experiment_key), f"n:{arm}", count)
            pipe.execute()

    def credit(self, credits: Sequence[Credit]) -> int:
        """Apply rewards, each at most once per (experiment, event id); pipelined."""
        changed = 0
        with redis_errors():
            for lo in range(0, len(credits), PIPELINE_CHUNK):
                pipe = self._client.pipeline(transaction=False)
                for c in credits[lo : lo + PIPELINE_CHUNK]:
                    self._credit(
                        keys=[
                            stats_key(c.experiment_key),
                            _units_key(c.experiment_key),
                            _seen_key(c.experiment_key, c.event_id),
                        ],
                        args=[
                            c.variant_key,
                            c.unit_id,
                            repr(float(c.value)),
                            "1" if c.conversion else "0",
                            self._seen_ttl_s,
                        ],
                        client=pipe,
                    )
                changed += sum(int(r) for r in pipe.execute())
        return changed

    def try_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        """``SET NX PX``: True when this owner now holds the lock."""
        with redis_errors():
            return bool(
                self._client.set(_lock_key(name), owner, nx=True, px=max(int(ttl_s * 1000), 1))
            )

    def unlock(self, name: str, owner: str) -> None:
        """Release the lock if this owner still holds it."""
        with redis_errors():
            self._unlock(keys=[_lock_key(name)], args=[owner])


def make_observer(
    *, redis: redis.Redis, snapshots: SnapshotReader, **_context: Any
) -> BanditRewards:
    """The bandit reward observer for ``EventIntake`` (see ``ensayo.events.observers``)."""
    return BanditRewards(snapshots, RedisStickyStore(redis), RedisBanditState(redis))
