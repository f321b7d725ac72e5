"""Track -> consume -> report through processes: catalog and analysis servers, the CLI.

The analysis server runs as ``python -m services.analysis`` with its default consumer (a
child process); the report is read through gRPC and through ``ensayo report``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ensayo.cli.local import wait_serving
from ensayo.client.analysis import AnalysisClient
from ensayo.client.channel import open_channel
from ensayo.client.events import EventsClient
from ensayo.events.model import EXPOSURE, Event, exposure_id
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ENSAYO = [sys.executable, "-m", "ensayo.cli.main"]
SPEC = """
kind: Metric
spec: {key: conv, event_name: purchase, kind: conversion}
---
kind: Metric
spec: {key: revenue, event_name: purchase, kind: mean, covariate_event: visit}
---
kind: Experiment
spec:
  key: checkout
  variants: [{key: control}, {key: green}]
  metrics: [conv, revenue]
  state: running
"""
UNITS = 400


@pytest.fixture
def services(own_redis, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENSAYO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "libs"), str(ROOT)])
    env.update(
        ENSAYO_REDIS_URL=own_redis.url,
        ENSAYO_DATABASE_URL=f"sqlite:///{tmp_path / 'ensayo.db'}",
        ENSAYO_LOG_FORMAT="json",
        ENSAYO_SNAPSHOT_POLL_S="0.2",
    )
    processes = {}
    for service in ("catalog", "analysis"):
        env[f"ENSAYO_{service.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
        env[f"ENSAYO_{service.upper()}_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
    logs = {}
    for service in ("catalog", "analysis"):
        logs[service] = (tmp_path / f"{service}.log").open("w")
        processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=env,
            cwd=ROOT,
            stdout=logs[service],
            stderr=subprocess.STDOUT,
        )
        wait_serving(env[f"ENSAYO_{service.upper()}_ADDR"], 60, processes[service])
    yield env, processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()
    for log in logs.values():
        log.close()


def _cli(env, *args, cwd=ROOT):
    return subprocess.run(
        [*ENSAYO, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


class TestTrackToReport:
    def test_events_tracked_over_grpc_are_reported_by_the_cli(self, services, tmp_path) -> None:
        """Apply, Track (with a retry), wait for the consumer, read the report three ways."""
        env, processes = services
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC)
        applied = _cli(env, "apply", "-f", str(spec))
        assert applied.returncode == 0, applied.stderr
        now = datetime.now(UTC) - timedelta(minutes=5)
        events = []
        for i in range(UNITS):
            variant = "green" if i % 2 else "control"
            unit = f"unit-{i}"
            t = now + timedelta(milliseconds=i)
            events.append(Event(f"visit-{i}", unit, "visit", t - timedelta(days=1), i % 5))
            events.append(
                Event(
                    exposure_id("checkout", 1, unit),
                    unit,
                    EXPOSURE,
                    t,
                    experiment_key="checkout",
                    experiment_version=1,
                    variant_key=variant,
                    probability=0.5,
                )
            )
            if i % 3 == 0 or (variant == "green" and i % 5 == 0):
                events.append(Event(f"buy-{i}", unit, "purchase", t + timedelta(seconds=1), 20.0))
        tracker = EventsClient(open_channel(env["ENSAYO_ANALYSIS_ADDR"]))
        first = tracker.track_all(events)
        retried = tracker.track_all(events[:500])  # a client retry: acknowledged, not counted
        assert (first.accepted, first.duplicates) == (len(events), 0)
        assert (retried.accepted, retried.duplicates) == (0, 500)
        analysis = AnalysisClient(open_channel(env["ENSAYO_ANALYSIS_ADDR"]))
        deadline = time.monotonic() + 60
        while True:
            report = analysis.experiment_report("checkout", cuped=True)
            if sum(v.units for v in report.variants) == UNITS or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [(v.key, v.units) for v in report.variants] == [("control", 200), ("green", 200)]
        conv = report.metrics[0].comparisons[0]
        assert conv.control_mean == pytest.approx(67 / 200)  # i % 3 == 0 among even i
        table = _cli(env, "report", "checkout", "--format", "table")
        assert table.returncode == 0, table.stderr
        assert "Sample ratio check: OK" in table.stdout
        assert "Metric conv (conversion, primary)" in table.stdout
        as_json = _cli(env, "report", "checkout", "--format", "json", "--method", "bayesian")
        assert '"chance_to_win"' in as_json.stdout
        page = tmp_path / "report.html"
        html = _cli(env, "report", "checkout", "--format", "html", "-o", str(page))
        assert html.returncode == 0, html.stderr
        assert "<svg" in page.read_text()
        missing = _cli(env, "report", "ghost")
        assert missing.returncode == 1
        assert "NOT_FOUND" in missing.stderr
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        assert [p.wait(30) for p in processes.values()] == [0, 0]
        logs = (tmp_path / "analysis.log").read_text()
        assert "unit-1" not in logs
