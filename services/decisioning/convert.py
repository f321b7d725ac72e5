"""Decisioning protobuf <-> domain conversion; validation of values lives in the domain."""

from __future__ import annotations

from ensayo.decisioning.model import (
    BatchQuery,
    DecideQuery,
    Decision,
    Outcome,
    Subject,
)
from ensayo.serverkit.protoconv import struct_to_dict
from ensayo.v1 import common_pb2
from ensayo.v1 import decisioning_service_pb2 as pb

__all__ = [
    "batch_query_from_pb",
    "decide_query_from_pb",
    "decision_to_pb",
    "outcome_from_pb",
]


def _subject(unit: common_pb2.Unit) -> Subject:
    return Subject(unit.id, struct_to_dict(unit.attributes))


def decide_query_from_pb(request: pb.DecideRequest) -> DecideQuery:
    """The domain query of a ``DecideRequest``; unset ``max_actions`` is 1."""
    return DecideQuery(
        unit=_subject(request.unit),
        channel=request.channel,
        placement=request.placement,
        max_actions=request.max_actions if request.HasField("max_actions") else 1,
        context=dict(request.context),
        dry_run=request.dry_run,
        explain=request.explain,
    )


def batch_query_from_pb(request: pb.DecideBatchRequest) -> BatchQuery:
    """The domain query of a ``DecideBatchRequest``."""
    return BatchQuery(
        units=tuple(_subject(u) for u in request.units),
        channel=request.channel,
        placement=request.placement,
        max_actions=request.max_actions if request.HasField("max_actions") else 1,
        context=dict(request.context),
        budgets=dict(request.budgets),
        dry_run=request.dry_run,
    )


def outcome_from_pb(request: pb.ReportOutcomeRequest) -> Outcome:
    """The domain outcome of a ``ReportOutcomeRequest``."""
    return Outcome(request.decision_id, request.action_key, request.reward, request.event_id)


def decision_to_pb(decision: Decision, *, with_unit: bool = False) -> pb.DecideResponse:
    """The ``DecideResponse``; ``with_unit`` sets ``unit_id`` (DecideBatch)."""
    response = pb.DecideResponse(
        decision_id=decision.decision_id,
        holdout=decision.holdout,
        holdout_key=decision.holdout_key,
        policy_version=decision.policy_version,
        unit_id=decision.unit_id if with_unit else "",
    )
    for action in decision.actions:
        ranked = response.actions.add(
            action_key=action.action_key,
            score=action.score,
            propensity=action.propensity,
            expected_value=action.expected_value,
        )
        if action.payload:
            ranked.payload.update(action.payload)
        if action.explanation is not None:
            ranked.explanation.update(action.explanation)
    if decision.explanation is not None:
        response.explanation.update(decision.explanation)
    return response
