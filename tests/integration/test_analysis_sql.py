"""SQL aggregation on SQLite and PostgreSQL against raw data recomputed in Python.

Event values are multiples of 0.25, so every sum is exact in floating point and the two
engines must agree to the last bit; the report's numbers are checked against scipy and
statsmodels run on the raw per-unit arrays.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import statsmodels.api as sm
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from scipy import stats as sps

from ensayo.analysis.engine import experiment_report, holdout_report
from ensayo.analysis.model import ReportRequest
from ensayo.catalog.model import Experiment, Holdout, Metric, MetricKind, Variant
from ensayo.events.model import DECISION, EXPOSURE, OUTCOME, Event, exposure_id
from ensayo.hashing import hash_v2_many
from ensayo.storage import engine as sql
from ensayo.storage.aggregates import SqlAggregates
from ensayo.storage.events_repo import SqlEventStore, read_engine
from ensayo.storage.schema import metadata

T0 = datetime(2025, 1, 1, tzinfo=UTC)
KEY = "exp"
CONV = Metric("conv", event_name="purchase", kind=MetricKind.CONVERSION)
REV = Metric("rev", event_name="purchase", kind=MetricKind.MEAN, covariate_event="visit")
RATIO = Metric("aov", event_name="purchase", kind=MetricKind.RATIO, denominator_event="order")


@pytest.fixture
def db(database_url):
    writer = sql.create(database_url)
    sql.migrate(writer)
    reader = read_engine(database_url)
    yield SqlEventStore(writer), SqlAggregates(reader, writer)
    writer.dispose()
    reader.dispose()


def _quarter(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    return np.round(rng.gamma(2.0, scale, size) * 4) / 4


def _dataset(
    seed: int = 7, units: int = 800, lift: float = 0.0, rho: float = 0.0, rate: float = 0.35
):
    """Events for ``units`` units plus the per-unit truth the SQL must reproduce."""
    rng = np.random.default_rng(seed)
    variants = np.where(np.arange(units) % 2 == 0, "control", "treatment")
    x = _quarter(rng, units, 2.0)  # pre-exposure visits' value (the CUPED covariate)
    events: list[Event] = []
    truth = {"variant": variants, "y": np.zeros(units), "conv": np.zeros(units)}
    truth["x"] = np.zeros(units)
    truth["den"] = np.zeros(units)
    for i in range(units):
        unit = f"u{i}"
        t0 = T0 + timedelta(minutes=i)
        events.append(
            Event(
                exposure_id(KEY, 1, unit),
                unit,
                EXPOSURE,
                t0,
                experiment_key=KEY,
                experiment_version=1,
                variant_key=str(variants[i]),
                probability=0.5,
            )
        )
        # A later exposure to the other variant (a new version) must not move the unit.
        other = "control" if variants[i] == "treatment" else "treatment"
        events.append(
            Event(
                exposure_id(KEY, 2, unit),
                unit,
                EXPOSURE,
                t0 + timedelta(days=1),
                experiment_key=KEY,
                experiment_version=2,
                variant_key=other,
            )
        )
        if x[i]:
            events.append(Event(f"v{i}", unit, "visit", t0 - timedelta(hours=1), float(x[i])))
            truth["x"][i] = x[i]
        events.append(Event(f"late-visit{i}", unit, "visit", t0 + timedelta(hours=1), 3.0))
        events.append(Event(f"pre{i}", unit, "purchase", t0 - timedelta(seconds=1), 100.0))
        base = rate + (lift if variants[i] == "treatment" else 0.0)
        if rng.random() < base:
            count = int(rng.integers(1, 3))
            for k in range(count):
                noise = float(_quarter(rng, 1, 1.0)[0])
                value = float(np.round((rho * x[i] + noise) * 4) / 4) + 0.25
                events.append(
                    Event(f"p{i}-{k}", unit, "purchase", t0 + timedelta(minutes=k), value)
                )
                events.append(Event(f"o{i}-{k}", unit, "order", t0 + timedelta(minutes=k), 1.0))
                truth["y"][i] += value
                truth["den"][i] += 1.0
            truth["conv"][i] = 1.0
    # Noise that must not count: another experiment, units never exposed.
    events.append(Event("other", "u1", EXPOSURE, T0, experiment_key="other", variant_key="a"))
    events.append(Event("stranger", "nobody", "purchase", T0, 5.0))
    return events, truth


def _arms(truth, field: str):
    return [truth[field][truth["variant"] == v] for v in ("control", "treatment")]


def _experiment(**kwargs) -> Experiment:
    return Experiment(KEY, (Variant("control"), Variant("treatment")), **kwargs)


class TestSchema:
    def test_migrations_build_exactly_the_declared_schema(self, database_url) -> None:
        """Alembic's autogenerate finds no difference between the migrations and schema.py."""
        engine = sql.create(database_url)
        sql.migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        engine.dispose()
        assert diff == []


class TestAggregation:
    def test_sufficient_statistics_equal_the_raw_data_one_row_per_variant(self, db) -> None:
        """Exact sums on both engines; first exposure wins; only one row per variant returns."""
        store, aggregates = db
        events, truth = _dataset()
        store.write(events[: len(events) // 2])
        store.write(events[len(events) // 3 :])  # overlapping batches: stored once
        aggregates.last_row_counts.clear()
        exposures = {r.variant_key: r.units for r in aggregates.exposures(KEY)}
        assert exposures == {"control": 400, "treatment": 400}
        for metric, field in ((CONV, "conv"), (REV, "y"), (RATIO, "y")):
            rows = {r.variant_key: r for r in aggregates.metric(KEY, metric)}
            for variant, values in zip(("control", "treatment"), _arms(truth, field), strict=True):
                row = rows[variant]
                assert (row.n, row.y_sum, row.y_sum_squares) == (
                    values.size,
                    float(values.sum()),
                    float(values @ values),
                )
        rows = {r.variant_key: r for r in aggregates.metric(KEY, REV)}
        x_arms, y_arms = _arms(truth, "x"), _arms(truth, "y")
        for variant, xs, ys in zip(("control", "treatment"), x_arms, y_arms, strict=True):
            assert (rows[variant].x_sum, rows[variant].x_sum_squares) == (xs.sum(), xs @ xs)
            assert rows[variant].xy_cross == xs @ ys
        rows = {r.variant_key: r for r in aggregates.metric(KEY, RATIO)}
        for variant, ds, ys in zip(
            ("control", "treatment"), _arms(truth, "den"), y_arms, strict=True
        ):
            assert (rows[variant].d_sum, rows[variant].yd_cross) == (ds.sum(), ds @ ys)
        assert list(aggregates.last_row_counts) == [2] * 6

    def test_allocation_periods_come_back_one_row_per_variant_and_stratum(self, db) -> None:
        """Bandit exposures carry allocation_version: rows per (variant, period)."""
        store, aggregates = db
        events = []
        for i in range(90):
            variant = ("control", "treatment")[i % 2]
            events.append(
                Event(
                    f"x{i}",
                    f"u{i}",
                    EXPOSURE,
                    T0 + timedelta(seconds=i),
                    experiment_key=KEY,
                    variant_key=variant,
                    probability=0.5,
                    allocation_version=1 + i // 30,
                )
            )
        store.write(events)
        aggregates.last_row_counts.clear()
        rows = aggregates.metric(KEY, CONV)
        assert sorted((r.variant_key, r.stratum, r.n) for r in rows) == [
            (v, s, 15) for v in ("control", "treatment") for s in (1, 2, 3)
        ]
        assert list(aggregates.last_row_counts) == [6]


class TestReportNumbers:
    def _report(self, aggregates, metrics, **options):
        experiment = _experiment(metrics=tuple(m.key for m in metrics))
        rows = {m.key: aggregates.metric(KEY, m) for m in metrics}
        return experiment_report(
            experiment, metrics, aggregates.exposures(KEY), rows, ReportRequest(KEY, **options), T0
        )

    def test_mean_and_conversion_match_scipy_welch(self, db) -> None:
        """Lift, interval and p-value equal scipy.stats.ttest_ind(equal_var=False) on raw data."""
        store, aggregates = db
        events, truth = _dataset(lift=0.1)
        store.write(events)
        report = self._report(aggregates, [CONV, REV])
        for result, field in zip(report.metrics, ("conv", "y"), strict=True):
            control, treatment = _arms(truth, field)
            reference = sps.ttest_ind(treatment, control, equal_var=False)
            low, high = reference.confidence_interval(0.95)
            c = result.comparisons[0].comparison
            assert c.absolute_lift == pytest.approx(treatment.mean() - control.mean(), rel=1e-12)
            assert c.p_value == pytest.approx(reference.pvalue, rel=1e-9)
            assert (c.ci_low, c.ci_high) == pytest.approx((low, high), rel=1e-9)

    def test_ratio_matches_the_delta_method_on_raw_data(self, db) -> None:
        """Ratio = Σy/Σd per arm; its variance is Deng et al.'s delta method (z test)."""
        store, aggregates = db
        events, truth = _dataset(lift=0.1)
        store.write(events)
        c = self._report(aggregates, [RATIO]).metrics[0].comparisons[0].comparison

        def delta(y, d):
            r = y.sum() / d.sum()
            cov = np.cov(y, d, ddof=1)
            var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (y.size * d.mean() ** 2)
            return r, var

        (rc, vc), (rt, vt) = (
            delta(y, d) for y, d in zip(_arms(truth, "y"), _arms(truth, "den"), strict=True)
        )
        z = (rt - rc) / np.sqrt(vc + vt)
        assert c.absolute_lift == pytest.approx(rt - rc, rel=1e-12)
        assert c.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)

    def test_cuped_narrows_the_interval_and_equals_ancova(self, db) -> None:
        """With correlated pre-period data, CUPED's lift is OLS's treatment coefficient."""
        store, aggregates = db
        events, truth = _dataset(seed=11, units=1200, lift=0.0, rho=2.0, rate=1.0)
        store.write(events)
        plain = self._report(aggregates, [REV]).metrics[0].comparisons[0].comparison
        cuped = self._report(aggregates, [REV], cuped=True).metrics[0].comparisons[0].comparison
        assert cuped.ci_high - cuped.ci_low < 0.9 * (plain.ci_high - plain.ci_low)
        assert cuped.variance_reduction > 0.1
        design = np.column_stack(
            [np.ones(truth["y"].size), truth["variant"] == "treatment", truth["x"]]
        ).astype(float)
        ols = sm.OLS(truth["y"], design).fit()
        assert cuped.absolute_lift == pytest.approx(ols.params[1], rel=1e-9)

    def test_sample_ratio_mismatch_is_caught(self, db) -> None:
        """Dropping a third of the treatment's exposures trips the SRM check."""
        store, aggregates = db
        events, _ = _dataset()
        # Lose every exposure of one treatment unit in three (units 1, 7, 13...).
        kept = [e for e in events if not (e.name == EXPOSURE and int(e.unit_id[1:]) % 6 == 1)]
        store.write(kept)
        report = self._report(aggregates, [CONV])
        assert not report.srm.ok
        assert report.warnings[0].startswith("Sample ratio mismatch")


class TestHoldoutAggregation:
    def test_membership_is_growthbook_hash_below_the_fraction(self, db) -> None:
        """Groups equal hash_v2(seed, unit) < fraction over every unit seen in events."""
        store, aggregates = db
        events, _ = _dataset(units=400)
        store.write(events)
        holdout = Holdout("global", fraction=0.2)
        units = sorted({e.unit_id for e in events})
        held = hash_v2_many(holdout.seed, units) < 0.2
        groups = {g.variant_key: g.units for g in aggregates.holdout_groups(holdout)}
        assert groups == {"holdout": int(held.sum()), "exposed": int((~held).sum())}
        purchases: dict[str, float] = {}
        for e in events:
            if e.name == "purchase":
                purchases[e.unit_id] = purchases.get(e.unit_id, 0.0) + e.value
        rows = {r.variant_key: r for r in aggregates.holdout_metric(holdout, REV)}
        expected = np.array([purchases.get(u, 0.0) for u in units])
        assert rows["holdout"].y_sum == expected[held].sum()
        assert rows["exposed"].y_sum == expected[~held].sum()
        report = holdout_report(
            holdout, [REV], aggregates.holdout_groups(holdout), {"rev": list(rows.values())}, 0.05
        )
        assert report.metrics[0].comparisons[0].treatment_units == int((~held).sum())


class TestDecisionLog:
    def test_decisions_and_outcomes_of_a_channel_and_window(self, db) -> None:
        """$decision/$outcome events come back parsed; holdout and other channels apart."""
        store, aggregates = db

        def decision(i: int, channel: str = "email", holdout: bool = False) -> Event:
            chosen = [] if holdout else [{"action_key": "a", "propensity": 0.5, "score": 1.0}]
            return Event(
                f"d{i}",
                f"u{i}",
                DECISION,
                T0 + timedelta(minutes=i),
                properties={
                    "channel": channel,
                    "placement": "hero",
                    "candidates": ["a", "b"],
                    "chosen": chosen,
                    "holdout": holdout,
                    "policy_version": "7",
                },
            )

        store.write(
            [
                decision(1),
                decision(2),
                decision(3, channel="push"),
                decision(4, holdout=True),
                decision(99),
                Event(
                    "r1", "u1", OUTCOME, T0, 2.0, decision_id="d1", properties={"action_key": "a"}
                ),
                Event("r2", "u2", OUTCOME, T0, 1.0, decision_id="d2"),
            ]
        )
        log = aggregates.decision_log("email", 0, int((T0 + timedelta(hours=1)).timestamp() * 1e6))
        assert [d.decision_id for d in log.decisions] == ["d1", "d2", "d4"]
        assert [d.holdout for d in log.decisions] == [False, False, True]
        assert sorted((o["decision_id"], o["action_key"], o["value"]) for o in log.outcomes) == [
            ("d1", "a", 2.0),
            ("d2", "a", 1.0),
        ]
