"""One server interceptor: request id, auth, deadline, access log, metrics, errors -> status.

Every handler's behaviour is wrapped, unary and streaming alike, so servicers contain no
try/except, no abort and no logging setup.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import structlog

from ensayo.errors import EnsayoError
from ensayo.serverkit.auth import Authenticator
from ensayo.serverkit.context import set_actor
from ensayo.serverkit.errors import status_for
from ensayo.serverkit.metrics import RpcMetrics

__all__ = ["ServerInterceptor"]

_log = structlog.get_logger()
_REQUEST_ID_MAX = 128


class _DeadlineExceeded(Exception):
    """The client's deadline passed before the handler started."""


class _Call:
    """Bookkeeping of one call: request id, timing, status, log context."""

    def __init__(self, owner: ServerInterceptor, method: str, metadata: dict[str, str]) -> None:
        self.owner = owner
        self.method = method
        self.metadata = metadata
        rid = metadata.get("x-request-id", "")
        self.request_id = rid[:_REQUEST_ID_MAX] if rid else uuid.uuid4().hex
        self.start = time.perf_counter()
        self.code = "OK"

    def begin(self, context: grpc.ServicerContext) -> None:
        structlog.contextvars.bind_contextvars(
            request_id=self.request_id, rpc=self.method, service=self.owner.service
        )
        self.owner.metrics.in_flight.labels(self.owner.service).inc()
        # None when the client set no deadline (the stubs say float).
        remaining = cast("float | None", context.time_remaining())
        if remaining is not None and remaining <= 0:
            raise _DeadlineExceeded
        set_actor(self.owner.authenticator.authorize(self.method, self.metadata))
        context.send_initial_metadata((("x-request-id", self.request_id),))

    def fail(self, exc: BaseException, context: grpc.ServicerContext) -> None:
        if isinstance(exc, _DeadlineExceeded):
            self.code = "DEADLINE_EXCEEDED"
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before handling")
        status = status_for(exc, self.request_id)
        self.code = status.code.name
        if not isinstance(exc, (EnsayoError, NotImplementedError)):
            _log.exception(
                "rpc_internal_error", error_type=type(exc).__name__, request_id=self.request_id
            )
        context.abort_with_status(status)

    def end(self) -> None:
        elapsed = time.perf_counter() - self.start
        self.owner.metrics.in_flight.labels(self.owner.service).dec()
        self.owner.metrics.observe(self.method, self.code, elapsed)
        # Successful calls log at debug: on a hot path metrics count them; failures stand out.
        log = _log.debug if self.code == "OK" else _log.info
        log("rpc_finished", code=self.code, duration_ms=round(elapsed * 1000, 3))
        structlog.contextvars.clear_contextvars()


class ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every RPC of a server with Ensayo's cross-cutting behaviour."""

    def __init__(self, service: str, authenticator: Authenticator, metrics: RpcMetrics) -> None:
        self.service = service
        self.authenticator = authenticator
        self.metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Return the handler with its behaviour wrapped."""
        handler: Any = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        metadata = {
            k: v for k, v in handler_call_details.invocation_metadata if isinstance(v, str)
        }
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, metadata), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, method, metadata), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, method, metadata), **kwargs
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream, method, metadata), **kwargs
        )

    def _unary(
        self,
        behaviour: Callable[[Any, grpc.ServicerContext], Any],
        method: str,
        metadata: dict[str, str],
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(self, method, metadata)
            try:
                call.begin(context)
                return behaviour(request, context)
            except Exception as exc:
                call.fail(exc, context)
                raise  # unreachable: abort raises
            finally:
                call.end()

        return wrapped

    def _streaming(
        self,
        behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
        method: str,
        metadata: dict[str, str],
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(self, method, metadata)
            try:
                call.begin(context)
                yield from behaviour(request, context)
            except Exception as exc:
                call.fail(exc, context)
                raise  # unreachable: abort raises
            finally:
                call.end()

        return wrapped
