"""The shared ``main()`` of every service: config from the environment, logging, serve, stop."""

from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Callable, Mapping

import structlog

from ensayo.errors import EnsayoError
from ensayo.serverkit.config import ConfigError, ServerConfig
from ensayo.serverkit.logging import configure
from ensayo.serverkit.server import RunningServer, wait_for_termination

__all__ = ["run_service"]


def run_service(
    service: str, env: Mapping[str, str], start: Callable[[ServerConfig], RunningServer]
) -> int:
    """Serve until SIGTERM/SIGINT; exit code 2 on bad configuration, 1 when startup fails."""
    try:
        config = ServerConfig.from_env(service, env)
    except ConfigError as exc:
        print(f"ensayo {service}: {exc}", file=sys.stderr)
        return 2
    configure(config.log_level, config.log_format)
    log = structlog.get_logger().bind(service=service)
    try:
        running = start(config)
    except (EnsayoError, OSError, ValueError) as exc:
        log.exception("startup_failed", error=str(exc))
        print(f"ensayo {service}: cannot start: {exc}", file=sys.stderr)
        return 1
    log.info("serving", addr=config.addr, port=running.port, metrics_addr=config.metrics_addr)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck server is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    wait_for_termination(running, config.shutdown_grace_s)
    return 0
