"""Delivered decisions on Redis, kept for ``decision_ttl_s`` so outcomes can be joined.

One string per decision holding the record as JSON, ``ensayo:decision:{<tag>}:<decision_id>``;
it expires on its own, after which ReportOutcome answers NOT_FOUND. A decision id is the
unit's 16-hex-digit hash tag followed by 16 random hex digits, so the record shares the
unit's Redis Cluster slot and the contact script can write it with the reservation.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence

import redis

from ensayo.catalog import codec
from ensayo.decisioning.model import DecisionRecord
from ensayo.state.client import redis_errors
from ensayo.state.contacts import decision_key, encode_record, unit_tag

__all__ = ["RedisDecisionStore", "decision_key", "new_decision_id"]


class _RandomHex:
    """16 random hex digits at a time from ``os.urandom``, read 4 KiB (256 ids) per call.

    ``os.urandom`` is a system call that releases the GIL, a hand-off to another handler
    thread in a busy server; one call per 256 decisions instead of one each. A forked child
    drops what it inherited, so it never hands out its parent's ids.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: list[str] = []

    def reset(self) -> None:
        self._lock = threading.Lock()  # the parent may have held it while forking
        self._ready = []

    def take(self) -> str:
        with self._lock:
            if not self._ready:
                pool = os.urandom(4096).hex()
                self._ready = [pool[i : i + 16] for i in range(0, len(pool), 16)]
            return self._ready.pop()


_random_hex = _RandomHex()
os.register_at_fork(after_in_child=_random_hex.reset)


def new_decision_id(unit_id: str) -> str:
    """A fresh decision id for ``unit_id``: its hash tag, then 64 random bits (16 hex)."""
    return unit_tag(unit_id) + _random_hex.take()


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
