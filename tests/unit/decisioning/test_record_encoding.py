"""The decision record's direct encoder writes the catalog codec's exact text."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ensayo.catalog import codec
from ensayo.decisioning.model import DecisionRecord
from ensayo.state.contacts import encode_record

pytestmark = pytest.mark.unit

T = datetime(2026, 1, 1, 12, 30, 15, 250, tzinfo=UTC)


class TestRecordEncoding:
    @given(
        text=st.text(max_size=12),
        keys=st.lists(st.text(max_size=8), max_size=4).map(tuple),
        features=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=25).map(
            tuple
        ),
        offset=st.integers(-720, 720),
    )
    def test_encode_equals_codec_and_round_trips(
        self, text: str, keys: tuple[str, ...], features: tuple[float, ...], offset: int
    ) -> None:
        """Escapes, any finite float (overflowing sums too), any offset: codec.dumps' text."""
        when = datetime(2026, 1, 1, tzinfo=timezone(timedelta(minutes=offset)))
        record = DecisionRecord(text, text, when, keys, features, text, text)
        encoded = encode_record(record)
        assert encoded == codec.dumps(record)
        assert codec.loads(DecisionRecord, encoded) == record

    @given(
        features=st.lists(
            st.integers(-(10**20), 10**20) | st.booleans() | st.floats(allow_nan=False), max_size=4
        ).map(tuple)
    )
    def test_fields_of_other_types_still_give_the_codec_text(
        self, features: tuple[float | int | bool, ...]
    ) -> None:
        """Ints or bools where floats belong take the codec's path, with the same result."""
        record = DecisionRecord("d", "u", T, ("a",), features)
        if any(math.isinf(f) for f in features):
            with pytest.raises(ValueError):
                encode_record(record)
        else:
            assert encode_record(record) == codec.dumps(record)

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
    def test_a_non_finite_feature_is_refused_like_the_codec(self, bad: float) -> None:
        """JSON has no NaN or infinity: ValueError, as codec.dumps raises."""
        record = DecisionRecord("d", "u", T, ("a",), (0.5, bad))
        with pytest.raises(ValueError):
            codec.dumps(record)
        with pytest.raises(ValueError):
            encode_record(record)
