"""What the analysis use cases need: SQL aggregates, the decision log, the models' rates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ensayo.analysis.model import DecisionLog, ExposureRow, MetricRow
from ensayo.catalog.model import Holdout, Metric

__all__ = ["EventAggregates", "RateSource"]


class EventAggregates(Protocol):
    """Sufficient statistics over stored events, computed where the events are (SQL)."""

    def exposures(self, experiment_key: str) -> Sequence[ExposureRow]:
        """Units per variant and stratum, by each unit's first exposure."""
        ...

    def metrics(
        self, experiment_key: str, metrics: Sequence[Metric]
    ) -> Mapping[str, Sequence[MetricRow]]:
        """Each metric's statistics per variant and stratum (CONTRACT.md metric semantics)."""
        ...

    def holdout_groups(self, holdout: Holdout) -> Sequence[ExposureRow]:
        """Units seen in events, split into ``holdout`` and ``exposed`` by hashing."""
        ...

    def holdout_metrics(
        self, holdout: Holdout, metrics: Sequence[Metric]
    ) -> Mapping[str, Sequence[MetricRow]]:
        """Each metric's statistics for the ``holdout`` and ``exposed`` groups."""
        ...

    def decision_log(self, channel: str, start_us: int, end_us: int) -> DecisionLog:
        """The channel's decisions logged in ``[start_us, end_us)`` and their outcomes."""
        ...


class RateSource(Protocol):
    """The decision models' current response rates (the ``greedy`` candidate and DR's model)."""

    def rates(self) -> Mapping[str, float]:
        """Posterior mean rate per action key; DependencyUnavailable when unreachable."""
        ...
