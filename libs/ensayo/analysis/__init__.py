"""Experiment, holdout and policy reports assembled from SQL aggregates (docs/analysis.md).

Storage computes sufficient statistics (``ensayo.storage.aggregates``); ``engine`` turns them
into reports with ``ensayo.stats``; ``usecases`` also scores candidate decision policies
offline with ``ensayo.decisioning.evaluation``.
"""

from __future__ import annotations

from ensayo.analysis.engine import MIN_UNITS_PER_VARIANT, experiment_report, holdout_report
from ensayo.analysis.model import (
    CandidatePolicy,
    DecisionLog,
    ExperimentReport,
    ExposureRow,
    HoldoutReport,
    MetricResult,
    MetricRow,
    PolicyReport,
    PolicyRequest,
    ReportRequest,
    VariantComparison,
    VariantSummary,
)
from ensayo.analysis.usecases import AnalysisUseCases

__all__ = [
    "MIN_UNITS_PER_VARIANT",
    "AnalysisUseCases",
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
    "experiment_report",
    "holdout_report",
]
