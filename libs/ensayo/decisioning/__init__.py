"""Next-best-action: the decision funnel, contact policies, learning and evaluation inputs.

Pure domain code (numpy, no transport or storage): ``model`` (queries, decisions, settings),
``compiled`` (a snapshot compiled per version), ``contacts`` (contact-policy rules),
``engine`` (screen, score, choose), ``learning`` (model parameters), ``holder`` (parameters
in memory), ``usecases`` (Decide, DecideBatch, ReportOutcome over ``ports``) and
``evaluation`` (off-policy evaluation inputs). See ``docs/decisioning.md``.
"""

from __future__ import annotations

from ensayo.decisioning.model import (
    MAX_ACTIONS,
    MAX_BATCH_UNITS,
    BatchQuery,
    DecideQuery,
    Decision,
    DecisioningSettings,
    DecisionRecord,
    FailureMode,
    ModelKind,
    Outcome,
    OutcomeResult,
    RankedAction,
    Stage,
    Subject,
)

__all__ = [
    "MAX_ACTIONS",
    "MAX_BATCH_UNITS",
    "BatchQuery",
    "DecideQuery",
    "Decision",
    "DecisionRecord",
    "DecisioningSettings",
    "FailureMode",
    "ModelKind",
    "Outcome",
    "OutcomeResult",
    "RankedAction",
    "Stage",
    "Subject",
]
