"""Typed client of the assignment service: results are ``ensayo.assignment`` dataclasses.

Every call has a deadline; UNAVAILABLE is retried with exponential backoff (on top of the
channel's own transparent retries), and a whole audience streams in chunks that resume after a
broken stream.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import grpc
import numpy as np
from google.protobuf import json_format

from ensayo.assignment.model import (
    MAX_BATCH_UNITS,
    Assignment,
    BatchResult,
    Membership,
    MembershipKind,
    Reason,
)
from ensayo.client.channel import DEFAULT_TIMEOUT_S
from ensayo.v1 import assignment_service_pb2 as pb
from ensayo.v1 import assignment_service_pb2_grpc as pb_grpc
from ensayo.v1 import common_pb2

__all__ = ["AssignmentClient"]

T = TypeVar("T")
_REASONS = {pb.AssignmentReason.Value(f"ASSIGNMENT_REASON_{r.name}"): r for r in Reason}
_KINDS = {pb.MembershipKind.Value(f"MEMBERSHIP_KIND_{k.name}"): k for k in MembershipKind}


def _unit(unit_id: str, attributes: Mapping[str, object] | None) -> common_pb2.Unit:
    unit = common_pb2.Unit(id=unit_id)
    if attributes:
        _fill(unit.attributes, attributes)
    return unit


def _fill(struct: Any, values: Mapping[str, object]) -> None:
    """Copy JSON-like ``values`` into a Struct (its stubs want narrower value types)."""
    struct.update(cast("dict[str, Any]", dict(values)))


def _assignment(message: pb.Assignment) -> Assignment:
    return Assignment(
        experiment_key=message.experiment_key,
        variant_key=message.variant_key,
        in_experiment=message.in_experiment,
        reason=_REASONS[message.reason],
        variant_index=-1,
        payload=json_format.MessageToDict(message.payload) if message.HasField("payload") else {},
        experiment_version=message.experiment_version,
        probability=message.probability,
        allocation_version=message.allocation_version,
    )


def _batch(experiment_key: str, message: pb.AssignBatchResponse) -> BatchResult:
    index = np.fromiter(message.variant_index, dtype=np.int32, count=len(message.variant_index))
    return BatchResult(
        experiment_key,
        tuple(message.variant_keys),
        index,
        message.experiment_version,
        message.allocation_version,
    )


class AssignmentClient:
    """Calls AssignmentService with a deadline (``timeout_s``) on every call.

    ``attempts`` bounds how often a call answered UNAVAILABLE is tried (with backoff from
    ``backoff_s``, doubling); other errors raise ``grpc.RpcError`` at once. Open the channel
    with ``ensayo.client.open_channel``.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        attempts: int = 4,
        backoff_s: float = 0.1,
    ) -> None:
        self._stub = pb_grpc.AssignmentServiceStub(channel)
        self._timeout = timeout_s
        self._attempts = max(attempts, 1)
        self._backoff_s = backoff_s

    def _retry(self, call: Callable[[], T]) -> T:
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                return call()
            except grpc.RpcError as exc:
                if exc.code() is not grpc.StatusCode.UNAVAILABLE or attempt == self._attempts:
                    raise
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def assign(
        self,
        unit_id: str,
        experiment_keys: Sequence[str] = (),
        attributes: Mapping[str, object] | None = None,
        *,
        log_exposure: bool = False,
    ) -> list[Assignment]:
        """The unit's assignment in each experiment (empty: every running one), in order.

        ``variant_index`` is not on the wire for single assignments and is left at -1.
        """
        request = pb.AssignRequest(
            unit=_unit(unit_id, attributes),
            experiment_keys=list(experiment_keys),
            log_exposure=log_exposure,
        )
        response = self._retry(lambda: self._stub.Assign(request, timeout=self._timeout))
        return [_assignment(a) for a in response.assignments]

    def assign_one(
        self,
        unit_id: str,
        experiment_key: str,
        attributes: Mapping[str, object] | None = None,
        *,
        log_exposure: bool = False,
    ) -> Assignment:
        """The unit's assignment in one experiment."""
        return self.assign(unit_id, [experiment_key], attributes, log_exposure=log_exposure)[0]

    def assign_batch(
        self,
        experiment_key: str,
        unit_ids: Sequence[str],
        attributes: Sequence[Mapping[str, object]] | None = None,
        *,
        log_exposure: bool = False,
    ) -> BatchResult:
        """Up to ``MAX_BATCH_UNITS`` units in one message; ``attributes`` empty or parallel."""
        request = self._batch_request(experiment_key, unit_ids, attributes, log_exposure)
        response = self._retry(lambda: self._stub.AssignBatch(request, timeout=self._timeout))
        return _batch(experiment_key, response)

    @staticmethod
    def _batch_request(
        experiment_key: str,
        unit_ids: Sequence[str],
        attributes: Sequence[Mapping[str, object]] | None,
        log_exposure: bool,
    ) -> pb.AssignBatchRequest:
        request = pb.AssignBatchRequest(
            experiment_key=experiment_key, unit_ids=unit_ids, log_exposure=log_exposure
        )
        for attrs in attributes or ():
            _fill(request.attributes.add(), attrs)
        return request

    def assign_audience(
        self,
        experiment_key: str,
        unit_ids: Iterable[str],
        *,
        chunk: int = MAX_BATCH_UNITS,
        log_exposure: bool = False,
        timeout_s: float | None = None,
    ) -> Iterator[BatchResult]:
        """An audience of any size over ``AssignStream``: one result per ``chunk`` ids, in order.

        A stream broken with UNAVAILABLE is reopened with the chunks not yet answered (at
        most ``attempts`` times in a row without progress). ``timeout_s`` bounds each stream
        (default: the client's timeout).
        """
        size = min(max(chunk, 1), MAX_BATCH_UNITS)
        source = iter(unit_ids)
        pending: deque[pb.AssignBatchRequest] = deque()

        def next_request() -> pb.AssignBatchRequest | None:
            ids = [u for _, u in zip(range(size), source, strict=False)]
            if not ids:
                return None
            return pb.AssignBatchRequest(
                experiment_key=experiment_key, unit_ids=ids, log_exposure=log_exposure
            )

        def requests() -> Iterator[pb.AssignBatchRequest]:
            yield from list(pending)  # resent after a broken stream
            while (request := next_request()) is not None:
                pending.append(request)
                yield request

        failures = 0
        delay = self._backoff_s
        while True:
            try:
                for response in self._stub.AssignStream(
                    requests(), timeout=timeout_s or self._timeout
                ):
                    pending.popleft()
                    failures, delay = 0, self._backoff_s
                    yield _batch(experiment_key, response)
            except grpc.RpcError as exc:
                failures += 1
                if exc.code() is not grpc.StatusCode.UNAVAILABLE or failures >= self._attempts:
                    raise
                time.sleep(delay)
                delay *= 2
            else:
                return

    def memberships(
        self, unit_id: str, attributes: Mapping[str, object] | None = None
    ) -> list[Membership]:
        """Every holdout, layer and running experiment, with the unit's standing in each."""
        request = pb.GetMembershipsRequest(unit=_unit(unit_id, attributes))
        response = self._retry(lambda: self._stub.GetMemberships(request, timeout=self._timeout))
        return [
            Membership(
                kind=_KINDS[m.kind],
                key=m.key,
                member=m.member,
                reason=_REASONS.get(m.reason),
                variant_key=m.variant_key,
                position=m.position,
                owner=m.owner,
            )
            for m in response.memberships
        ]
