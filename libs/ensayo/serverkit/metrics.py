"""Prometheus metrics per RPC (count by code, latency, in flight) on a private registry."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ensayo.serverkit.config import parse_addr

__all__ = ["MetricsEndpoint", "RpcMetrics", "start_metrics_endpoint"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class RpcMetrics:
    """The per-RPC instruments of one server; one registry each, so tests can run many servers."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "ensayo_rpc_requests",
            "RPCs handled, by method and final status code.",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ensayo_rpc_duration_seconds",
            "Server-side RPC latency in seconds, by method.",
            ["service", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ensayo_rpc_in_flight",
            "RPCs being handled right now.",
            ["service"],
            registry=self.registry,
        )

        self._in_flight = self.in_flight.labels(service)
        self._finished: dict[tuple[str, str], tuple[Any, Any]] = {}

    def started(self) -> None:
        """Count one RPC in flight."""
        self._in_flight.inc()

    def finished(self, method: str, code: str, seconds: float) -> None:
        """Record one finished RPC (labelled children are looked up once per method and code)."""
        self._in_flight.dec()
        children = self._finished.get((method, code))
        if children is None:
            children = (
                self.requests.labels(self.service, method, code),
                self.latency.labels(self.service, method),
            )
            self._finished[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)


@dataclass
class MetricsEndpoint:
    """The HTTP server exposing ``/metrics``; ``port`` is the bound port."""

    server: WSGIServer
    thread: threading.Thread
    port: int

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def start_metrics_endpoint(addr: str, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serve Prometheus text for ``registry`` at ``http://addr/metrics`` in a daemon thread."""
    host, port = parse_addr(addr)
    server, thread = prometheus_client.start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server, thread, server.server_port)
