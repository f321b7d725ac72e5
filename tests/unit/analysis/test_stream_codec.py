"""The stream entry codec: the fast encoder writes the catalog codec's exact text."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ensayo.catalog import codec
from ensayo.events.model import Event
from ensayo.state.consumer import safe_trim_id
from ensayo.state.events import decode_entry, encode_event
from ensayo.storage.events_repo import SqlEventStore, event_row
from ensayo.storage.schema import events as events_table

T = datetime(2025, 1, 1, 12, 30, 15, 250, tzinfo=UTC)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


class TestStreamCodec:
    @given(
        event_id=st.text(min_size=1, max_size=20),
        value=st.floats(allow_nan=False, allow_infinity=False),
        properties=st.dictionaries(st.text(max_size=5), _json, max_size=3),
        offset=st.integers(-720, 720),
    )
    def test_encode_equals_codec_and_round_trips(
        self, event_id, value, properties, offset
    ) -> None:
        """encode_event == codec.dumps, and decode_entry gives the event back."""
        when = datetime(2025, 1, 1, tzinfo=timezone(timedelta(minutes=offset)))
        event = Event(event_id, "u\n1", "n", when, value, "exp", 3, "b", 0.25, "d", properties, 7)
        text = encode_event(event)
        assert text == codec.dumps(event)
        assert "\n" not in text  # the consumer's packed read relies on it
        assert decode_entry({b"e": text.encode()}) == event

    def test_decoded_time_keeps_the_instant(self) -> None:
        """A UTC time survives the round trip as an aware datetime."""
        event = Event("e", "u", "n", datetime(2025, 1, 1, 12, 30, tzinfo=UTC))
        assert decode_entry({b"e": encode_event(event).encode()}).time == event.time

    @given(
        text=st.text(max_size=12),
        value=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**20), 10**20),
        probability=st.floats(0, 1) | st.sampled_from([0, 1]),
        version=st.integers(0, 2**63) | st.booleans(),
        properties=st.dictionaries(st.text(max_size=5), _json, max_size=3),
    )
    def test_encode_equals_codec_for_any_field_types(
        self, text, value, probability, version, properties
    ) -> None:
        """Strings needing escapes, ints where floats belong, bools: still codec.dumps' text."""
        event = Event(
            text, text, text, T, value, text, version, text, probability, text, properties, version
        )
        assert encode_event(event) == codec.dumps(event)

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    def test_a_non_finite_number_is_refused_like_the_codec(self, bad: float) -> None:
        """JSON has no NaN or infinity: ValueError, as codec.dumps raises."""
        for event in (
            Event("e", "u", "n", T, bad),
            Event("e", "u", "n", T, probability=bad),
            Event("e", "u", "n", T, properties={"x": [bad]}),
        ):
            with pytest.raises(ValueError):
                codec.dumps(event)
            with pytest.raises(ValueError):
                encode_event(event)


def _store() -> SqlEventStore:
    return SqlEventStore(None)  # type: ignore[arg-type]  # decode needs no database


class TestRowDecoder:
    """SqlEventStore.decode reads a stream entry straight into the row ``write`` would store."""

    def test_the_row_is_in_the_events_table_column_order(self) -> None:
        """event_row's tuple lines up with the table (the insert relies on it)."""
        event = Event("e", "u", "n", T, 2.5, "x", 3, "v", 0.5, "d", {"k": 1}, 7)
        row = event_row(event)
        by_column = dict(zip([c.name for c in events_table.columns], row, strict=True))
        assert by_column == {
            "event_id": "e",
            "unit_id": "u",
            "name": "n",
            "time_us": 1_735_734_615_000_250,
            "value": 2.5,
            "experiment_key": "x",
            "experiment_version": 3,
            "variant_key": "v",
            "probability": 0.5,
            "decision_id": "d",
            "allocation_version": 7,
            "properties": '{"k":1}',
        }

    @given(
        event_id=st.text(min_size=1, max_size=20),
        value=st.floats(allow_nan=False, allow_infinity=False),
        properties=st.dictionaries(st.text(max_size=5), _json, max_size=3),
        offset=st.integers(-720, 720),
        micros=st.integers(0, 999_999),
    )
    def test_decode_equals_the_event_row_of_decode_entry(
        self, event_id, value, properties, offset, micros
    ) -> None:
        """Same row as decoding the Event and converting it, for any event."""
        when = datetime(2025, 1, 1, 0, 0, 0, micros, tzinfo=timezone(timedelta(minutes=offset)))
        event = Event(event_id, "u\n1", "n", when, value, "exp", 3, "b", 0.25, "d", properties, 7)
        payload = encode_event(event).encode()
        store = _store()
        assert store.decode(payload) == event_row(decode_entry({b"e": payload}))
        assert store.decode(payload) == event_row(event)  # again, the time now from the cache

    @pytest.mark.parametrize(
        "data",
        [
            {"event_id": "e", "unit_id": "u", "name": "n", "time": "2025-01-01T00:00:00"},
            {
                "event_id": 5,
                "unit_id": "u",
                "name": "n",
                "time": "2025-01-01T00:00:00+02:00",
                "value": 3,
                "experiment_key": None,
                "experiment_version": 2.0,
                "variant_key": None,
                "probability": None,
                "decision_id": None,
                "properties": None,
                "allocation_version": "4",
            },
        ],
    )
    def test_entries_of_other_writers_decode_alike(self, data) -> None:
        """Missing fields, nulls and other number types: the same coercions as decode_entry."""
        payload = json.dumps(data).encode()
        assert _store().decode(payload) == event_row(decode_entry({b"e": payload}))

    @pytest.mark.parametrize(
        "payload",
        [
            b"not json",
            b"[1]",
            b"1",
            b'"text"',
            b"\xff",
            b'{"unit_id": "u", "name": "n", "time": "2025-01-01T00:00:00"}',
            b'{"event_id": "e", "unit_id": "u", "name": "n", "time": "yesterday"}',
            b'{"event_id": "e", "unit_id": "u", "name": "n", "time": 5}',
            b'{"event_id": "e", "unit_id": "u", "name": "n", "time": "2025-01-01", "value": null}',
            b'{"event_id": "e", "unit_id": "u", "name": "n", "time": "2025-01-01",'
            b' "properties": [1]}',
        ],
    )
    def test_what_is_no_event_raises_what_the_consumer_sets_aside(self, payload) -> None:
        """KeyError, ValueError or TypeError (dead letters), as decode_entry raises."""
        with pytest.raises((KeyError, ValueError, TypeError)):
            decode_entry({b"e": payload})
        with pytest.raises((KeyError, ValueError, TypeError)):
            _store().decode(payload)


class TestSafeTrimId:
    def test_nothing_may_go_without_a_group(self) -> None:
        """No group has said what it needs: no trimming."""
        assert safe_trim_id([]) is None

    def test_oldest_pending_or_next_undelivered_of_the_slowest_group(self) -> None:
        """MINID is the smallest id any group still needs."""
        assert safe_trim_id([("5-3", None)]) == "5-4"
        assert safe_trim_id([("9-0", "4-1"), ("7-2", None)]) == "4-1"
        assert safe_trim_id([("10-0", None), ("9-9", None)]) == "9-10"
