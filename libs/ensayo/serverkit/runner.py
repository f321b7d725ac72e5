"""The shared ``main()`` of every service: config from the environment, logging, serve, stop."""

from __future__ import annotations

import faulthandler
import signal
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar, cast

import structlog

from ensayo.errors import EnsayoError
from ensayo.serverkit.config import ConfigError, ServerConfig
from ensayo.serverkit.logging import configure
from ensayo.serverkit.server import RunningServer, wait_for_termination

__all__ = ["run_service"]

T = TypeVar("T")


def run_service(
    service: str,
    env: Mapping[str, str],
    start: Callable[[ServerConfig, T], RunningServer],
    settings: Callable[[Mapping[str, str]], T],
) -> int:
    """Serve until SIGTERM/SIGINT.

    Exit code 2 on bad configuration, naming every bad variable, shared (``ServerConfig``) and
    the service's own (``settings``) alike; 1 when startup fails (a port taken, a database
    that does not answer).
    """
    problems: list[str] = []
    config = service_settings = None
    try:
        config = ServerConfig.from_env(service, env)
    except ConfigError as exc:
        problems += exc.problems
    try:
        service_settings = settings(env)
    except ConfigError as exc:
        problems += exc.problems
    if config is None or problems:
        print(f"ensayo {service}: {ConfigError(problems)}", file=sys.stderr)
        return 2
    configure(config.log_level, config.log_format)
    log = structlog.get_logger().bind(service=service)
    try:
        running = start(config, cast("T", service_settings))
    except ConfigError as exc:  # a rule across settings, found while wiring
        print(f"ensayo {service}: {exc}", file=sys.stderr)
        return 2
    except (EnsayoError, OSError, ValueError, RuntimeError) as exc:  # grpc: port taken
        log.exception("startup_failed", error=str(exc))
        print(f"ensayo {service}: cannot start: {exc}", file=sys.stderr)
        return 1
    log.info("serving", addr=config.addr, port=running.port, metrics_addr=config.metrics_addr)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck server is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    wait_for_termination(running, config.shutdown_grace_s)
    return 0
