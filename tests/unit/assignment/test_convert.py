"""Assignment converters and settings: Structs, packed indices, reasons, environment."""

from __future__ import annotations

import dataclasses
import gc
import uuid

import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2

from ensayo.assignment.model import Assignment, BatchResult, Membership, MembershipKind, Reason
from ensayo.errors import InvalidArgument
from ensayo.serverkit.config import ConfigError
from ensayo.serverkit.protoconv import struct_to_dict
from ensayo.unit_ids import FixedWidthIds
from ensayo.v1 import assignment_service_pb2 as pb
from ensayo.v1 import common_pb2
from services.assignment import convert
from services.assignment.config import AssignmentConfig


class TestStructs:
    """Attributes arrive as Structs and become plain values."""

    def test_nested_values(self) -> None:
        """Strings, numbers, booleans, null, lists and nested objects convert as protobuf's
        own json_format.MessageToDict converts them."""
        s = struct_pb2.Struct()
        s.update({"c": "ES", "n": 3, "b": True, "z": None, "l": [1, "a"], "o": {"k": [True]}})
        assert struct_to_dict(s) == json_format.MessageToDict(s)
        assert struct_to_dict(s) == {
            "c": "ES",
            "n": 3.0,
            "b": True,
            "z": None,
            "l": [1.0, "a"],
            "o": {"k": [True]},
        }

    def test_batch_attributes_are_lazy_and_parallel(self) -> None:
        """Batch attributes keep their length and convert on access."""
        request = pb.AssignBatchRequest(experiment_key="e", unit_ids=["a", "b"])
        request.attributes.add().update({"x": 1})
        request.attributes.add().update({"x": 2})
        query = convert.batch_query_from_pb(request)
        assert len(query.attributes) == 2
        assert query.attributes[1] == {"x": 2.0}
        assert list(query.attributes) == [{"x": 1.0}, {"x": 2.0}]
        assert query.attributes[0:1] == [{"x": 1.0}]

    def test_no_attributes_is_empty(self) -> None:
        """An empty attributes field becomes an empty sequence."""
        query = convert.batch_query_from_pb(pb.AssignBatchRequest(unit_ids=["a"]))
        assert query.attributes == () and query.unit_ids == ["a"]


class TestPackedIndices:
    """The numpy-packed variant_index equals what protobuf would write."""

    @pytest.mark.parametrize("k", [2, 5, 64, 65, 300])
    def test_equals_extend(self, k) -> None:
        """For up to 64 variants the fast path; beyond, the plain path; both exact."""
        index = np.random.default_rng(k).integers(-1, k, 5000).astype(np.int32)
        keys = tuple(f"v{i}" for i in range(k))
        got = convert.batch_result_to_pb(BatchResult("e", keys, index, 3, 2))
        expected = pb.AssignBatchResponse(
            variant_keys=keys,
            variant_index=index.tolist(),
            experiment_version=3,
            allocation_version=2,
        )
        assert got == expected
        assert got.SerializeToString() == expected.SerializeToString()

    def test_empty(self) -> None:
        """An empty result has no indices."""
        got = convert.batch_result_to_pb(BatchResult("e", ("a",), np.zeros(0, np.int32)))
        assert list(got.variant_index) == []


class TestMessages:
    """Assignments and memberships map every reason and kind."""

    def test_every_reason_has_a_wire_value(self) -> None:
        """Each Reason maps to its ASSIGNMENT_REASON_* value and back."""
        for reason in Reason:
            value = convert.REASON_TO_PB[reason]
            assert pb.AssignmentReason.Name(value) == f"ASSIGNMENT_REASON_{reason.name}"
            assert convert.REASON_FROM_PB[value] is reason

    def test_assignment_and_request(self) -> None:
        """A query reads unit, keys and log flag; an answer carries every field."""
        unit = common_pb2.Unit(id="u1")
        unit.attributes.update({"x": "y"})
        q = convert.assign_query_from_pb(
            pb.AssignRequest(unit=unit, experiment_keys=["a"], log_exposure=True)
        )
        assert (q.unit.id, q.unit.attributes, q.experiment_keys, q.log_exposure) == (
            "u1",
            {"x": "y"},
            ("a",),
            True,
        )
        a = Assignment("a", "t", True, Reason.STICKY, 1, {"p": 1}, 4, 0.25, 2)
        [m] = convert.assign_response_to_pb([a]).assignments
        assert (m.variant_key, m.reason, m.probability, m.allocation_version) == (
            "t",
            pb.ASSIGNMENT_REASON_STICKY,
            0.25,
            2,
        )
        assert dict(m.payload) == {"p": 1.0}

    def test_response_equals_the_messages_built_field_by_field(self) -> None:
        """Cached encodings give the same response, call after call, for every kind of answer."""
        answers = [
            Assignment("a", "t", True, Reason.ASSIGNED, 1, {"p": 1, "q": ["x", None]}, 4, 0.25),
            Assignment("b", "c", False, Reason.HOLDOUT, experiment_version=2),
            Assignment("nope", "", False, Reason.UNKNOWN_EXPERIMENT),
            Assignment("d", "v", True, Reason.STICKY, 0, {}, 1, 0.5, 7),
        ]
        expected = pb.AssignResponse()
        for a in answers:
            m = expected.assignments.add(
                experiment_key=a.experiment_key,
                variant_key=a.variant_key,
                in_experiment=a.in_experiment,
                reason=convert.REASON_TO_PB[a.reason],
                experiment_version=a.experiment_version,
                probability=a.probability,
                allocation_version=a.allocation_version,
            )
            if a.payload:
                m.payload.update(a.payload)
        for _ in range(3):
            assert convert.assign_response_to_pb(answers) == expected
        assert convert.assign_response_to_pb([]) == pb.AssignResponse()

    def test_encodings_are_forgotten_with_their_assignment(self) -> None:
        """The cache is weak: an answer no longer referenced leaves it."""
        a = Assignment("gone", "t", True, Reason.ASSIGNED, 1, {}, 1, 0.5)
        convert.assign_response_to_pb([a])
        key = id(a)
        assert key in convert._encoded
        del a
        gc.collect()
        assert key not in convert._encoded

    def test_membership(self) -> None:
        """Layer rows carry position and owner; reasons are unset outside experiments."""
        rows = [Membership(MembershipKind.LAYER, "l", True, position=0.25, owner="e")]
        [m] = convert.memberships_response_to_pb(rows).memberships
        assert (m.kind, m.owner, m.position, m.reason) == (
            pb.MEMBERSHIP_KIND_LAYER,
            "e",
            0.25,
            pb.ASSIGNMENT_REASON_UNSPECIFIED,
        )


class TestConfig:
    """AssignmentConfig.from_env reads and validates the extra variables."""

    def test_defaults(self) -> None:
        """Only the Redis URL is needed."""
        config = AssignmentConfig.from_env({"ENSAYO_REDIS_URL": "redis://x:1/0"})
        assert (config.allocation_poll_s, config.allocator) == (1.0, True)

    def test_every_problem_is_listed(self) -> None:
        """A missing Redis URL and bad values are reported together."""
        with pytest.raises(ConfigError) as err:
            AssignmentConfig.from_env(
                {"ENSAYO_ALLOCATION_POLL_S": "-1", "ENSAYO_ASSIGNMENT_ALLOCATOR": "maybe"}
            )
        assert len(err.value.problems) == 3
        assert "ENSAYO_REDIS_URL" in err.value.problems[0]

    def test_allocator_can_be_turned_off(self) -> None:
        """ENSAYO_ASSIGNMENT_ALLOCATOR=false keeps a replica out of the election."""
        env = {"ENSAYO_REDIS_URL": "redis://x:1/0", "ENSAYO_ASSIGNMENT_ALLOCATOR": "false"}
        assert not AssignmentConfig.from_env(env).allocator


class TestBatchFromBytes:
    """AssignBatch's request bytes: fixed-width ids from the wire, anything else parsed."""

    def test_uuids_stay_bytes_and_equal_the_parsed_ids(self) -> None:
        ids = [str(uuid.UUID(int=i, version=4)) for i in range(50)]
        raw = pb.AssignBatchRequest(
            experiment_key="e", unit_ids=ids, log_exposure=True
        ).SerializeToString()
        query = convert.batch_query_from_pb(raw)
        assert isinstance(query.unit_ids, FixedWidthIds)
        assert list(query.unit_ids) == ids
        assert (query.experiment_key, query.log_exposure) == ("e", True)
        assert query == dataclasses.replace(
            convert.batch_query_from_pb(pb.AssignBatchRequest.FromString(raw)),
            unit_ids=query.unit_ids,
        )

    def test_ragged_ids_are_parsed(self) -> None:
        raw = pb.AssignBatchRequest(experiment_key="e", unit_ids=["a", "bb"]).SerializeToString()
        assert convert.batch_query_from_pb(raw).unit_ids == ["a", "bb"]

    def test_ids_split_by_another_field_are_all_read(self) -> None:
        raw = (
            pb.AssignBatchRequest(unit_ids=["aa", "bb"]).SerializeToString()
            + pb.AssignBatchRequest(experiment_key="e").SerializeToString()
            + pb.AssignBatchRequest(unit_ids=["cc"]).SerializeToString()
        )
        assert list(convert.batch_query_from_pb(raw).unit_ids) == ["aa", "bb", "cc"]

    def test_garbage_is_invalid_argument(self) -> None:
        with pytest.raises(InvalidArgument) as info:
            convert.batch_query_from_pb(b"\x12\x05ab")
        assert info.value.field == "request"
