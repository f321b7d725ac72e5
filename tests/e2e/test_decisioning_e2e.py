"""Decisioning as a process: catalog → snapshot → Decide → ReportOutcome → event stream."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ensayo.cli.local import wait_serving
from ensayo.client import CatalogClient, DecisioningClient, open_channel
from ensayo.state.client import connect
from ensayo.state.events import STREAM_KEY, decode_entry
from ensayo.v1 import definitions_pb2 as d
from tests.conftest import free_port

ENSAYO = [sys.executable, "-m", "ensayo.cli.main"]


def _env(tmp_path: Path, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENSAYO_")}
    for service in ("catalog", "decisioning"):
        env[f"ENSAYO_{service.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
        env[f"ENSAYO_{service.upper()}_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
    env["ENSAYO_LOG_FORMAT"] = "json"
    env["ENSAYO_DATABASE_URL"] = f"sqlite:///{tmp_path / 'e2e.db'}"
    if redis_url:
        env["ENSAYO_REDIS_URL"] = redis_url
    return env


@pytest.fixture
def services(tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    env = _env(tmp_path, redis_url)
    processes = []
    try:
        for service in ("catalog", "decisioning"):
            log = (tmp_path / f"{service}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [*ENSAYO, "serve", service], env=env, cwd=tmp_path, stdout=log, stderr=log
                )
            )
            wait_serving(env[f"ENSAYO_{service.upper()}_ADDR"], 60, processes[-1])
        yield env
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


class TestDecisioningProcess:
    def test_without_redis_it_exits_2_clearly(self, tmp_path) -> None:
        """`ensayo serve decisioning` without ENSAYO_REDIS_URL fails fast, saying why."""
        result = subprocess.run(
            [*ENSAYO, "serve", "decisioning"],
            env=_env(tmp_path, None),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert "ENSAYO_REDIS_URL: required" in result.stderr

    def test_catalog_to_decision_to_outcome(self, services, redis_url) -> None:
        """Actions applied to the catalog are decided on; decisions and outcomes are logged."""
        catalog = CatalogClient(open_channel(services["ENSAYO_CATALOG_ADDR"]))
        catalog.apply("Action", d.Action(key="welcome", channel="email", value=2.0))
        catalog.apply(
            "ContactPolicy",
            d.ContactPolicy(key="daily", channel="email", max_contacts=1, window_s=86_400),
        )
        client = DecisioningClient(open_channel(services["ENSAYO_DECISIONING_ADDR"]))
        deadline = time.monotonic() + 30
        while True:  # the snapshot reaches decisioning through Redis
            try:
                decision = client.decide("ana", "email")
                if decision.policy_version // 10**9 >= 2:
                    break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
            assert time.monotonic() < deadline, "decisioning never saw the snapshot"
            time.sleep(0.1)
        assert [a.action_key for a in decision.actions] in (["welcome"], [])
        assert client.decide("ana", "email").actions == ()  # the daily cap holds
        bea = client.decide("bea", "email")
        assert bea.actions[0].action_key == "welcome"
        assert client.report_outcome(bea.decision_id, "welcome", 1.0, "click-1") is False
        assert client.report_outcome(bea.decision_id, "welcome", 1.0, "click-1") is True
        events = [decode_entry(f) for _, f in connect(redis_url).xrange(STREAM_KEY)]
        names = {(e.name, e.decision_id) for e in events}
        assert ("$decision", bea.decision_id) in names
        assert ("$outcome", bea.decision_id) in names
