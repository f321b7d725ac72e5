"""Typed client of decisioning: Decide, DecideBatch and ReportOutcome with domain results.

Results are ``ensayo.decisioning`` dataclasses (``Decision``, ``RankedAction``), so callers
never touch protobuf; errors arrive as ``grpc.RpcError`` with the contract's status codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from ensayo.client.channel import DEFAULT_TIMEOUT_S
from ensayo.decisioning.model import Decision, RankedAction
from ensayo.v1 import common_pb2
from ensayo.v1 import decisioning_service_pb2 as pb
from ensayo.v1 import decisioning_service_pb2_grpc as pb_grpc

__all__ = ["DecisioningClient", "decision_from_pb"]

Attributes = Mapping[str, Any]


def _dict(message: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(message) if message.fields else {}


def decision_from_pb(response: pb.DecideResponse) -> Decision:
    """The domain ``Decision`` of a ``DecideResponse`` (explanations only when present)."""
    return Decision(
        decision_id=response.decision_id,
        unit_id=response.unit_id,
        actions=tuple(
            RankedAction(
                action_key=a.action_key,
                score=a.score,
                propensity=a.propensity,
                expected_value=a.expected_value,
                payload=_dict(a.payload),
                explanation=_dict(a.explanation) if a.HasField("explanation") else None,
            )
            for a in response.actions
        ),
        holdout=response.holdout,
        holdout_key=response.holdout_key,
        policy_version=response.policy_version,
        explanation=_dict(response.explanation) if response.HasField("explanation") else None,
    )


def _unit(unit_id: str, attributes: Attributes | None) -> common_pb2.Unit:
    unit = common_pb2.Unit(id=unit_id)
    if attributes:
        unit.attributes.update(attributes)
    return unit


class DecisioningClient:
    """Calls DecisioningService with a deadline on every call (see ``open_channel``)."""

    def __init__(self, channel: grpc.Channel, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._stub = pb_grpc.DecisioningServiceStub(channel)
        self._timeout = timeout_s

    def decide(
        self,
        unit_id: str,
        channel: str,
        *,
        attributes: Attributes | None = None,
        placement: str = "",
        max_actions: int = 1,
        context: Mapping[str, float] | None = None,
        dry_run: bool = False,
        explain: bool = False,
    ) -> Decision:
        """The best actions for one unit now; a delivered decision unless ``dry_run``."""
        request = pb.DecideRequest(
            unit=_unit(unit_id, attributes),
            channel=channel,
            placement=placement,
            max_actions=max_actions,
            context=dict(context or {}),
            dry_run=dry_run,
            explain=explain,
        )
        return decision_from_pb(self._stub.Decide(request, timeout=self._timeout))

    def decide_batch(
        self,
        units: Iterable[tuple[str, Attributes | None]],
        channel: str,
        *,
        placement: str = "",
        max_actions: int = 1,
        context: Mapping[str, float] | None = None,
        budgets: Mapping[str, int] | None = None,
        dry_run: bool = False,
        timeout_s: float | None = None,
    ) -> Iterator[Decision]:
        """Decisions for ``(unit_id, attributes)`` pairs, streamed in order."""
        request = pb.DecideBatchRequest(
            units=[_unit(unit_id, attrs) for unit_id, attrs in units],
            channel=channel,
            placement=placement,
            max_actions=max_actions,
            context=dict(context or {}),
            budgets=dict(budgets or {}),
            dry_run=dry_run,
        )
        stream = self._stub.DecideBatch(request, timeout=timeout_s or self._timeout)
        for response in stream:
            yield decision_from_pb(response)

    def report_outcome(
        self, decision_id: str, action_key: str, reward: float, event_id: str
    ) -> bool:
        """Report a reward; True when ``event_id`` was already reported (nothing changed)."""
        request = pb.ReportOutcomeRequest(
            decision_id=decision_id, action_key=action_key, reward=reward, event_id=event_id
        )
        return self._stub.ReportOutcome(request, timeout=self._timeout).duplicate
