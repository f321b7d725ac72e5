"""``ensayo up`` on loopback: four services as processes, a private Redis, the CLI against them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ensayo.client import AssignmentClient, DecisioningClient, open_channel
from ensayo.v1 import catalog_service_pb2 as c
from ensayo.v1 import catalog_service_pb2_grpc as cg
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ENSAYO = [sys.executable, "-m", "ensayo.cli.main"]
SERVICES = ("assignment", "decisioning", "analysis", "catalog")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENSAYO_")}
    for service in SERVICES:
        env[f"ENSAYO_{service.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
        env[f"ENSAYO_{service.upper()}_METRICS_ADDR"] = f"127.0.0.1:{free_port()}"
    env["ENSAYO_LOG_FORMAT"] = "json"
    env["ENSAYO_LOG_LEVEL"] = "debug"  # the strictest setting for the no-personal-data check
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def platform(
    tmp_path: Path, workdir: Path
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    env = _env(tmp_path)
    process = subprocess.Popen(
        [*ENSAYO, "up", "--workdir", str(tmp_path / "state")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith("logs"):
            break
    assert any("Ensayo is up" in line for line in lines), "".join(lines)
    yield process, env
    if process.poll() is None:  # a failed test: stop gracefully so no service outlives it
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _running(args: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    """A process with text pipes, killed (and its pipes drained) if a test leaves it running."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _cli(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENSAYO, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


class TestEnsayoUp:
    def test_up_apply_get_and_stop(self, platform, workdir) -> None:
        """Four services become SERVING; the CLI applies and reads; the data plane serves the
        definitions; Ctrl-C stops all cleanly; no unit id or attribute reached the logs."""
        process, env = platform
        for service in SERVICES:
            with grpc.insecure_channel(env[f"ENSAYO_{service.upper()}_ADDR"]) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        applied = _cli(env, "apply", "-f", "examples/checkout.yaml")
        assert applied.returncode == 0, applied.stderr
        assert "experiment/checkout-button applied (version 1)" in applied.stdout
        got = _cli(env, "get", "experiment", "checkout-button", "-o", "json")
        assert got.returncode == 0, got.stderr
        assert '"state": "running"' in got.stdout
        listed = _cli(env, "get", "metrics")
        assert "key: purchase" in listed.stdout and "key: revenue" in listed.stdout
        audit = _cli(env, "get", "audit")
        assert audit.stdout.count("operation: create") == 7
        # a client holding only the protos sees the same through gRPC
        with grpc.insecure_channel(env["ENSAYO_CATALOG_ADDR"]) as channel:
            stub = cg.CatalogServiceStub(channel)
            assert stub.GetHoldout(c.GetHoldoutRequest(key="global")).holdout.fraction == 0.05
        bad = _cli(env, "get", "experiment", "ghost")
        assert bad.returncode == 1
        assert "NOT_FOUND" in bad.stderr
        # the data plane serves the applied definitions once the snapshot reaches it
        unit, attributes = "pii-unit-7f3a9c", {"country": "ES", "email": "ana@example.com"}
        assignment = AssignmentClient(open_channel(env["ENSAYO_ASSIGNMENT_ADDR"]))
        deadline = time.monotonic() + 20
        while True:
            (result,) = assignment.assign(unit, ["checkout-button"], attributes, log_exposure=True)
            if result.reason.name != "UNKNOWN_EXPERIMENT" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.variant_key in {"control", "green"}
        decisioning = DecisioningClient(open_channel(env["ENSAYO_DECISIONING_ADDR"]))
        deadline = time.monotonic() + 20
        while True:  # the README's example: the welcome offer, for a unit without orders
            decision = decisioning.decide(unit, "email", attributes={"orders": 0, **attributes})
            if decision.actions or decision.holdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert decision.holdout or [a.action_key for a in decision.actions] == ["welcome-offer"]
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        rest = process.stdout.read() if process.stdout else ""
        assert "stopping" in rest
        logs = "".join(p.read_text() for p in (workdir / "logs").glob("*.log"))
        assert "rpc_finished" in logs  # debug logging was on, so the check below means something
        assert unit not in logs and "ana@example.com" not in logs

    def test_definitions_survive_a_full_restart(self, tmp_path) -> None:
        """Stopping and starting `ensayo up` on the same workdir keeps the catalog."""
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not on PATH")
        env = _env(tmp_path)
        workdir = str(tmp_path / "state")
        for round_ in range(2):
            process = subprocess.Popen(
                [*ENSAYO, "up", "--workdir", workdir],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert process.stdout is not None
                lines = []
                for line in process.stdout:
                    lines.append(line)
                    if line.strip().startswith("logs"):
                        break
                assert any("Ensayo is up" in line for line in lines), "".join(lines)
                if round_ == 0:
                    assert _cli(env, "apply", "-f", "examples/checkout.yaml").returncode == 0
                else:
                    got = _cli(env, "get", "layer", "checkout")
                    assert got.returncode == 0 and "key: checkout" in got.stdout
            finally:
                process.send_signal(signal.SIGTERM)
                assert process.wait(30) == 0


class TestServe:
    def test_non_loopback_without_keys_exits_non_zero(self, tmp_path) -> None:
        """A server asked to bind 0.0.0.0 with no keys file refuses, clearly, with exit 2."""
        env = _env(tmp_path)
        env["ENSAYO_ASSIGNMENT_ADDR"] = "0.0.0.0:0"
        result = _cli(env, "serve", "assignment")
        assert result.returncode == 2
        assert "refusing to bind a non-loopback address" in result.stderr

    def test_a_port_in_use_is_a_clear_startup_failure(self, tmp_path) -> None:
        """Exit 1 with "cannot start" (it was an unhandled RuntimeError's traceback)."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            env = _env(tmp_path)
            env["ENSAYO_CATALOG_ADDR"] = f"127.0.0.1:{taken.getsockname()[1]}"
            env["ENSAYO_DATABASE_URL"] = f"sqlite:///{tmp_path / 'catalog.db'}"
            result = _cli(env, "serve", "catalog")
        assert result.returncode == 1
        assert "ensayo catalog: cannot start:" in result.stderr

    def test_sigterm_drains_and_exits_zero(self, tmp_path, redis_url) -> None:
        """SIGTERM: health goes NOT_SERVING, the server stops, the process exits 0."""
        env = _env(tmp_path)
        env["ENSAYO_REDIS_URL"] = redis_url
        with _running(
            [*ENSAYO, "serve", "decisioning"], env=env, cwd=tmp_path, stderr=subprocess.STDOUT
        ) as process:
            from ensayo.cli.local import wait_serving

            addr = env["ENSAYO_DECISIONING_ADDR"]
            wait_serving(addr, 30)
            process.send_signal(signal.SIGUSR1)  # prints every thread's stack, keeps serving
            time.sleep(0.5)
            wait_serving(addr, 5)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)  # reads as it waits: no full pipe
            assert process.returncode == 0, output
            assert "most recent call first" in output
            assert '"event": "shutdown_requested"' in output
            assert '"event": "server_stopped"' in output

    def test_a_stop_that_hangs_dumps_stacks_and_exits_one(self, tmp_path) -> None:
        """A stop hook that never returns: once grace and margin are over, the process prints
        every thread's stack (the stuck hook among them) and exits 1 instead of hanging."""
        script = textwrap.dedent(
            """
            import threading
            from ensayo.serverkit.config import ServerConfig
            from ensayo.serverkit.server import start_server, wait_for_termination

            config = ServerConfig.from_env("catalog", {"ENSAYO_CATALOG_ADDR": "127.0.0.1:0"})
            running = start_server(config, lambda server: [], serve_metrics=False)

            def stuck_hook():
                threading.Event().wait()

            running.on_stop.append(stuck_hook)
            print("PORT", running.port, flush=True)
            wait_for_termination(running, 0.1, stop_margin_s=1.0)
            """
        )
        with _running(
            [sys.executable, "-c", script],
            env=_env(tmp_path),
            cwd=tmp_path,
            stderr=subprocess.PIPE,
        ) as process:
            assert process.stdout is not None
            line = ""
            while not line.startswith("PORT"):  # the server's own log lines come first
                line = process.stdout.readline()
                assert line, "the script exited before serving"
            from ensayo.cli.local import wait_serving

            wait_serving(f"127.0.0.1:{line.split()[1]}", 30)
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=60)
            assert process.returncode == 1, errors
            assert "most recent call first" in errors
            assert "stuck_hook" in errors


class TestOrphans:
    def test_services_die_with_a_killed_ensayo_up(self, tmp_path) -> None:
        """SIGKILL of `ensayo up` (no chance to clean up) still takes every child down."""
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not on PATH")
        env = _env(tmp_path)
        process = subprocess.Popen(
            [*ENSAYO, "up", "--workdir", str(tmp_path / "state")],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip().startswith("logs"):
                break
        children = _children(process.pid)
        assert len(children) == 5  # four services and the private redis-server
        process.kill()
        process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(pid) for pid in children):
            time.sleep(0.2)
        assert not [pid for pid in children if _alive(pid)]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
