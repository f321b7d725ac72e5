"""Redis connections with short timeouts, and the one place Redis errors become Ensayo errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from ensayo.errors import DependencyUnavailable

__all__ = ["connect", "redis_errors"]


def connect(url: str, *, timeout_s: float = 1.0) -> redis.Redis:
    """A client for ``url`` that fails fast (a dead Redis must not stall the hot path)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry_on_timeout=False,
    )


@contextmanager
def redis_errors() -> Iterator[None]:
    """Turn connection-level Redis failures into DependencyUnavailable."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
        raise DependencyUnavailable("redis", str(exc) or type(exc).__name__) from exc
