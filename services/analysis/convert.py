"""Analysis and events protobuf <-> domain conversion; validation names the field.

Events are converted field by field (not through the generic converter): ``Track`` runs this
for every event, so it must be fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from ensayo.analysis.model import (
    CandidatePolicy,
    ExperimentReport,
    HoldoutReport,
    MetricResult,
    PolicyReport,
    PolicyRequest,
    ReportRequest,
    VariantComparison,
    VariantSummary,
)
from ensayo.errors import FieldViolation, InvalidArgument, ResourceExhausted
from ensayo.events.model import MAX_EVENTS_PER_CALL, Event
from ensayo.stats import AnalysisMethod, Correction, MetricKind, SrmResult
from ensayo.storage.events_repo import time_us
from ensayo.v1 import analysis_service_pb2 as pb
from ensayo.v1 import definitions_pb2 as defs
from ensayo.v1 import events_service_pb2 as events_pb

__all__ = [
    "MAX_KEY_LENGTH",
    "events_from_pb",
    "experiment_report_to_pb",
    "holdout_report_to_pb",
    "plan_from_pb",
    "policy_report_to_pb",
    "policy_request_from_pb",
    "report_request_from_pb",
]

MAX_KEY_LENGTH = 128
"""Longest experiment or variant key an event may carry (the catalog's key limit)."""
_MAX_DECISION_ID = 256

_METHOD_IN = {
    pb.ANALYSIS_METHOD_UNSPECIFIED: AnalysisMethod.FREQUENTIST,
    pb.ANALYSIS_METHOD_FREQUENTIST: AnalysisMethod.FREQUENTIST,
    pb.ANALYSIS_METHOD_BAYESIAN: AnalysisMethod.BAYESIAN,
    pb.ANALYSIS_METHOD_SEQUENTIAL: AnalysisMethod.SEQUENTIAL,
}
_METHOD_OUT = {
    AnalysisMethod.FREQUENTIST: pb.ANALYSIS_METHOD_FREQUENTIST,
    AnalysisMethod.BAYESIAN: pb.ANALYSIS_METHOD_BAYESIAN,
    AnalysisMethod.SEQUENTIAL: pb.ANALYSIS_METHOD_SEQUENTIAL,
}
_CORRECTION_IN = {
    pb.CORRECTION_UNSPECIFIED: Correction.NONE,
    pb.CORRECTION_NONE: Correction.NONE,
    pb.CORRECTION_HOLM: Correction.HOLM,
    pb.CORRECTION_BENJAMINI_HOCHBERG: Correction.BENJAMINI_HOCHBERG,
}
_CORRECTION_OUT = {v: k for k, v in _CORRECTION_IN.items() if k != pb.CORRECTION_UNSPECIFIED}
_KIND_IN = {
    defs.METRIC_KIND_CONVERSION: MetricKind.CONVERSION,
    defs.METRIC_KIND_MEAN: MetricKind.MEAN,
    defs.METRIC_KIND_RATIO: MetricKind.RATIO,
}
_KIND_OUT = {v: k for k, v in _KIND_IN.items()}


# --- events ---------------------------------------------------------------------------------


def _plain(value: Any, path: str) -> Any:
    """A Struct's value as plain JSON; rejects non-finite numbers (JSON has none)."""
    if isinstance(value, struct_pb2.Struct):
        return {k: _plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, struct_pb2.ListValue):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(path, "must be a finite number")
    return value


def events_from_pb(messages: Sequence[events_pb.Event], now: datetime) -> list[Event]:
    """Domain events of a Track request: unset ``value`` is 1, unset ``time`` is ``now``.

    Raises ResourceExhausted above MAX_EVENTS_PER_CALL events and InvalidArgument naming
    ``events[i].field`` for what only the wire format can get wrong (key lengths, a time
    outside the representable range, non-finite properties); ``ensayo.events`` validates
    the rest.
    """
    if len(messages) > MAX_EVENTS_PER_CALL:
        raise ResourceExhausted(
            "events", f"at most {MAX_EVENTS_PER_CALL} events per call, got {len(messages)}"
        )
    out: list[Event] = []
    problems: list[FieldViolation] = []
    append = out.append
    for i, m in enumerate(messages):
        when = now
        if m.HasField("time"):
            try:
                when = m.time.ToDatetime(tzinfo=UTC)
            except (ValueError, OverflowError):
                problems.append(FieldViolation(f"events[{i}].time", "out of range"))
        experiment_key, variant_key, decision_id = m.experiment_key, m.variant_key, m.decision_id
        if (
            len(experiment_key) > MAX_KEY_LENGTH
            or len(variant_key) > MAX_KEY_LENGTH
            or len(decision_id) > _MAX_DECISION_ID
        ):
            for name, text, limit in (
                ("experiment_key", experiment_key, MAX_KEY_LENGTH),
                ("variant_key", variant_key, MAX_KEY_LENGTH),
                ("decision_id", decision_id, _MAX_DECISION_ID),
            ):
                if len(text) > limit:
                    problems.append(
                        FieldViolation(
                            f"events[{i}].{name}", f"must be at most {limit} characters"
                        )
                    )
        properties: dict[str, Any] = {}
        if m.HasField("properties"):
            try:
                properties = _plain(m.properties, f"events[{i}].properties")
            except InvalidArgument as exc:
                problems.extend(exc.violations)
        append(
            Event(  # positional, in field order: cheaper than keywords for every event
                m.event_id,
                m.unit_id,
                m.name,
                when,
                m.value if m.HasField("value") else 1.0,
                experiment_key,
                m.experiment_version,
                variant_key,
                m.probability,
                decision_id,
                properties,
                m.allocation_version,
            )
        )
    if problems:
        first, *rest = problems
        raise InvalidArgument(first.field, first.reason, *rest)
    return out


# --- reports --------------------------------------------------------------------------------


def report_request_from_pb(request: pb.GetExperimentReportRequest) -> ReportRequest:
    """The report's options with CONTRACT.md defaults (frequentist, alpha 0.05, no correction)."""
    method = _METHOD_IN.get(request.method)
    if method is None:
        raise InvalidArgument("method", "unknown analysis method")
    correction = _CORRECTION_IN.get(request.correction)
    if correction is None:
        raise InvalidArgument("correction", "unknown correction")
    return ReportRequest(
        experiment_key=request.experiment_key,
        metric_keys=tuple(request.metric_keys),
        method=method,
        cuped=request.cuped,
        alpha=request.alpha if request.HasField("alpha") else 0.05,
        correction=correction,
    )


def _set(message: Message, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None:
            setattr(message, name, value)


def _comparison_to_pb(item: VariantComparison) -> pb.Comparison:
    c = item.comparison
    out = pb.Comparison(
        variant_key=c.variant_key,
        significant=c.significant,
        treatment_units=item.treatment_units,
        control_units=item.control_units,
    )
    _set(
        out,
        control_mean=c.control_mean,
        treatment_mean=c.treatment_mean,
        absolute_lift=c.absolute_lift,
        relative_lift=c.relative_lift,
        ci_low=c.ci_low,
        ci_high=c.ci_high,
        relative_ci_low=c.relative_ci_low,
        relative_ci_high=c.relative_ci_high,
        p_value=c.p_value,
        adjusted_p_value=c.adjusted_p_value,
        chance_to_win=c.chance_to_win,
        expected_loss=c.expected_loss,
        variance_reduction=c.variance_reduction if c.variance_reduction is not None else 0.0,
    )
    return out


def _metric_to_pb(result: MetricResult) -> pb.MetricResult:
    return pb.MetricResult(
        metric_key=result.metric_key,
        kind=_KIND_OUT[result.kind],
        lower_is_better=result.lower_is_better,
        comparisons=[_comparison_to_pb(c) for c in result.comparisons],
    )


def _variants_to_pb(variants: Sequence[VariantSummary]) -> list[pb.VariantSummary]:
    return [
        pb.VariantSummary(key=v.key, units=v.units, expected_share=v.expected_share)
        for v in variants
    ]


def _srm_to_pb(srm: SrmResult) -> pb.SampleRatioCheck:
    return pb.SampleRatioCheck(p_value=srm.p_value if srm.p_value is not None else 1.0, ok=srm.ok)


def experiment_report_to_pb(report: ExperimentReport) -> pb.ExperimentReport:
    """The report message; unset optional fields are the figures a method does not compute."""
    out = pb.ExperimentReport(
        experiment_key=report.experiment_key,
        method=_METHOD_OUT[report.method],
        variants=_variants_to_pb(report.variants),
        srm=_srm_to_pb(report.srm),
        metrics=[_metric_to_pb(m) for m in report.metrics],
        warnings=list(report.warnings),
        recommendation=report.recommendation,
        alpha=report.alpha,
        correction=_CORRECTION_OUT[report.correction],
        weighting=report.weighting,
    )
    out.generate_time.FromDatetime(report.generate_time)
    return out


def holdout_report_to_pb(report: HoldoutReport) -> pb.HoldoutReport:
    """The holdout report message."""
    return pb.HoldoutReport(
        holdout_key=report.holdout_key,
        groups=_variants_to_pb(report.groups),
        metrics=[_metric_to_pb(m) for m in report.metrics],
        warnings=list(report.warnings),
        srm=_srm_to_pb(report.srm),
    )


def plan_from_pb(request: pb.PlanSampleSizeRequest) -> dict[str, Any]:
    """Keyword arguments of ``AnalysisUseCases.plan_sample_size`` (defaults filled in)."""
    kind = _KIND_IN.get(request.metric_kind)
    if kind is None:
        raise InvalidArgument("metric_kind", "required: conversion, mean or ratio")
    return {
        "metric_kind": kind,
        "baseline_mean": request.baseline_mean,
        "minimum_detectable_effect": request.minimum_detectable_effect,
        "baseline_variance": request.baseline_variance or None,
        "alpha": request.alpha if request.HasField("alpha") else 0.05,
        "power": request.power if request.HasField("power") else 0.8,
        "variants": request.variants if request.HasField("variants") else 2,
    }


def _time_us(timestamp: Timestamp, field: str) -> int:
    """Microseconds since the epoch of a request's timestamp; out of range names ``field``."""
    try:
        return time_us(timestamp.ToDatetime(tzinfo=UTC))
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field, "out of range") from exc


def policy_request_from_pb(request: pb.EvaluatePolicyRequest, now: datetime) -> PolicyRequest:
    """The evaluation's options: the window defaults to everything logged until ``now``."""
    try:
        policy = CandidatePolicy(request.policy.strip().lower())
    except ValueError as exc:
        choices = ", ".join(p.value for p in CandidatePolicy)
        raise InvalidArgument("policy", f"must be one of {choices}") from exc
    start = (
        _time_us(request.start_time, "start_time") if request.HasField("start_time") else -(2**62)
    )
    end = (
        _time_us(request.end_time, "end_time")
        if request.HasField("end_time")
        else time_us(now) + 1
    )
    return PolicyRequest(
        policy=policy,
        channel=request.channel,
        start_us=start,
        end_us=end,
        alpha=request.alpha if request.HasField("alpha") else 0.05,
    )


def policy_report_to_pb(report: PolicyReport) -> pb.EvaluatePolicyResponse:
    """The estimates; an estimator with no value (no decisions) is left out."""
    evaluation = report.evaluation
    estimates = [
        pb.PolicyEstimate(
            estimator=e.estimator.value,
            value=e.value,
            ci_low=e.ci_low if e.ci_low is not None else e.value,
            ci_high=e.ci_high if e.ci_high is not None else e.value,
        )
        for e in evaluation.estimates
        if e.value is not None
    ]
    return pb.EvaluatePolicyResponse(
        estimates=estimates,
        effective_sample_size=evaluation.effective_sample_size or 0.0,
        logged_value=evaluation.logged_value or 0.0,
        decisions=report.decisions,
        warnings=list(dict.fromkeys([*report.warnings, *evaluation.warnings])),
    )
