"""Typed client of the reports: experiment and holdout reports, sample sizes, policy estimates.

Results are the protobuf messages (``ExperimentReport``...), whose fields are CONTRACT.md's;
options take the contract's short names (``method="bayesian"``, ``correction="holm"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc

from ensayo.client.channel import DEFAULT_TIMEOUT_S
from ensayo.v1 import analysis_service_pb2 as pb
from ensayo.v1 import analysis_service_pb2_grpc as pb_grpc
from ensayo.v1 import definitions_pb2 as defs

__all__ = ["CORRECTIONS", "METHODS", "METRIC_KINDS", "AnalysisClient"]

METHODS = {
    "frequentist": pb.ANALYSIS_METHOD_FREQUENTIST,
    "bayesian": pb.ANALYSIS_METHOD_BAYESIAN,
    "sequential": pb.ANALYSIS_METHOD_SEQUENTIAL,
}
CORRECTIONS = {
    "none": pb.CORRECTION_NONE,
    "holm": pb.CORRECTION_HOLM,
    "benjamini_hochberg": pb.CORRECTION_BENJAMINI_HOCHBERG,
}
METRIC_KINDS = {
    "conversion": defs.METRIC_KIND_CONVERSION,
    "mean": defs.METRIC_KIND_MEAN,
    "ratio": defs.METRIC_KIND_RATIO,
}


def _choice(table: dict[str, int], name: str, value: str) -> int:
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"{name} must be one of {', '.join(table)}, not {value!r}") from None


class AnalysisClient:
    """Calls AnalysisService with a deadline on every call; the channel retries UNAVAILABLE."""

    def __init__(self, channel: grpc.Channel, timeout_s: float = 60.0) -> None:
        self._stub = pb_grpc.AnalysisServiceStub(channel)
        self._timeout = timeout_s or DEFAULT_TIMEOUT_S

    def experiment_report(
        self,
        experiment_key: str,
        *,
        metric_keys: Sequence[str] = (),
        method: str = "frequentist",
        cuped: bool = False,
        alpha: float | None = None,
        correction: str = "none",
    ) -> pb.ExperimentReport:
        """Every metric (or ``metric_keys``), every treatment against the control."""
        request = pb.GetExperimentReportRequest(
            experiment_key=experiment_key,
            metric_keys=list(metric_keys),
            method=_choice(METHODS, "method", method),  # type: ignore[arg-type]
            cuped=cuped,
            correction=_choice(CORRECTIONS, "correction", correction),  # type: ignore[arg-type]
        )
        if alpha is not None:
            request.alpha = alpha
        return self._stub.GetExperimentReport(request, timeout=self._timeout).report

    def holdout_report(
        self, holdout_key: str, *, metric_keys: Sequence[str] = (), alpha: float | None = None
    ) -> pb.HoldoutReport:
        """The holdout against everyone else, per metric (every metric when none named)."""
        request = pb.GetHoldoutReportRequest(holdout_key=holdout_key, metric_keys=metric_keys)
        if alpha is not None:
            request.alpha = alpha
        return self._stub.GetHoldoutReport(request, timeout=self._timeout).report

    def plan_sample_size(
        self,
        metric_kind: str,
        *,
        baseline_mean: float,
        minimum_detectable_effect: float,
        baseline_variance: float = 0.0,
        alpha: float | None = None,
        power: float | None = None,
        variants: int | None = None,
    ) -> pb.PlanSampleSizeResponse:
        """Units per variant (and in total) to detect a relative effect."""
        request = pb.PlanSampleSizeRequest(
            metric_kind=_choice(METRIC_KINDS, "metric_kind", metric_kind),  # type: ignore[arg-type]
            baseline_mean=baseline_mean,
            baseline_variance=baseline_variance,
            minimum_detectable_effect=minimum_detectable_effect,
        )
        if alpha is not None:
            request.alpha = alpha
        if power is not None:
            request.power = power
        if variants is not None:
            request.variants = variants
        return self._stub.PlanSampleSize(request, timeout=self._timeout)

    def evaluate_policy(
        self,
        policy: str,
        channel: str,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        alpha: float | None = None,
    ) -> pb.EvaluatePolicyResponse:
        """IPS, SNIPS and DR estimates of ``policy`` from ``channel``'s logged decisions."""
        request = pb.EvaluatePolicyRequest(policy=policy, channel=channel)
        if start_time is not None:
            request.start_time.FromDatetime(start_time)
        if end_time is not None:
            request.end_time.FromDatetime(end_time)
        if alpha is not None:
            request.alpha = alpha
        return self._stub.EvaluatePolicy(request, timeout=self._timeout)
