"""Assignment: deterministic A/B/n bucketing with holdouts, layers, targeting, sticky and bandits.

Pure domain (``model``, ``engine``, ``bandit``) and use cases doing I/O through ``ports``.
See ``docs/assignment.md``.
"""

from __future__ import annotations

from ensayo.assignment.model import (
    MAX_BATCH_UNITS,
    MAX_EXPERIMENT_KEYS,
    MAX_UNIT_ID_CHARS,
    Assignment,
    AssignQuery,
    BanditAllocation,
    BatchQuery,
    BatchResult,
    Membership,
    MembershipKind,
    Reason,
    Unit,
)

__all__ = [
    "MAX_BATCH_UNITS",
    "MAX_EXPERIMENT_KEYS",
    "MAX_UNIT_ID_CHARS",
    "AssignQuery",
    "Assignment",
    "BanditAllocation",
    "BatchQuery",
    "BatchResult",
    "Membership",
    "MembershipKind",
    "Reason",
    "Unit",
]
