"""Fixed-width ids read straight from a serialized message, checked against protobuf itself."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from ensayo.hashing import hash_v2, hash_v2_many
from ensayo.protowire import split_fixed_width
from ensayo.unit_ids import FixedWidthIds
from ensayo.v1 import assignment_service_pb2 as pb

pytestmark = pytest.mark.unit

IDS = 2  # AssignBatchRequest.unit_ids


def _read(raw: bytes) -> list[str] | None:
    """What the fast path reads, or None; checks the rest of the message as callers must."""
    split = split_fixed_width(raw, IDS)
    if split is None:
        return None
    matrix, rest = split
    remainder = pb.AssignBatchRequest.FromString(rest)
    if len(remainder.unit_ids):
        return None
    return FixedWidthIds(matrix).strings()


def test_uuids_are_read_without_parsing_them() -> None:
    ids = [str(uuid.UUID(int=i, version=4)) for i in range(1000)]
    message = pb.AssignBatchRequest(experiment_key="exp", unit_ids=ids, log_exposure=True)
    matrix, rest = split_fixed_width(message.SerializeToString(), IDS)
    assert matrix.shape == (1000, 36)
    assert FixedWidthIds(matrix).strings() == ids
    remainder = pb.AssignBatchRequest.FromString(rest)
    assert (remainder.experiment_key, remainder.log_exposure) == ("exp", True)
    assert not remainder.unit_ids


@pytest.mark.parametrize(
    "ids",
    [
        ["a", "bb"],  # two widths
        ["é", "e"],  # not ASCII (two UTF-8 bytes vs one)
        ["éé", "ab"],  # same byte width, not ASCII
        ["a\x00", "bc"],  # NUL would be lost by numpy's fixed-width strings
        [],  # no ids
    ],
)
def test_anything_else_falls_back(ids: list[str]) -> None:
    raw = pb.AssignBatchRequest(experiment_key="e", unit_ids=ids).SerializeToString()
    assert _read(raw) is None


def test_ids_after_other_fields_are_seen_by_the_caller() -> None:
    """Elements split by another field: the fast path's reader must find the leftovers."""
    first = pb.AssignBatchRequest(unit_ids=["aa", "bb"]).SerializeToString()
    middle = pb.AssignBatchRequest(experiment_key="e").SerializeToString()
    last = pb.AssignBatchRequest(unit_ids=["cc"]).SerializeToString()
    raw = first + middle + last  # concatenated messages merge: unit_ids = aa, bb, cc
    assert list(pb.AssignBatchRequest.FromString(raw).unit_ids) == ["aa", "bb", "cc"]
    assert _read(raw) is None


def test_attributes_after_the_ids_stay_in_the_rest() -> None:
    attributes = [struct_pb2.Struct() for _ in range(3)]
    for i, s in enumerate(attributes):
        s.update({"n": i})
    message = pb.AssignBatchRequest(experiment_key="e", unit_ids=["u1", "u2", "u3"])
    message.attributes.extend(attributes)
    matrix, rest = split_fixed_width(message.SerializeToString(), IDS)
    assert FixedWidthIds(matrix).strings() == ["u1", "u2", "u3"]
    assert list(pb.AssignBatchRequest.FromString(rest).attributes) == attributes


@pytest.mark.parametrize("raw", [b"\x12", b"\x12\x05ab", b"\x0a\x05e", b"\xff" * 12])
def test_malformed_messages_fall_back(raw: bytes) -> None:
    assert split_fixed_width(raw, IDS) is None


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(max_size=20),
    ids=st.lists(st.text(min_size=1, max_size=150), min_size=1, max_size=30),
    exposure=st.booleans(),
)
def test_reads_what_protobuf_reads_or_nothing(key: str, ids: list[str], exposure: bool) -> None:
    """Property: whenever the fast path answers, it equals protobuf's own parse."""
    raw = pb.AssignBatchRequest(
        experiment_key=key, unit_ids=ids, log_exposure=exposure
    ).SerializeToString()
    read = _read(raw)
    if read is not None:
        assert read == ids
    same_width = len({len(i.encode()) for i in ids}) == 1
    if same_width and all(i.isascii() and "\x00" not in i for i in ids):
        assert read == ids  # and it does answer for every ASCII id list of one width


@settings(max_examples=100, deadline=None)
@given(
    seed=st.text(max_size=10),
    width=st.integers(1, 140),
    count=st.integers(1, 50),
    data=st.data(),
)
def test_fixed_width_hashes_equal_the_scalar_hash(
    seed: str, width: int, count: int, data: st.DataObject
) -> None:
    alphabet = st.characters(min_codepoint=1, max_codepoint=127)
    ids = data.draw(st.lists(st.text(alphabet, min_size=width, max_size=width), min_size=count))
    matrix = np.frombuffer("".join(ids).encode(), dtype=np.uint8).reshape(len(ids), width)
    fixed = FixedWidthIds(matrix)
    expected = [hash_v2(seed, i) for i in ids]
    assert hash_v2_many(seed, fixed).tolist() == expected
    assert list(fixed) == ids and fixed[len(ids) - 1] == ids[-1]
    assert fixed[1:].strings() == ids[1:]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_runs_of_any_length_followed_by_other_fields(count: int) -> None:
    """The probe that bounds the run never cuts it short, whatever follows the ids."""
    message = pb.AssignBatchRequest(unit_ids=[f"{i:02d}" for i in range(count)], log_exposure=True)
    for i in range(count):
        message.attributes.add().update({"k": f"{i:02d}"})  # bytes that resemble the ids
    raw = message.SerializeToString()
    assert _read(raw) == list(message.unit_ids)
    _, rest = split_fixed_width(raw, IDS)
    assert list(pb.AssignBatchRequest.FromString(rest).attributes) == list(message.attributes)
