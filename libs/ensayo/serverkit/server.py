"""Build, start and stop an Ensayo gRPC server: interceptor, health, reflection, metrics, SIGTERM.

Shutdown order (Kubernetes-friendly): health goes NOT_SERVING, in-flight calls get
``shutdown_grace_s`` to finish, then the server and the metrics endpoint stop.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ensayo.serverkit.auth import Authenticator, load_keys
from ensayo.serverkit.config import ServerConfig, parse_addr
from ensayo.serverkit.interceptors import ServerInterceptor
from ensayo.serverkit.metrics import MetricsEndpoint, RpcMetrics, start_metrics_endpoint

__all__ = [
    "MAX_MESSAGE_BYTES",
    "STOP_MARGIN_S",
    "RunningServer",
    "start_server",
    "wait_for_termination",
]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_log = structlog.get_logger()

Register = Callable[[grpc.Server], Sequence[str]]


@dataclass
class RunningServer:
    """A started server: its bound port, health servicer and metrics endpoint."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    metrics: RpcMetrics
    metrics_endpoint: MetricsEndpoint | None
    service_names: Sequence[str]
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace_s: float) -> None:
        """NOT_SERVING, drain in-flight calls for up to ``grace_s``, then stop everything."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
        for hook in self.on_stop:
            hook()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        _log.info("server_stopped")

    @property
    def stopped(self) -> bool:
        """Whether stop() has run."""
        return self._stopped.is_set()


def start_server(
    config: ServerConfig,
    register: Register,
    *,
    addr: str | None = None,
    metrics_addr: str | None = None,
    max_workers: int | None = None,
    serve_metrics: bool = True,
) -> RunningServer:
    """Create and start a server; ``register`` adds servicers and returns their full names."""
    keys = load_keys(config.api_keys_file) if config.api_keys_file else None
    metrics = RpcMetrics(config.service)
    interceptor = ServerInterceptor(
        config.service, Authenticator(keys), metrics, log_ok=config.log_level == "debug"
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=max_workers or config.grpc_workers, thread_name_prefix="rpc"
        ),
        interceptors=[interceptor],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    names = list(register(server))
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    bind = addr or config.addr
    host, _ = parse_addr(bind)
    port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"cannot bind {bind}")
    endpoint = None
    if serve_metrics:
        endpoint = start_metrics_endpoint(metrics_addr or config.metrics_addr, metrics.registry)
    server.start()
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _log.info(
        "server_started",
        host=host,
        port=port,
        metrics_port=endpoint.port if endpoint else None,
        auth=keys is not None,
    )
    return RunningServer(server, port, health_servicer, metrics, endpoint, names)


STOP_MARGIN_S = 10.0
"""How long past the grace period a stop may take before the process dumps and exits."""


def wait_for_termination(
    running: RunningServer, grace_s: float, *, stop_margin_s: float = STOP_MARGIN_S
) -> None:
    """Block until SIGTERM or SIGINT, then stop gracefully.

    The handler only records the signal (logging from a signal handler could wait on a
    lock the interrupted code holds). A stop still running ``stop_margin_s`` after the grace
    period dumps every thread's stack to stderr and exits 1, rather than hanging until the
    orchestrator's SIGKILL with nothing to show why.
    """
    received: list[int] = []
    done = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    done.wait()
    _log.info("shutdown_requested", signal=signal.Signals(received[0]).name)
    faulthandler.dump_traceback_later(grace_s + stop_margin_s, exit=True)
    try:
        running.stop(grace_s)
    finally:
        faulthandler.cancel_dump_traceback_later()
