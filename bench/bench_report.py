"""Report benchmark: an experiment report over 10,000,000 events, aggregated in SQL.

Run: ``.venv/bin/python -m bench report`` or ``.venv/bin/python bench/bench_report.py
[--events N] [--no-postgres]`` (a few minutes). Synthetic events go straight into the events
table (bulk insert without indexes, then the indexes are built, as a restore would), then
``AnalysisUseCases.experiment_report`` runs exactly as the service runs it: one grouped
query for the report's metrics, one row per variant back to Python. SQLite always;
PostgreSQL too when ``ENSAYO_TEST_POSTGRES_URL``'s server (default
``postgres@127.0.0.1:5432``) answers.

``main()`` prints and returns the markdown section saved as ``docs/benchmarks/report.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "libs", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from ensayo.analysis.model import ReportRequest  # noqa: E402
from ensayo.analysis.usecases import AnalysisUseCases  # noqa: E402
from ensayo.catalog.model import (  # noqa: E402
    Experiment,
    ExperimentState,
    Kind,
    Metric,
    MetricKind,
    Variant,
)
from ensayo.catalog.usecases import CatalogUseCases  # noqa: E402
from ensayo.storage import engine as sql  # noqa: E402
from ensayo.storage.aggregates import SqlAggregates  # noqa: E402
from ensayo.storage.catalog_repo import SqlCatalogRepository  # noqa: E402
from ensayo.storage.events_repo import read_engine  # noqa: E402
from ensayo.storage.schema import events as events_table  # noqa: E402

EVENTS = 10_000_000
UNITS = 1_000_000
CHUNK = 200_000
T0_US = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
POSTGRES = os.environ.get(
    "ENSAYO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
INDEXES = [i for i in events_table.indexes]
COLUMNS = [c.name for c in events_table.columns]


def _rows(total: int, units: int, seed: int = 1) -> Iterator[list[tuple[object, ...]]]:
    """Chunks of event rows: per unit one exposure, one pre-period visit, purchases after.

    Purchases per unit are Poisson with the mean that makes ``total`` events; the treatment
    buys 3 % more often. Values are generated vectorised per chunk of units.
    """
    rng = np.random.default_rng(seed)
    per_unit = max(total / units - 2.0, 0.0)
    made = 0
    unit = 0
    while made < total and unit < units:
        block = np.arange(unit, min(unit + CHUNK // max(int(per_unit + 2), 1), units))
        unit = int(block[-1]) + 1
        treatment = block % 2 == 1
        t0 = T0_US + block * 1_000
        visits = rng.gamma(2.0, 3.0, block.size).round(2)
        buys = rng.poisson(per_unit * np.where(treatment, 1.03, 1.0))
        rows: list[tuple[object, ...]] = []
        for i, u in enumerate(block.tolist()):
            uid = f"u{u:07d}"
            variant = "treatment" if treatment[i] else "control"
            start = int(t0[i])
            rows.append(
                (f"x{u}", uid, "$exposure", start, 1.0, "report", 1, variant, 0.5, "", 0, "{}")
            )
            rows.append(
                (
                    f"v{u}",
                    uid,
                    "visit",
                    start - 86_400_000_000,
                    float(visits[i]),
                    "",
                    0,
                    "",
                    0.0,
                    "",
                    0,
                    "{}",
                )
            )
            for k in range(int(buys[i])):
                value = float(round(10.0 + visits[i] + (k % 7), 2))
                rows.append(
                    (
                        f"p{u}-{k}",
                        uid,
                        "purchase",
                        start + 1_000 * (k + 1),
                        value,
                        "",
                        0,
                        "",
                        0.0,
                        "",
                        0,
                        "{}",
                    )
                )
        made += len(rows)
        yield rows


def _catalog(engine: sa.Engine) -> None:
    catalog = CatalogUseCases(SqlCatalogRepository(engine), None, lambda: datetime.now(UTC))
    for definition in (
        Metric("conv", event_name="purchase", kind=MetricKind.CONVERSION),
        Metric("revenue", event_name="purchase", kind=MetricKind.MEAN, covariate_event="visit"),
        Metric(
            "revenue_per_exposure",
            event_name="purchase",
            kind=MetricKind.RATIO,
            denominator_event="$exposure",
        ),
        Experiment(
            "report",
            (Variant("control"), Variant("treatment")),
            metrics=("conv", "revenue", "revenue_per_exposure"),
            state=ExperimentState.RUNNING,
        ),
    ):
        catalog.apply(definition, None, "bench", "definition")


def _load(url: str, total: int) -> tuple[int, float, float]:
    """Bulk-load the events with the indexes dropped, then rebuild them; (rows, s, s)."""
    engine = sql.create(url)
    sql.migrate(engine)
    _catalog(engine)
    with engine.begin() as conn:
        for index in INDEXES:
            index.drop(conn)
    loaded = 0
    start = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            driver = raw.driver_connection
            with (
                driver.cursor() as pg,
                pg.copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN") as copy,
            ):
                for rows in _rows(total, UNITS):
                    for row in rows:
                        copy.write_row(row)
                    loaded += len(rows)
        else:
            cursor.execute("PRAGMA synchronous=OFF")
            marks = ", ".join("?" * len(COLUMNS))
            for rows in _rows(total, UNITS):
                cursor.execute("BEGIN")
                cursor.executemany(f"INSERT INTO events VALUES ({marks})", rows)
                cursor.execute("COMMIT")
                loaded += len(rows)
        raw.commit()
    finally:
        raw.close()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    with engine.begin() as conn:
        for index in INDEXES:
            index.create(conn)
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE events")
        else:
            conn.exec_driver_sql("ANALYZE")
    index_s = time.perf_counter() - start
    engine.dispose()
    return loaded, load_s, index_s


def _report(url: str) -> tuple[float, float, list[tuple[str, float]], object]:
    """Time the service's report (frequentist, then with CUPED) and each metric's query."""
    reader = read_engine(url)
    writer = sql.create(url)
    aggregates = SqlAggregates(reader, writer)
    usecases = AnalysisUseCases(
        SqlCatalogRepository(reader), aggregates, lambda: datetime.now(UTC)
    )
    start = time.perf_counter()
    report = usecases.experiment_report(ReportRequest("report"))
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    usecases.experiment_report(ReportRequest("report", cuped=True))
    cuped_s = time.perf_counter() - start
    repository = SqlCatalogRepository(reader)
    metrics = [repository.get(Kind.METRIC, key) for key in report_metric_keys()]
    parts = []
    start = time.perf_counter()
    aggregates.exposures("report")
    parts.append(("first exposures", time.perf_counter() - start))
    start = time.perf_counter()
    aggregates.metrics("report", [m for m in metrics if isinstance(m, Metric)])
    parts.append(("the three metrics (one query)", time.perf_counter() - start))
    assert set(aggregates.last_row_counts) == {2}, aggregates.last_row_counts
    reader.dispose()
    writer.dispose()
    return plain_s, cuped_s, parts, report


def report_metric_keys() -> tuple[str, ...]:
    """The benchmark experiment's metrics."""
    return ("conv", "revenue", "revenue_per_exposure")


def _postgres_database() -> tuple[str, sa.Engine] | None:
    try:
        admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        name = f"ensayo_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.SQLAlchemyError:  # no server: the PostgreSQL row is skipped
        return None
    return POSTGRES.rsplit("/", 1)[0] + f"/{name}", admin


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv if argv is not None else [])
    work = Path(tempfile.mkdtemp(prefix="ensayo-bench-report-"))
    results = []
    try:
        targets = [("SQLite (WAL, file)", f"sqlite:///{work / 'report.db'}", None)]
        if not args.no_postgres:
            pg = _postgres_database()
            if pg is not None:
                targets.append(("PostgreSQL 15 (local)", pg[0], pg[1]))
        for label, url, admin in targets:
            try:
                loaded, load_s, index_s = _load(url, args.events)
                plain_s, cuped_s, parts, report = _report(url)
                results.append((label, loaded, load_s, index_s, plain_s, cuped_s, parts, report))
            finally:
                if admin is not None:
                    name = url.rsplit("/", 1)[1]
                    with admin.connect() as conn:
                        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    admin.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    details = []
    for label, loaded, load_s, index_s, plain_s, cuped_s, parts, _ in results:
        rows.append(
            f"| {label} | {loaded:,} | {load_s:.0f} s | {index_s:.0f} s | **{plain_s:.1f} s** | "
            f"{cuped_s:.1f} s | {loaded / plain_s:,.0f} |"
        )
        details.append(f"{label}: " + "; ".join(f"{name} {s:.1f} s" for name, s in parts))
    first = results[0][7]
    units = ", ".join(f"{v.key} {v.units:,}" for v in first.variants)  # type: ignore[attr-defined]
    section = f"""## Report over {args.events:,} events

Command: `.venv/bin/python -m bench report` (synthetic data: {UNITS:,} units, one
exposure and one pre-period visit each, purchases Poisson; metrics: a conversion, a mean
with a CUPED covariate, a ratio). Machine: {platform.machine()}, {os.cpu_count()} cores,
Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}.
Loading is a bulk insert with the indexes dropped, then rebuilt and analysed (as a restore
would); the report is `AnalysisUseCases.experiment_report`, the service's own call: a
first-exposure query and one grouped query for all three metrics, each returning
{len(first.variants)} rows to Python (asserted). "events/s" is events over report seconds.

| database | events | bulk load | indexes | report | with CUPED | events/s |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Per query: {" · ".join(details)}.
Units per variant: {units}; SRM p = {first.srm.p_value:.3f}.
"""
    print(section)
    return section


if __name__ == "__main__":
    main(sys.argv[1:])
