"""LuaScript and redis_errors on real Redis: replies, errors, NOSCRIPT, stale sockets, outages."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis

from ensayo.errors import DependencyUnavailable
from ensayo.events.model import DECISION, Event
from ensayo.events.shipper import EventShipper
from ensayo.state.client import LuaScript, bulk, bulks, connect, redis_errors
from ensayo.state.events import STREAM_KEY, RedisEventLog
from tests.conftest import RedisServer

# Counts its runs in KEYS[1] and answers "<runs>:<ARGV[1]>": a second run would show.
_COUNT = "local n = redis.call('INCR', KEYS[1]) return n .. ':' .. ARGV[1]"
_FAIL = "return redis.error_reply('ERR no such luck')"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _args(key: str, arg: bytes) -> tuple[int, bytes]:
    return 3, bulk(b"1") + bulks([key.encode(), arg])


def _client_ids(client: redis.Redis) -> list[str]:
    return [str(c["id"]) for c in client.client_list() if c["cmd"] != "client|list"]


class TestCalls:
    def test_replies_are_bytes_and_pipelined_calls_keep_their_order(self, redis_url: str) -> None:
        """Bulk replies come undecoded (even for decode_responses), one per command."""
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        script = LuaScript(client, _COUNT)
        assert script.call(*_args("n", b"a")) == b"1:a"
        replies = script.call_many([_args("n", b"b"), _args("m", b"c"), _args("n", b"d")])
        assert replies == [b"2:b", b"1:c", b"3:d"]
        client.close()

    def test_an_error_reply_is_raised_and_the_connection_stays_usable(
        self, redis_url: str
    ) -> None:
        client = connect(redis_url)
        failing, counting = LuaScript(client, _FAIL), LuaScript(client, _COUNT)
        with pytest.raises(redis.ResponseError, match="no such luck"):
            failing.call(1, bulk(b"0"))
        assert counting.call(*_args("n", b"x")) == b"1:x"
        with pytest.raises(redis.ResponseError, match="no such luck"):
            failing.call_many([(1, bulk(b"0")), (1, bulk(b"0"))])  # both replies read
        assert failing.call_many([]) == []

    def test_a_flushed_script_cache_loads_the_script_again(self, redis_url: str) -> None:
        """NOSCRIPT: the script is loaded and each command runs exactly once."""
        client = connect(redis_url)
        script = LuaScript(client, _COUNT)
        assert script.call(*_args("n", b"a")) == b"1:a"
        client.script_flush()
        assert script.call_many([_args("n", b"b"), _args("n", b"c")]) == [b"2:b", b"3:c"]
        assert client.script_exists(script.sha) == [True]


class TestStaleConnections:
    def test_a_connection_the_server_closed_is_replaced_and_runs_once(
        self, redis_url: str
    ) -> None:
        """CLIENT KILL (an idle timeout, a proxy) between calls: the call still succeeds."""
        client = connect(redis_url)
        script = LuaScript(client, _COUNT)
        assert script.call(*_args("n", b"a")) == b"1:a"
        admin = connect(redis_url)
        for client_id in _client_ids(admin):
            admin.client_kill_filter(_id=client_id)
        assert script.call(*_args("n", b"b")) == b"2:b"
        assert admin.get("n") == b"2"

    def test_a_restarted_redis_serves_the_next_call(self, own_redis: RedisServer) -> None:
        """Every connection died and the script cache is empty: both handled in one call."""
        client = connect(own_redis.url)
        script = LuaScript(client, _COUNT)
        assert script.call(*_args("n", b"a")) == b"1:a"
        own_redis.stop()
        with pytest.raises(DependencyUnavailable), redis_errors():
            script.call(*_args("n", b"b"))
        own_redis.start()
        assert script.call(*_args("n", b"c")) == b"1:c"  # a fresh Redis: no key n yet

    def test_a_timeout_is_not_sent_again(self, redis_url: str) -> None:
        """A command that timed out on a reused connection may have run: never repeated."""
        slow = (  # counts its runs in KEYS[1], then stays busy for ARGV[1] microseconds
            "redis.call('INCR', KEYS[1]) local t = redis.call('TIME') "
            "local stop = t[1] * 1e6 + t[2] + tonumber(ARGV[1]) "
            "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= stop return 1"
        )
        client = connect(redis_url, timeout_s=0.1)
        script = LuaScript(client, slow)
        assert script.call(*_args("n", b"0")) == 1  # loaded, and a connection to reuse
        with pytest.raises(redis.TimeoutError):
            script.call(*_args("n", b"300000"))
        time.sleep(0.8)  # a repeat, queued behind the first run, would be done by now
        assert connect(redis_url, timeout_s=2.0).get("n") == b"2"


class TestWriteRefusals:
    """A Redis that answers but refuses writes (out of memory, a read-only replica after a
    failover) is UNAVAILABLE, so clients retry: it used to surface as INTERNAL, and the
    decision-log shipper dropped its batch as if it were a bug (found in review)."""

    def test_out_of_memory_is_unavailable_and_the_shipper_keeps_its_events(
        self, own_redis: RedisServer
    ) -> None:
        client = connect(own_redis.url)
        log = RedisEventLog(client)
        shipper = EventShipper(log, retry_s=0.05)
        try:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1")
            with pytest.raises(DependencyUnavailable, match="maxmemory"):
                log.append([Event("e1", "u", "n", T0)])
            shipper.submit([Event("d1", "u", DECISION, T0)])
            assert not shipper.flush(0.5)  # still waiting, not dropped
            client.config_set("maxmemory", "0")
            assert shipper.flush(5.0)
            assert shipper.dropped == 0
            assert client.xlen(STREAM_KEY) == 1
        finally:
            client.config_set("maxmemory", "0")
            shipper.close(1.0)

    def test_a_read_only_replica_is_unavailable(self, own_redis: RedisServer) -> None:
        client = connect(own_redis.url)
        client.execute_command("REPLICAOF", "127.0.0.1", "1")  # a master that is not there
        try:
            with pytest.raises(DependencyUnavailable), redis_errors():
                client.set("k", "v")
        finally:
            client.execute_command("REPLICAOF", "NO", "ONE")
