"""What the analysis service reads (aggregate rows from SQL) and what it answers (reports).

Aggregate rows are the only data that reach Python for a report: one row per variant and
allocation period (stratum), already reduced to sufficient statistics by the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ensayo.decisioning.evaluation import CandidatePolicy, LoggedDecision
from ensayo.stats import (
    AnalysisMethod,
    Comparison,
    Correction,
    MetricKind,
    PolicyEvaluation,
    SrmResult,
)

__all__ = [
    "CandidatePolicy",
    "DecisionLog",
    "ExperimentReport",
    "ExposureRow",
    "HoldoutReport",
    "MetricResult",
    "MetricRow",
    "PolicyReport",
    "PolicyRequest",
    "ReportRequest",
    "VariantComparison",
    "VariantSummary",
]


@dataclass(frozen=True, slots=True)
class ExposureRow:
    """Units whose first exposure fell in one variant and allocation period.

    ``stratum`` is the first exposure's ``allocation_version`` (0 for fixed allocation);
    ``probability`` the largest assignment probability logged on those exposures (0 when
    the exposures did not log one). For a holdout report the "variant" is the group.
    """

    variant_key: str
    stratum: int
    units: int
    probability: float = 0.0


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One metric's sufficient statistics over the units of one variant and stratum.

    Per unit, ``y`` is the metric's value (0/1 for conversions, the sum of values for means,
    the numerator for ratios), ``x`` the CUPED covariate (0 when the metric has none) and
    ``d`` the ratio's denominator (0 unless a ratio). ``events`` counts the metric's events
    that entered the sums.
    """

    variant_key: str
    stratum: int
    n: int
    y_sum: float = 0.0
    y_sum_squares: float = 0.0
    x_sum: float = 0.0
    x_sum_squares: float = 0.0
    xy_cross: float = 0.0
    d_sum: float = 0.0
    d_sum_squares: float = 0.0
    yd_cross: float = 0.0
    events: int = 0


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """``GetExperimentReport``'s options, contract defaults filled in."""

    experiment_key: str
    metric_keys: tuple[str, ...] = ()
    method: AnalysisMethod = AnalysisMethod.FREQUENTIST
    cuped: bool = False
    alpha: float = 0.05
    correction: Correction = Correction.NONE


@dataclass(frozen=True, slots=True)
class VariantSummary:
    """Distinct exposed units of a variant and the share the allocation intended."""

    key: str
    units: int
    expected_share: float


@dataclass(frozen=True, slots=True)
class VariantComparison:
    """A treatment against the control with the units behind each side."""

    comparison: Comparison
    control_units: int
    treatment_units: int


@dataclass(frozen=True, slots=True)
class MetricResult:
    """Every treatment against the control for one metric."""

    metric_key: str
    kind: MetricKind
    lower_is_better: bool
    comparisons: tuple[VariantComparison, ...]


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    """The experiment report of CONTRACT.md; ``srm`` first, primary metric first."""

    experiment_key: str
    method: AnalysisMethod
    variants: tuple[VariantSummary, ...]
    srm: SrmResult
    metrics: tuple[MetricResult, ...]
    warnings: tuple[str, ...]
    recommendation: str
    alpha: float
    correction: Correction
    weighting: str
    generate_time: datetime


@dataclass(frozen=True, slots=True)
class HoldoutReport:
    """A holdout ("holdout", the control) against everyone else ("exposed")."""

    holdout_key: str
    groups: tuple[VariantSummary, ...]
    metrics: tuple[MetricResult, ...]
    warnings: tuple[str, ...]
    srm: SrmResult


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """``EvaluatePolicy``'s options; times are microseconds since the epoch, end exclusive."""

    policy: CandidatePolicy
    channel: str
    start_us: int
    end_us: int
    alpha: float = 0.05


@dataclass(frozen=True, slots=True)
class DecisionLog:
    """A channel's logged decisions in a window and the outcomes that reward them.

    ``decisions`` are parsed ``$decision`` events; ``outcomes`` are ``{decision_id,
    action_key, value}`` dicts (the shape ``ensayo.decisioning.evaluation`` reads);
    ``malformed`` counts ``$decision`` events whose properties could not be read.
    """

    decisions: tuple[LoggedDecision, ...]
    outcomes: tuple[dict[str, object], ...]
    malformed: int = 0


@dataclass(frozen=True, slots=True)
class PolicyReport:
    """Off-policy estimates of a candidate policy from the logged decisions of a channel."""

    policy: CandidatePolicy
    evaluation: PolicyEvaluation
    decisions: int
    warnings: tuple[str, ...] = ()
