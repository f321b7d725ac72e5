"""The consumer group against real Redis and SQL: exactly once through crashes, trimming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib

from ensayo.events.model import DECISION, EXPOSURE, OUTCOME, Event, exposure_id
from ensayo.state.consumer import DEAD_LETTER_KEY, ConsumerHooks, StreamConsumer
from ensayo.state.events import STREAM_KEY, RedisEventLog, encode_event
from ensayo.storage import engine as sql
from ensayo.storage.events_repo import SqlEventStore, time_us
from ensayo.storage.schema import decisions, outcomes

T0 = datetime(2025, 1, 1, tzinfo=UTC)
N = 2_500
BATCH = 500


class Crash(Exception):
    """Stands for the process dying at a crash point."""


def _events(n: int = N, prefix: str = "e") -> list[Event]:
    return [
        Event(f"{prefix}{i}", f"u{i % 300}", "purchase", T0 + timedelta(seconds=i), float(i % 7))
        for i in range(n)
    ]


@pytest.fixture
def client(redis_url):
    c = redis_lib.Redis.from_url(redis_url, socket_timeout=5)
    yield c
    c.close()


@pytest.fixture
def store(database_url):
    engine = sql.create(database_url)
    sql.migrate(engine)
    yield SqlEventStore(engine)
    engine.dispose()


def _consumer(client, store, name: str, **kwargs) -> StreamConsumer:
    kwargs.setdefault("batch_size", BATCH)
    kwargs.setdefault("block_ms", 10)
    return StreamConsumer(client, store, name=name, **kwargs)


def _crash_on(batch: int):
    calls = {"n": 0}

    def hook(_ids):
        calls["n"] += 1
        if calls["n"] == batch:
            raise Crash

    return hook


def _assert_exactly_once(store: SqlEventStore, client, expected: list[Event]) -> None:
    ids = store.event_ids()
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == {e.event_id for e in expected}
    assert client.xpending(STREAM_KEY, "analysis")["pending"] == 0


class TestExactlyOnce:
    def test_crash_between_read_and_commit_is_reclaimed_by_another_consumer(
        self, client, store
    ) -> None:
        """A consumer dies holding a read batch; XAUTOCLAIM hands it to a live one."""
        events = _events()
        assert sum(RedisEventLog(client).append(events)) == N
        doomed = _consumer(client, store, "a", hooks=ConsumerHooks(after_read=_crash_on(2)))
        doomed.step()
        with pytest.raises(Crash):
            doomed.step()
        assert client.xpending(STREAM_KEY, "analysis")["pending"] == BATCH
        survivor = _consumer(client, store, "b", claim_idle_ms=0)
        survivor.drain()
        assert survivor.stats.reclaimed == BATCH
        _assert_exactly_once(store, client, events)

    def test_crash_between_commit_and_ack_counts_nothing_twice(self, client, store) -> None:
        """The committed batch is delivered again; the primary key absorbs it."""
        events = _events()
        RedisEventLog(client).append(events)
        doomed = _consumer(client, store, "a", hooks=ConsumerHooks(after_commit=_crash_on(1)))
        with pytest.raises(Crash):
            doomed.step()
        assert store.count() == BATCH  # committed, never acknowledged
        survivor = _consumer(client, store, "b", claim_idle_ms=0)
        survivor.drain()
        _assert_exactly_once(store, client, events)

    def test_a_restarted_consumer_finishes_its_own_pending_entries_first(
        self, client, store
    ) -> None:
        """Same name after a crash: its pending batch is re-read before anything new."""
        events = _events()
        RedisEventLog(client).append(events)
        doomed = _consumer(client, store, "a", hooks=ConsumerHooks(after_read=_crash_on(1)))
        with pytest.raises(Crash):
            doomed.step()
        restarted = _consumer(client, store, "a")
        restarted.step()
        assert store.event_ids() and set(store.event_ids()) == {e.event_id for e in events[:BATCH]}
        restarted.drain()
        _assert_exactly_once(store, client, events)

    def test_repeated_appends_and_stream_duplicates_are_stored_once(self, client, store) -> None:
        """A retried Track is de-duplicated in Redis; a duplicate that slips through, in SQL."""
        events = _events(600)
        log = RedisEventLog(client)
        assert sum(log.append(events)) == 600
        assert sum(log.append(events[:100])) == 0
        for event in events[:50]:  # as if the de-duplication marker had expired
            client.xadd(STREAM_KEY, {"e": encode_event(event)})
        _consumer(client, store, "a").drain()
        _assert_exactly_once(store, client, events)


class TestAppend:
    def test_ids_with_newlines_take_the_argument_per_event_path(self, client, store) -> None:
        """The packed append splits on newlines; a batch with such an id goes one by one."""
        events = [*_events(5), Event("a\nb", "u", "n", T0), Event("a", "u", "n", T0)]
        log = RedisEventLog(client)
        assert log.append(events) == [True] * 7
        assert log.append([events[5], Event("b\n", "u", "n", T0), events[6]]) == [
            False,
            True,
            False,
        ]
        _consumer(client, store, "a").drain()
        assert sorted(store.event_ids()) == sorted([*(e.event_id for e in events), "b\n"])

    def test_flags_follow_the_events_across_chunks(self, client, store) -> None:
        """More events than one script call takes, duplicates scattered: flags in order."""
        events = _events(1_200)
        log = RedisEventLog(client)
        assert log.append(events[::3]) == [True] * 400
        assert log.append(events) == [i % 3 != 0 for i in range(1_200)]
        _consumer(client, store, "a").drain()
        _assert_exactly_once(store, client, events)

    def test_a_client_that_decodes_answers(self, redis_url) -> None:
        """decode_responses=True (str answers) gives the same flags."""
        client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
        log = RedisEventLog(client)
        assert log.append(_events(3)) == [True] * 3
        assert log.append(_events(4)) == [False, False, False, True]
        client.close()


class TestProjections:
    def test_decisions_and_outcomes_reach_their_tables_through_the_stream(
        self, client, store, database_url
    ) -> None:
        """The consumer's rows feed the decisions and outcomes tables as write() does."""
        decision = Event(
            "d1",
            "u1",
            DECISION,
            T0,
            properties={"channel": "email", "placement": 3.0, "holdout": True, "x": [1]},
        )
        outcome = Event(
            "o1", "u1", OUTCOME, T0, 2.5, decision_id="d1", properties={"action_key": "a"}
        )
        orphan = Event("o2", "u2", OUTCOME, T0, 1.0)  # no decision id: no outcome row
        RedisEventLog(client).append([decision, outcome, orphan])
        _consumer(client, store, "a").drain()
        engine = sql.create(database_url)
        with engine.connect() as conn:
            decided = [tuple(r) for r in conn.execute(decisions.select())]
            rewarded = [tuple(r) for r in conn.execute(outcomes.select())]
        engine.dispose()
        micros = time_us(T0)
        assert decided == [("d1", "u1", micros, "email", "3", "", 1)]
        assert rewarded == [("o1", "d1", "a", 2.5, micros)]


class TestStreamHygiene:
    def test_acknowledged_entries_are_trimmed(self, client, store) -> None:
        """After everything is acknowledged, XTRIM MINID ~ leaves at most a macro node."""
        RedisEventLog(client).append(_events())
        consumer = _consumer(client, store, "a", trim_interval_s=0.0)
        consumer.drain()
        consumer.trim()
        assert client.xlen(STREAM_KEY) <= 100  # stream-node-max-entries, Redis' default

    def test_pending_entries_are_never_trimmed(self, client, store) -> None:
        """Entries read but not acknowledged stay until some consumer finishes them."""
        RedisEventLog(client).append(_events(1_000))
        doomed = _consumer(client, store, "a", hooks=ConsumerHooks(after_read=_crash_on(1)))
        with pytest.raises(Crash):
            doomed.step()
        bystander = _consumer(client, store, "b", trim_interval_s=0.0, claim_idle_ms=3_600_000)
        bystander.drain()
        bystander.trim()
        pending = client.xpending_range(STREAM_KEY, "analysis", "-", "+", 10_000)
        assert len(pending) == BATCH
        assert len(client.xrange(STREAM_KEY, min=pending[0]["message_id"])) >= BATCH

    def test_an_unreadable_entry_goes_to_the_dead_letters(self, client, store) -> None:
        """A malformed entry does not block the group: it is set aside and acknowledged."""
        RedisEventLog(client).append(_events(10))
        client.xadd(STREAM_KEY, {"e": "not json"})
        client.xadd(STREAM_KEY, {"other": "field"})
        client.xadd(STREAM_KEY, {"e": "[1]"})  # JSON, but no object
        consumer = _consumer(client, store, "a")
        consumer.drain()
        assert store.count() == 10
        assert consumer.stats.dead_lettered == 3
        assert client.xlen(DEAD_LETTER_KEY) == 3
        assert client.xpending(STREAM_KEY, "analysis")["pending"] == 0

    @pytest.mark.parametrize(
        "payload",
        [
            b'{"event_id":"p","unit_id":"u","name":"n","time":"2025-01-01T00:00:00+00:00",'
            b'"experiment_version":1e999}',  # OverflowError on the way to an int
            b"[" * 100_000,  # RecursionError in the JSON decoder
        ],
        ids=["overflow", "deep"],
    )
    def test_json_that_breaks_the_decoder_is_dead_lettered(self, client, store, payload) -> None:
        """Valid JSON whose decoding raises something other than ValueError no longer stalls
        the consumer on its own pending entries (found in review)."""
        client.xadd(STREAM_KEY, {"e": payload})
        RedisEventLog(client).append(_events(3))
        _consumer(client, store, "a").drain()
        assert sorted(store.event_ids()) == ["e0", "e1", "e2"]
        assert client.xlen(DEAD_LETTER_KEY) == 1
        assert client.xpending(STREAM_KEY, "analysis")["pending"] == 0

    def test_a_payload_with_a_raw_newline_is_read_natively(self, client, store) -> None:
        """Pretty-printed JSON from another writer: the packed read cannot carry it, so the
        entry is read again with XRANGE and stored like any other (it stalled the batch)."""
        client.xadd(
            STREAM_KEY,
            {"e": b'{"event_id":"p",\n"unit_id":"u","name":"n","time":"2025-01-01T00:00:00Z"}'},
        )
        RedisEventLog(client).append(_events(3))
        _consumer(client, store, "a").drain()
        assert sorted(store.event_ids()) == ["e0", "e1", "e2", "p"]
        assert client.xlen(DEAD_LETTER_KEY) == 0
        assert client.xpending(STREAM_KEY, "analysis")["pending"] == 0

    def test_exposure_ids_of_long_unit_ids_stay_distinct(self, client, store) -> None:
        """An exposure id holds the unit id (CONTRACT.md): with 300-character unit ids it is
        over 256 characters, and two that differ only at the end are two rows (PostgreSQL cut
        them to 256 in a cast, so they collided and one exposure was lost; found in review)."""
        units = ["u" * 299 + "a", "u" * 299 + "b"]
        exposures = [
            Event(
                exposure_id("exp", 1, unit),
                unit,
                EXPOSURE,
                T0,
                experiment_key="exp",
                experiment_version=1,
                variant_key="b",
                probability=0.5,
            )
            for unit in units
        ]
        RedisEventLog(client).append(exposures)
        _consumer(client, store, "a").drain()
        assert sorted(store.event_ids()) == sorted(e.event_id for e in exposures)

    def test_an_event_the_database_refuses_is_isolated(self, client, store) -> None:
        """One bad row (a key too long for PostgreSQL) goes aside; its batch is stored."""
        events = _events(20)
        bad = Event("bad", "u", "n", T0, experiment_key="k" * 300)
        RedisEventLog(client).append([*events[:10], bad, *events[10:]])
        consumer = _consumer(client, store, "a")
        consumer.drain()
        stored = set(store.event_ids())
        assert {e.event_id for e in events} <= stored
        if store.count() == 20:  # PostgreSQL enforces VARCHAR lengths, SQLite does not
            assert consumer.stats.dead_lettered == 1
