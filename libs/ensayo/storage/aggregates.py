"""Sufficient statistics computed in SQL (SQLAlchemy Core), one grouped query per metric.

The database does the heavy part: each unit's first exposure (a window function), each unit's
metric value after it and covariate before it (grouped joins), and the per-variant sums, sums
of squares and cross-products. Only one row per variant and allocation period comes back,
so the same code runs on SQLite, PostgreSQL or any warehouse with a SQLAlchemy dialect.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Double,
    Engine,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    select,
)

from ensayo.analysis.engine import HOLDOUT_GROUPS
from ensayo.analysis.model import DecisionLog, ExposureRow, MetricRow
from ensayo.catalog.model import Holdout, Metric, MetricKind
from ensayo.decisioning.evaluation import LoggedDecision, parse_decision
from ensayo.errors import InvalidArgument
from ensayo.events.model import EXPOSURE
from ensayo.hashing import hash_v2_many
from ensayo.storage.events_repo import insert_ignoring_duplicates
from ensayo.storage.schema import (
    decisions,
    event_units,
    events,
    outcomes,
    unit_hashes,
)

__all__ = ["HASH_CHUNK", "SqlAggregates"]

HASH_CHUNK = 50_000
"""Unit ids hashed and inserted per round when the hash cache catches up."""


def _double(value: float) -> ColumnElement[float]:
    # A typed literal: PostgreSQL would otherwise sum numeric and hand back Decimals.
    return cast(literal(value), Double)


def _first_exposures(experiment_key: str) -> CTE:
    """Per unit: the variant, stratum, time and probability of its first exposure."""
    e = events
    ranked = (
        select(
            e.c.unit_id,
            e.c.variant_key,
            e.c.allocation_version,
            e.c.time_us,
            e.c.probability,
            func.row_number()
            .over(partition_by=e.c.unit_id, order_by=(e.c.time_us, e.c.event_id))
            .label("rn"),
        )
        .where(e.c.experiment_key == experiment_key, e.c.name == EXPOSURE)
        .subquery("ranked")
    )
    return (
        select(
            ranked.c.unit_id,
            ranked.c.variant_key.label("grp"),
            ranked.c.allocation_version.label("stratum"),
            ranked.c.time_us.label("t0"),
            ranked.c.probability,
        )
        .where(ranked.c.rn == 1)
        .cte("first_exposure")
    )


def _metrics_query(population: CTE, metrics: Sequence[Metric], *, timed: bool) -> Any:
    """Every metric's sums per group and stratum over ``population``, in one grouped query.

    ``population`` has ``unit_id``, ``grp``, ``stratum`` (and ``t0``, the first exposure,
    when ``timed``). Each unit's events of the metrics' names are joined once (an index
    range per unit on the covering ``(name, unit_id, time_us, value)``) and folded per unit
    with conditional sums (outcomes and denominators at or after ``t0``, covariates before
    it; a sum shared by several metrics is computed once), then summed per group. One pass
    over the events serves the whole report; a single join and two GROUP BYs keep the plan
    safe even on stale statistics. Columns of metric ``i`` are prefixed ``m{i}_``.
    """
    e = events.alias("metric_events")
    zero = _double(0.0)
    after = e.c.time_us >= population.c.t0 if timed else None
    before = e.c.time_us < population.c.t0 if timed else None
    unit_columns: dict[tuple[str, str, bool], Any] = {}

    def per_unit_column(name: str, window: str, count: bool = False) -> str:
        label = f"{'n' if count else 's'}{len(unit_columns)}"
        key = (name, window, count)
        if key not in unit_columns:
            when = e.c.name == name
            bound = {"after": after, "before": before}.get(window)
            if bound is not None:
                when = and_(when, bound)
            if count:
                unit_columns[key] = func.count(case((when, 1))).label(label)
            else:
                unit_columns[key] = func.coalesce(func.sum(case((when, e.c.value))), zero).label(
                    label
                )
        return str(unit_columns[key].name)

    window = "after" if timed else "all"
    plan = []
    for metric in metrics:
        ratio = metric.kind is MetricKind.RATIO and bool(metric.denominator_event)
        plan.append(
            (
                metric,
                per_unit_column(metric.event_name, window),
                per_unit_column(metric.event_name, window, count=True),
                per_unit_column(metric.covariate_event, "before")
                if metric.covariate_event and timed
                else None,
                per_unit_column(metric.denominator_event, window) if ratio else None,
            )
        )
    names = {key[0] for key in unit_columns}
    joined = population.outerjoin(
        e, and_(e.c.unit_id == population.c.unit_id, e.c.name.in_(sorted(names)))
    )
    per_unit = (
        select(population.c.grp, population.c.stratum, *unit_columns.values())
        .select_from(joined)
        .group_by(population.c.unit_id, population.c.grp, population.c.stratum)
        .subquery("per_unit")
    )
    sums: list[Any] = []
    for i, (metric, total, count, covariate, denominator) in enumerate(plan):
        events_count = per_unit.c[count]
        if metric.kind is MetricKind.MEAN or metric.kind is MetricKind.RATIO:
            y: ColumnElement[float] = per_unit.c[total]
        else:  # conversion: did the unit have at least one event
            y = case((events_count > 0, _double(1.0)), else_=zero)
        x = per_unit.c[covariate] if covariate else zero
        d = per_unit.c[denominator] if denominator else zero
        sums += [
            func.sum(y).label(f"m{i}_y_sum"),
            func.sum(y * y).label(f"m{i}_y_sum_squares"),
            func.sum(x).label(f"m{i}_x_sum"),
            func.sum(x * x).label(f"m{i}_x_sum_squares"),
            func.sum(x * y).label(f"m{i}_xy_cross"),
            func.sum(d).label(f"m{i}_d_sum"),
            func.sum(d * d).label(f"m{i}_d_sum_squares"),
            func.sum(y * d).label(f"m{i}_yd_cross"),
            func.sum(events_count).label(f"m{i}_events"),
        ]
    return (
        select(
            per_unit.c.grp.label("variant_key"),
            per_unit.c.stratum.label("stratum"),
            func.count().label("n"),
            *sums,
        )
        .group_by(per_unit.c.grp, per_unit.c.stratum)
        .order_by(per_unit.c.grp, per_unit.c.stratum)
    )


def _as_float(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _metric_rows(rows: Sequence[Any], index: int) -> list[MetricRow]:
    """Metric ``index``'s rows of a :func:`_metrics_query` result."""

    def get(row: Any, field: str) -> float:
        return _as_float(row._mapping[f"m{index}_{field}"])

    return [
        MetricRow(
            variant_key=str(r.variant_key),
            stratum=int(r.stratum),
            n=int(r.n),
            y_sum=get(r, "y_sum"),
            y_sum_squares=get(r, "y_sum_squares"),
            x_sum=get(r, "x_sum"),
            x_sum_squares=get(r, "x_sum_squares"),
            xy_cross=get(r, "xy_cross"),
            d_sum=get(r, "d_sum"),
            d_sum_squares=get(r, "d_sum_squares"),
            yd_cross=get(r, "yd_cross"),
            events=int(get(r, "events")),
        )
        for r in rows
    ]


def _split(rows: Sequence[Any], metrics: Sequence[Metric]) -> dict[str, list[MetricRow]]:
    return {m.key: _metric_rows(rows, i) for i, m in enumerate(metrics)}


class SqlAggregates:
    """``EventAggregates`` over the events tables.

    ``reader`` runs the reports (``events_repo.read_engine``: it never blocks the consumer);
    ``writer`` fills the hash cache that holdout membership joins on.
    """

    def __init__(self, reader: Engine, writer: Engine | None = None) -> None:
        self._reader = reader
        self._writer = writer or reader
        # Rows each recent query returned: the check that only per-variant rows reach Python.
        self.last_row_counts: deque[int] = deque(maxlen=64)

    def _fetch(self, query: Any) -> list[Any]:
        with self._reader.connect() as conn:
            rows = list(conn.execute(query))
        self.last_row_counts.append(len(rows))
        return rows

    def exposures(self, experiment_key: str) -> list[ExposureRow]:
        """Distinct units per variant and stratum, by first exposure."""
        first = _first_exposures(experiment_key)
        query = (
            select(
                first.c.grp,
                first.c.stratum,
                func.count().label("units"),
                func.max(first.c.probability).label("probability"),
            )
            .group_by(first.c.grp, first.c.stratum)
            .order_by(first.c.grp, first.c.stratum)
        )
        return [
            ExposureRow(str(r.grp), int(r.stratum), int(r.units), _as_float(r.probability))
            for r in self._fetch(query)
        ]

    def metrics(
        self, experiment_key: str, metrics: Sequence[Metric]
    ) -> dict[str, list[MetricRow]]:
        """One grouped query: every metric's statistics per variant and stratum."""
        if not metrics:
            return {}
        query = _metrics_query(_first_exposures(experiment_key), metrics, timed=True)
        return _split(self._fetch(query), metrics)

    def metric(self, experiment_key: str, metric: Metric) -> list[MetricRow]:
        """One metric's statistics per variant and stratum."""
        return self.metrics(experiment_key, [metric])[metric.key]

    # --- holdouts -------------------------------------------------------------------------

    def _fill_hashes(self, seed: str) -> None:
        """Hash every unit seen in events but not yet cached for ``seed`` (incremental)."""
        uh = unit_hashes
        missing = select(event_units.c.unit_id).where(
            ~exists().where(uh.c.seed == seed, uh.c.unit_id == event_units.c.unit_id)
        )
        with self._reader.connect() as conn:
            ids = list(conn.execute(missing).scalars())
        for start in range(0, len(ids), HASH_CHUNK):
            chunk = ids[start : start + HASH_CHUNK]
            hashes = hash_v2_many(seed, chunk)
            rows = [
                {"seed": seed, "unit_id": u, "hash": float(h)}
                for u, h in zip(chunk, hashes, strict=True)
            ]
            with self._writer.begin() as conn:
                insert_ignoring_duplicates(conn, uh, rows)

    def _members(self, holdout: Holdout) -> CTE:
        self._fill_hashes(holdout.seed)
        uh = unit_hashes
        group = case(
            (uh.c.hash < holdout.fraction, literal(HOLDOUT_GROUPS[0])),
            else_=literal(HOLDOUT_GROUPS[1]),
        )
        return (
            select(uh.c.unit_id, group.label("grp"), literal(0).label("stratum"))
            .where(uh.c.seed == holdout.seed)
            .cte("members")
        )

    def holdout_groups(self, holdout: Holdout) -> list[ExposureRow]:
        """Units seen in events per group (hash of the holdout's seed below its fraction)."""
        members = self._members(holdout)
        query = (
            select(members.c.grp, func.count().label("units"))
            .group_by(members.c.grp)
            .order_by(members.c.grp)
        )
        return [ExposureRow(str(r.grp), 0, int(r.units)) for r in self._fetch(query)]

    def holdout_metrics(
        self, holdout: Holdout, metrics: Sequence[Metric]
    ) -> dict[str, list[MetricRow]]:
        """Metrics per group over all of each unit's events (there is no exposure time)."""
        if not metrics:
            return {}
        query = _metrics_query(self._members(holdout), metrics, timed=False)
        return _split(self._fetch(query), metrics)

    def holdout_metric(self, holdout: Holdout, metric: Metric) -> list[MetricRow]:
        """One metric per group (see :meth:`holdout_metrics`)."""
        return self.holdout_metrics(holdout, [metric])[metric.key]

    # --- decision log ---------------------------------------------------------------------

    def decision_log(self, channel: str, start_us: int, end_us: int) -> DecisionLog:
        """The channel's ``$decision`` events in ``[start_us, end_us)`` and their outcomes.

        An outcome without ``action_key`` rewards the decision's first delivered action.
        """
        d, e, o = decisions, events, outcomes
        window = and_(d.c.channel == channel, d.c.time_us >= start_us, d.c.time_us < end_us)
        logged = (
            select(d.c.decision_id, e.c.properties)
            .select_from(d.join(e, e.c.event_id == d.c.decision_id))
            .where(window)
            .order_by(d.c.time_us, d.c.decision_id)
        )
        rewards = (
            select(o.c.decision_id, o.c.action_key, o.c.reward)
            .select_from(o.join(d, d.c.decision_id == o.c.decision_id))
            .where(window)
        )
        parsed: list[LoggedDecision] = []
        malformed = 0
        with self._reader.connect() as conn:
            for row in conn.execute(logged):
                try:
                    props = json.loads(row.properties)
                    parsed.append(
                        parse_decision({"decision_id": row.decision_id, "properties": props})
                    )
                except (ValueError, TypeError, InvalidArgument):
                    malformed += 1
            reward_rows = list(conn.execute(rewards))
        first = {x.decision_id: x.chosen[0][0] for x in parsed if x.chosen}
        paid = tuple(
            {
                "decision_id": str(r.decision_id),
                "action_key": str(r.action_key) or first.get(str(r.decision_id), ""),
                "value": float(r.reward),
            }
            for r in reward_rows
        )
        return DecisionLog(tuple(parsed), paid, malformed)
