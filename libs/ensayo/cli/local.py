"""``ensayo up``: every service as its own process (and a private Redis when none is given)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ensayo.serverkit.config import DEFAULT_ADDRS, DEFAULT_METRICS_ADDRS, SERVICES

__all__ = ["Platform", "free_port", "start_platform", "start_redis", "wait_serving"]

_START_ORDER = ("catalog", "assignment", "decisioning", "analysis")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child: ask Linux to SIGTERM us when ``ensayo up`` dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(
    addr: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until ``addr`` answers health SERVING; raise RuntimeError on timeout or exit."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process serving {addr} exited with {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{addr} did not become SERVING within {timeout_s:.0f} s")


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private ``redis-server`` on a free loopback port; raises RuntimeError if absent."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not on PATH: install it (e.g. 'apt-get install redis-server' or "
            "'brew install redis') or set ENSAYO_REDIS_URL to a running Redis"
        )
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(  # noqa: S603  (fixed argv, no shell)
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509  (only prctl, no locks taken)
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start; see {workdir / 'redis.log'}")


@dataclass
class Platform:
    """The running processes of ``ensayo up``."""

    env: dict[str, str]
    addrs: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    redis: subprocess.Popen[bytes] | None = None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every service (they drain), then stop the private Redis."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(5)
            except subprocess.TimeoutExpired:
                self.redis.kill()


def start_platform(env: Mapping[str, str], workdir: Path, timeout_s: float = 60.0) -> Platform:
    """Start Redis (if needed) and the four services; return once all are SERVING."""
    child_env = dict(env)
    redis_process = None
    if not child_env.get("ENSAYO_REDIS_URL"):
        redis_process, url = start_redis(workdir / "redis")
        child_env["ENSAYO_REDIS_URL"] = url
    child_env.setdefault("ENSAYO_DATABASE_URL", f"sqlite:///{workdir / 'ensayo.db'}")
    addrs = {}
    for service in SERVICES:
        up = service.upper()
        child_env.setdefault(f"ENSAYO_{up}_ADDR", DEFAULT_ADDRS[service])
        child_env.setdefault(f"ENSAYO_{up}_METRICS_ADDR", DEFAULT_METRICS_ADDRS[service])
        addrs[service] = child_env[f"ENSAYO_{up}_ADDR"]
    platform = Platform(child_env, addrs, redis=redis_process)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for service in _START_ORDER:
            log = (logs / f"{service}.log").open("ab")
            platform.processes[service] = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", f"services.{service}"],
                env=child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=os.getcwd(),
                preexec_fn=_die_with_parent,  # noqa: PLW1509  (only prctl, no locks taken)
            )
            if service == "catalog":  # it migrates the database: let it finish first
                wait_serving(addrs[service], timeout_s, platform.processes[service])
        for service in _START_ORDER[1:]:
            wait_serving(addrs[service], timeout_s, platform.processes[service])
    except BaseException:
        platform.stop()
        raise
    return platform


def default_workdir() -> Path:
    """``./.ensayo`` (the embedded defaults live there), or a temp dir if not writable."""
    path = Path(".ensayo")
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return Path(tempfile.mkdtemp(prefix="ensayo-"))
    return path.resolve()
