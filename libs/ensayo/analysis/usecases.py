"""The analysis use cases: look definitions up, fetch SQL aggregates, assemble reports.

Definitions come from the catalog's SQL repository (the source of truth, not a snapshot), so a
report always reflects the latest definition and an unknown key is ``NotFound``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ensayo.analysis import engine
from ensayo.analysis.model import (
    ExperimentReport,
    HoldoutReport,
    PolicyReport,
    PolicyRequest,
    ReportRequest,
)
from ensayo.analysis.ports import EventAggregates, RateSource
from ensayo.catalog.model import Action, Definition, Experiment, Holdout, Kind, Metric
from ensayo.catalog.ports import CatalogRepository, Clock
from ensayo.catalog.usecases import list_all
from ensayo.decisioning.evaluation import CandidatePolicy, evaluate
from ensayo.errors import DependencyUnavailable, InvalidArgument, NotFound
from ensayo.stats import sample_size

__all__ = ["AnalysisUseCases"]


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InvalidArgument("alpha", "must be in (0, 1)")


class AnalysisUseCases:
    """Reports over stored events; pure assembly in ``ensayo.analysis.engine``."""

    def __init__(
        self,
        catalog: CatalogRepository,
        aggregates: EventAggregates,
        clock: Clock,
        rates: RateSource | None = None,
    ) -> None:
        self._catalog = catalog
        self._aggregates = aggregates
        self._clock = clock
        self._rates = rates

    def _all(self, kind: Kind) -> list[Definition]:
        return list_all(self._catalog, kind)

    def _metrics(self, keys: Sequence[str]) -> list[Metric]:
        metrics = []
        for key in dict.fromkeys(keys):
            metric = self._catalog.get(Kind.METRIC, key)
            if not isinstance(metric, Metric):
                raise NotFound("metric", key)
            metrics.append(metric)
        return metrics

    def experiment_report(self, request: ReportRequest) -> ExperimentReport:
        """Every metric, every treatment against control (CONTRACT.md, GetExperimentReport)."""
        if not request.experiment_key:
            raise InvalidArgument("experiment_key", "required")
        _check_alpha(request.alpha)
        experiment = self._catalog.get(Kind.EXPERIMENT, request.experiment_key)
        if not isinstance(experiment, Experiment):
            raise NotFound("experiment", request.experiment_key)
        metrics = self._metrics(request.metric_keys or experiment.metrics)
        exposures = self._aggregates.exposures(experiment.key)
        rows = self._aggregates.metrics(experiment.key, metrics)
        return engine.experiment_report(
            experiment, metrics, exposures, rows, request, self._clock()
        )

    def holdout_report(
        self, holdout_key: str, metric_keys: Sequence[str] = (), alpha: float = 0.05
    ) -> HoldoutReport:
        """The holdout against everyone else; every catalog metric when none is named."""
        if not holdout_key:
            raise InvalidArgument("holdout_key", "required")
        _check_alpha(alpha)
        holdout = self._catalog.get(Kind.HOLDOUT, holdout_key)
        if not isinstance(holdout, Holdout):
            raise NotFound("holdout", holdout_key)
        if metric_keys:
            metrics = self._metrics(metric_keys)
        else:
            metrics = [m for m in self._all(Kind.METRIC) if isinstance(m, Metric)]
        groups = self._aggregates.holdout_groups(holdout)
        rows = self._aggregates.holdout_metrics(holdout, metrics)
        return engine.holdout_report(holdout, metrics, groups, rows, alpha)

    plan_sample_size = staticmethod(sample_size)
    """Units per variant to detect a relative effect (``ensayo.stats.sample_size``)."""

    def evaluate_policy(self, request: PolicyRequest) -> PolicyReport:
        """IPS, SNIPS and DR estimates of a candidate policy over a channel's decision log.

        The candidates and their target probabilities are ``ensayo.decisioning.evaluation``'s
        (priority tiers respected, ties split); ``greedy`` and DR's reward model use the
        decision models' current Beta rates. Those rates are required for ``greedy``; for the
        other candidates an unreachable model store only costs DR its model (with a warning).
        """
        if not request.channel:
            raise InvalidArgument("channel", "required")
        _check_alpha(request.alpha)
        if request.end_us <= request.start_us:
            raise InvalidArgument("end_time", "must be after start_time")
        log = self._aggregates.decision_log(request.channel, request.start_us, request.end_us)
        warnings: list[str] = []
        if log.malformed:
            warnings.append(f"{log.malformed} logged decisions could not be read and were skipped")
        rates: dict[str, float] = {}
        try:
            rates = dict(self._rates.rates()) if self._rates is not None else {}
        except DependencyUnavailable:
            if request.policy is CandidatePolicy.GREEDY:
                raise
            warnings.append("the decision models are unreachable: DR uses a flat reward model")
        if request.policy is CandidatePolicy.GREEDY and not rates:
            warnings.append("no decision model has evidence yet: greedy ranks by value alone")
        actions = {
            a.key: a
            for a in self._all(Kind.ACTION)
            if isinstance(a, Action) and a.channel in ("", request.channel)
        }
        evaluation = evaluate(
            log.decisions, log.outcomes, request.policy, actions, rates, alpha=request.alpha
        )
        used = sum(1 for d in log.decisions if d.chosen and not d.holdout)
        return PolicyReport(request.policy, evaluation, used, tuple(warnings))
