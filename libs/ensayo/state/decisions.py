"""Delivered decisions on Redis, kept for ``decision_ttl_s`` so outcomes can be joined.

One string per decision holding the record as JSON, ``ensayo:decision:{<tag>}:<decision_id>``;
it expires on its own, after which ReportOutcome answers NOT_FOUND. A decision id is the
unit's 16-hex-digit hash tag followed by 16 random hex digits, so the record shares the
unit's Redis Cluster slot and the contact script can write it with the reservation.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

import redis

from ensayo.catalog import codec
from ensayo.decisioning.model import DecisionRecord
from ensayo.state.client import redis_errors
from ensayo.state.contacts import decision_key, encode_record, unit_tag

__all__ = ["RedisDecisionStore", "decision_key", "new_decision_id"]


def new_decision_id(unit_id: str) -> str:
    """A fresh decision id for ``unit_id``: its hash tag, then 64 random bits (32 hex)."""
    return unit_tag(unit_id) + secrets.token_hex(8)


class RedisDecisionStore:
    """``DecisionStore`` on Redis: pipelined ``SET … EX`` writes, one ``GET`` per lookup."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def save(self, records: Sequence[DecisionRecord], ttl_s: float) -> None:
        """Store every record with a TTL (one round trip)."""
        ttl = max(1, math.ceil(ttl_s))
        with redis_errors():
            if len(records) == 1:
                self._client.set(
                    decision_key(records[0].decision_id), encode_record(records[0]), ex=ttl
                )
                return
            pipe = self._client.pipeline(transaction=False)
            for record in records:
                pipe.set(decision_key(record.decision_id), encode_record(record), ex=ttl)
            pipe.execute()

    def get(self, decision_id: str) -> DecisionRecord | None:
        """The record, or None when unknown or expired."""
        with redis_errors():
            raw = self._client.get(decision_key(decision_id))
        return codec.loads(DecisionRecord, raw) if raw else None
