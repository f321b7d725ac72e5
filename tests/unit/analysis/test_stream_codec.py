"""The stream entry codec: the fast encoder writes the catalog codec's exact text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from ensayo.catalog import codec
from ensayo.events.model import Event
from ensayo.state.consumer import safe_trim_id
from ensayo.state.events import decode_entry, encode_event

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


class TestSafeTrimId:
    def test_nothing_may_go_without_a_group(self) -> None:
        """No group has said what it needs: no trimming."""
        assert safe_trim_id([]) is None

    def test_oldest_pending_or_next_undelivered_of_the_slowest_group(self) -> None:
        """MINID is the smallest id any group still needs."""
        assert safe_trim_id([("5-3", None)]) == "5-4"
        assert safe_trim_id([("9-0", "4-1"), ("7-2", None)]) == "4-1"
        assert safe_trim_id([("10-0", None), ("9-9", None)]) == "9-10"
