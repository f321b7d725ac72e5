"""Decision model parameters on Redis, updated exactly once per outcome in one Lua script.

Encoding (portable: any language reads it): every action's parameters are a hash field
``a:<action_key>`` holding little-endian IEEE-754 float64 values, and field ``v`` is the
model's version (raised by every update).

- ``{ensayo:model}:beta``: ``[successes, failures]``, the (discounted) evidence; the prior
  is added by readers, so changing it needs no migration.
- ``{ensayo:model}:linear:<spec>``: ``[count, b (d), A⁻¹ (d x d, row-major)]`` of the linear
  model of one feature spec (``meta`` holds ``d``, the ridge and the layout as JSON).

The outcome marker ``{ensayo:model}:outcome:<event_id>`` (``SET NX`` with a TTL) and the
updates share the ``{ensayo:model}`` hash tag, so the script runs on Redis Cluster too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import redis

from ensayo.decisioning.learning import LinearParams, ModelParams, beta_reward
from ensayo.state.client import redis_errors

__all__ = ["BETA_KEY", "RedisModelStore", "linear_key", "outcome_key"]

BETA_KEY = "{ensayo:model}:beta"

# KEYS: marker, beta hash, linear hash. ARGV: ttl_s, field, beta reward in [0, 1], discount,
# reward, d (0: no linear update), ridge, meta JSON, then the d features.
# Sherman-Morrison: (A + x xᵀ)⁻¹ = A⁻¹ - (A⁻¹x)(A⁻¹x)ᵀ / (1 + xᵀA⁻¹x).
_APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
local field = ARGV[2]
local r = tonumber(ARGV[3])
local gamma = tonumber(ARGV[4])
local s, f = 0, 0
local raw = redis.call('HGET', KEYS[2], field)
if raw then s, f = struct.unpack('<dd', raw) end
redis.call('HSET', KEYS[2], field, struct.pack('<dd', gamma * s + r, gamma * f + (1 - r)))
redis.call('HINCRBY', KEYS[2], 'v', 1)
local d = tonumber(ARGV[6])
if d == 0 then return 1 end
local reward, ridge = tonumber(ARGV[5]), tonumber(ARGV[7])
local x = {}
for i = 1, d do x[i] = tonumber(ARGV[8 + i]) end
local row = '<' .. string.rep('d', d)
local count, b, A = 0, {}, {}
raw = redis.call('HGET', KEYS[3], field)
if raw and #raw == 8 * (1 + d + d * d) then
  local pos
  count, pos = struct.unpack('<d', raw)
  local values = {struct.unpack(row, raw, pos)}
  pos = values[d + 1]
  for i = 1, d do b[i] = values[i] end
  for i = 1, d do
    values = {struct.unpack(row, raw, pos)}
    pos = values[d + 1]
    A[i] = {}
    for j = 1, d do A[i][j] = values[j] end
  end
else
  for i = 1, d do
    b[i] = 0
    A[i] = {}
    for j = 1, d do A[i][j] = (i == j) and (1 / ridge) or 0 end
  end
end
local u, denom = {}, 1
for i = 1, d do
  local acc = 0
  for j = 1, d do acc = acc + A[i][j] * x[j] end
  u[i] = acc
  denom = denom + x[i] * acc
end
local parts = {struct.pack('<d', count + 1)}
for i = 1, d do b[i] = b[i] + reward * x[i] end
parts[2] = struct.pack(row, unpack(b))
for i = 1, d do
  for j = 1, d do A[i][j] = A[i][j] - u[i] * u[j] / denom end
  parts[#parts + 1] = struct.pack(row, unpack(A[i]))
end
redis.call('HSET', KEYS[3], field, table.concat(parts))
redis.call('HSETNX', KEYS[3], 'meta', ARGV[8])
redis.call('HINCRBY', KEYS[3], 'v', 1)
return 1
"""


def linear_key(feature_spec: str) -> str:
    """The hash of the linear model of one feature spec."""
    return "{ensayo:model}:linear:" + feature_spec


def outcome_key(event_id: str) -> str:
    """The marker that makes an outcome's event id count once."""
    return "{ensayo:model}:outcome:" + event_id


def _version(raw: bytes | None) -> int:
    return int(raw) if raw else 0


class RedisModelStore:
    """``ModelStore`` on Redis: cheap version reads, full loads only when a version moved."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._apply = client.register_script(_APPLY)

    def versions(self, feature_spec: str) -> tuple[int, int]:
        """The Beta model's version and that of the linear model of ``feature_spec``."""
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.hget(BETA_KEY, "v")
            pipe.hget(linear_key(feature_spec), "v")
            beta, linear = pipe.execute()
        return _version(beta), _version(linear)

    def load(self, feature_spec: str, n_features: int) -> ModelParams:
        """Every action's Beta evidence and linear parameters (``d = n_features``)."""
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(BETA_KEY)
            pipe.hgetall(linear_key(feature_spec))
            beta_raw, linear_raw = pipe.execute()
        beta: dict[str, tuple[float, float]] = {}
        for name, value in beta_raw.items():
            if name.startswith(b"a:") and len(value) == 16:
                s, f = np.frombuffer(value, dtype="<f8").tolist()
                beta[name[2:].decode()] = (s, f)
        d = n_features
        linear: dict[str, LinearParams] = {}
        for name, value in linear_raw.items():
            if name.startswith(b"a:") and len(value) == 8 * (1 + d + d * d):
                values = np.frombuffer(value, dtype="<f8").astype(np.float64)
                linear[name[2:].decode()] = LinearParams(
                    count=float(values[0]),
                    b=values[1 : 1 + d],
                    a_inv=values[1 + d :].reshape(d, d),
                )
        return ModelParams(
            beta_version=_version(beta_raw.get(b"v")),
            beta=beta,
            linear_version=_version(linear_raw.get(b"v")),
            linear=linear,
        )

    def apply_outcome(
        self,
        event_id: str,
        action_key: str,
        reward: float,
        *,
        features: Sequence[float],
        feature_spec: str,
        ridge: float,
        discount: float,
        ttl_s: float,
    ) -> bool:
        """Apply one reward unless ``event_id`` was seen (see ``ModelStore.apply_outcome``)."""
        d = len(features) if feature_spec else 0
        meta = json.dumps({"ridge": ridge, "d": d, "encoding": "f8le[count,b,a_inv]"})
        args: list[str | int | float] = [
            max(1, int(ttl_s)),
            "a:" + action_key,
            repr(beta_reward(reward)),
            repr(float(discount)),
            repr(float(reward)),
            d,
            repr(float(ridge)),
            meta,
            *(repr(float(v)) for v in features[:d]),
        ]
        keys = [outcome_key(event_id), BETA_KEY, linear_key(feature_spec or "none")]
        with redis_errors():
            return bool(self._apply(keys=keys, args=args))
