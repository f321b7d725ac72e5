"""Redis connections and errors, and a lean way to run the hot paths' Lua scripts.

``connect`` fails fast, ``redis_errors`` is the one place Redis errors become Ensayo errors.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import redis
from redis.exceptions import NoScriptError

from ensayo.errors import DependencyUnavailable

__all__ = ["LuaScript", "bulk", "bulks", "connect", "redis_errors"]


def connect(url: str, *, timeout_s: float = 1.0) -> redis.Redis:
    """A client for ``url`` that fails fast (a dead Redis must not stall the hot path)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry_on_timeout=False,
    )


_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    # Refusals that pass: out of memory, a replica that became read-only in a failover, ...
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


@contextmanager
def redis_errors() -> Iterator[None]:
    """Turn Redis failures that a retry may outlive into DependencyUnavailable (UNAVAILABLE)."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise DependencyUnavailable("redis", str(exc) or type(exc).__name__) from exc


class _Connection(Protocol):
    """The part of redis-py's (untyped) connection API that :class:`LuaScript` uses."""

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...
    def send_command(self, *args: str) -> None: ...
    def read_response(self, disable_decoding: bool = False) -> Any: ...
    def disconnect(self) -> None: ...
    def should_reconnect(self) -> bool: ...
    @property
    def is_connected(self) -> bool: ...


def bulk(value: bytes) -> bytes:
    """``value`` as one RESP bulk string: an argument of :meth:`LuaScript.call`."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def bulks(values: Iterable[bytes]) -> bytes:
    """Each value as a RESP bulk string, concatenated."""
    return b"".join([b"$%d\r\n%s\r\n" % (len(value), value) for value in values])


class LuaScript:
    """A Lua script run by ``EVALSHA`` on connections this object keeps to itself.

    ``Script.__call__`` costs a Decide more client CPU than Redis spends running the script:
    it encodes every argument, checks a pooled connection out with a non-blocking read and
    back, and records metrics on each call. Here the caller hands over arguments already in
    RESP form (:func:`bulk`, so fixed ones are encoded once) and one command is one
    ``sendall`` and one reply read, on a connection taken from a private stack.

    Connections come from the client's pool, which still owns them: ``client.close()``
    disconnects them and a forked child starts afresh. Nobody else uses them, and redis-py
    disconnects on every error that can leave a reply unread, so the pool's per-checkout
    "unread data?" probe is needed only to notice a connection the server closed while it
    sat idle (a restart, an idle timeout): that command is sent once more on a new
    connection, and only when the old one answered nothing at all. ``NOSCRIPT`` (the script
    cache was flushed, or Redis restarted) loads the script and runs the command again.
    Replies are never decoded (bulk strings come as bytes whatever the client's
    ``decode_responses``); connection errors reach the caller as redis-py's, for
    :func:`redis_errors`.
    """

    def __init__(self, client: redis.Redis, script: str) -> None:
        self._pool = client.connection_pool
        self._script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis' script id
        self._head = b"$7\r\nEVALSHA\r\n" + bulk(self.sha.encode())
        self._idle: deque[_Connection] = deque()
        self._pid = os.getpid()

    def call(self, count: int, args: bytes) -> Any:
        """Run the script once; ``args`` is ``count`` bulk strings: numkeys, keys, then ARGV."""
        return self.call_many([(count, args)])[0]

    def call_many(self, commands: Sequence[tuple[int, bytes]]) -> list[Any]:
        """Run the script once per ``(count, args)``, pipelined in one round trip.

        Raises the first error reply (after reading them all), or the connection's error.
        """
        frames = [b"*%d\r\n%s%s" % (count + 2, self._head, args) for count, args in commands]
        conn, reused = self._take()
        try:
            replies = self._exchange(conn, frames, reused)
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                conn.send_command("SCRIPT", "LOAD", self._script)
                conn.read_response()
                again = self._exchange(conn, [frames[i] for i in missing], reused=False)
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except BaseException:
            conn.disconnect()  # replies may be left unread: never hand such a socket out
            raise
        finally:
            self._give(conn)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    @staticmethod
    def _exchange(conn: _Connection, frames: list[bytes], reused: bool) -> list[Any]:
        """Send the frames at once and read a reply each (error replies returned, not raised).

        On a ``reused`` connection that fails before any reply (the server closed it while
        idle, so it ran nothing), the frames are sent once more on a fresh connection.
        """
        payload = b"".join(frames)
        while True:
            replies: list[Any] = []
            try:
                conn.send_packed_command([payload])
                for _ in frames:
                    try:
                        replies.append(conn.read_response(disable_decoding=True))
                    except redis.ResponseError as exc:  # read in full: the socket stays clean
                        replies.append(exc)
            except redis.ConnectionError as exc:
                if not reused or replies or isinstance(exc, redis.BusyLoadingError):
                    raise
                reused = False  # redis-py disconnected it; the next send connects anew
                continue
            return replies

    def _take(self) -> tuple[_Connection, bool]:
        """A connection of ours, and whether it holds a socket opened earlier (maybe stale)."""
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._idle = deque()
            self._pid = os.getpid()
        try:
            conn = self._idle.pop()
        except IndexError:
            return self._pool.get_connection(), False
        return conn, conn.is_connected

    def _give(self, conn: _Connection) -> None:
        if conn.should_reconnect():  # a maintenance notification asked for a new socket
            conn.disconnect()
        self._idle.append(conn)
