"""Assignment as processes: catalog → assignment, determinism across a restart, two replicas
serving one bandit allocation version with every arm at its floor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ensayo.assignment.engine import build_index, candidates_many, screen_many
from ensayo.catalog.model import (
    Allocation,
    BanditAlgorithm,
    BanditConfig,
    Experiment,
    ExperimentState,
    Metric,
    MetricKind,
    Snapshot,
    Variant,
)
from ensayo.cli.local import wait_serving
from ensayo.client import AssignmentClient, CatalogClient, open_channel
from ensayo.events.model import Event
from ensayo.state.bandit_state import RedisBanditState, make_observer
from ensayo.state.client import connect
from ensayo.state.snapshots import RedisSnapshotPublisher, RedisSnapshotSource
from ensayo.v1 import definitions_pb2 as d
from tests.conftest import free_port
from tests.unit.assignment.fakes import FixedSnapshots

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENSAYO_")}
    env.update(ENSAYO_LOG_FORMAT="json", ENSAYO_LOG_LEVEL="warning", **extra)
    return env


@contextmanager
def _service(name: str, **env: str) -> Iterator[str]:
    """``python -m services.<name>`` on a free port; yields its address."""
    addr = f"127.0.0.1:{free_port()}"
    up = name.upper()
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        env=_env(**{f"ENSAYO_{up}_ADDR": addr, f"ENSAYO_{up}_METRICS_ADDR": "127.0.0.1:0"}, **env),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_serving(addr, 30, process)  # type: ignore[arg-type]
        yield addr
    finally:
        process.terminate()
        process.wait(15)


def _wait_for(predicate, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _served(client: AssignmentClient, ids, attrs) -> np.ndarray:
    """Once the server has the experiment running, its answer for the audience."""
    _wait_for(lambda: client.assign_one("x", "checkout").reason.value != "not_running")
    return client.assign_batch("checkout", ids, attrs).variant_index


class TestCatalogToAssignment:
    """Definitions applied to the catalog reach assignment; answers survive a restart."""

    def test_apply_assign_restart(self, redis_url, tmp_path) -> None:
        """An experiment applied and started is served; a restarted server answers the same."""
        ids = [f"customer-{i}" for i in range(5000)]
        attrs = [{"country": "ES" if i % 3 else "FR"} for i in range(len(ids))]
        redis_env = {"ENSAYO_REDIS_URL": redis_url, "ENSAYO_SNAPSHOT_POLL_S": "0.2"}
        catalog_env = {**redis_env, "ENSAYO_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
        with _service("catalog", **catalog_env) as catalog_addr:
            with open_channel(catalog_addr) as channel:
                catalog = CatalogClient(channel)
                catalog.apply("Holdout", d.Holdout(key="global", fraction=0.1))
                exp = d.Experiment(
                    key="checkout",
                    variants=[d.Variant(key="control"), d.Variant(key="new", weight=3)],
                    coverage=0.8,
                    holdouts=["global"],
                )
                exp.targeting.update({"country": {"$in": ["ES", "MX"]}})
                catalog.apply("Experiment", exp)
                catalog.set_experiment_state("checkout", d.EXPERIMENT_STATE_RUNNING)
            answers = []
            for _ in range(2):  # serve, stop, serve again
                with _service("assignment", **redis_env) as addr, open_channel(addr) as channel:
                    answers.append(_served(AssignmentClient(channel), ids, attrs))
        np.testing.assert_array_equal(answers[0], answers[1])
        snapshot = RedisSnapshotSource(connect(redis_url)).fetch()
        compiled = build_index(snapshot).experiments["checkout"]
        screened = screen_many(compiled, ids, attrs)
        expected = screened.index.copy()
        expected[screened.eligible] = candidates_many(compiled, ids)[screened.eligible]
        np.testing.assert_array_equal(answers[0], expected)
        assert set(np.unique(answers[0]).tolist()) == {-1, 0, 1}


FLOOR = 0.1


def _bandit_snapshot() -> Snapshot:
    return Snapshot(
        1,
        experiments=(
            Experiment(
                "band",
                (Variant("a"), Variant("b"), Variant("c")),
                allocation=Allocation.BANDIT,
                bandit=BanditConfig(BanditAlgorithm.THOMPSON_BERNOULLI, "buy", FLOOR, 0.5, 0),
                metrics=("buy",),
                state=ExperimentState.RUNNING,
                version=1,
            ),
        ),
        metrics=(Metric("buy", event_name="purchase", kind=MetricKind.CONVERSION),),
    )


class TestTwoReplicas:
    """Two assignment processes share one bandit: same allocation versions, floors kept."""

    def test_same_allocation_and_floor(self, redis_url) -> None:
        """Both serve identical weights per allocation version; each version published once."""
        client_redis = connect(redis_url)
        RedisSnapshotPublisher(client_redis).publish(_bandit_snapshot())
        env = {
            "ENSAYO_REDIS_URL": redis_url,
            "ENSAYO_SNAPSHOT_POLL_S": "0.2",
            "ENSAYO_ALLOCATION_POLL_S": "0.1",
        }
        snapshots = FixedSnapshots(_bandit_snapshot())  # what Track's holder would hold
        observer = make_observer(redis=client_redis, snapshots=snapshots, clock=None)
        rng = np.random.default_rng(3)
        rates = {"a": 0.05, "b": 0.1, "c": 0.4}
        seen: dict[int, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        with _service("assignment", **env) as one, _service("assignment", **env) as two:
            with open_channel(one) as c1, open_channel(two) as c2:
                clients = {"one": AssignmentClient(c1), "two": AssignmentClient(c2)}
                _wait_for(lambda: clients["one"].assign_one("x", "band").in_experiment)
                _wait_for(lambda: clients["two"].assign_one("x", "band").in_experiment)
                for i in range(1200):
                    name = "one" if i % 2 else "two"
                    a = clients[name].assign_one(f"u{i}", "band")
                    seen[a.allocation_version][a.variant_key][name] = a.probability
                    if rng.random() < rates[a.variant_key]:
                        event = Event(f"buy-{i}", f"u{i}", "purchase", datetime.now(UTC))
                        observer.observe([event])
                    if i % 100 == 99:
                        time.sleep(0.2)
        shared = [v for v, arms in seen.items() if any(len(s) == 2 for s in arms.values())]
        assert len(shared) >= 3 and max(shared) >= 2  # several versions served by both
        for arms in seen.values():
            for by_server in arms.values():
                assert len(set(by_server.values())) == 1  # both servers: the same weight
                assert min(by_server.values()) >= FLOOR - 1e-12
        history = RedisBanditState(client_redis).history("band")
        assert sorted(history) == list(range(len(history)))  # each version exactly once
        assert all(min(a.weights) >= FLOOR - 1e-12 for a in history.values())
        assert history[max(history)].weights[2] == max(history[max(history)].weights)


@pytest.fixture(autouse=True)
def _need_redis_server(redis_server) -> None:
    """Every test here needs redis-server on PATH (the fixture skips otherwise)."""
