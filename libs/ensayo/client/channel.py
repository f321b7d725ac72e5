"""gRPC channels for clients: retry on UNAVAILABLE (transparent, with backoff), bearer keys."""

from __future__ import annotations

import json

import grpc

__all__ = ["DEFAULT_TIMEOUT_S", "open_channel"]

DEFAULT_TIMEOUT_S = 10.0
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _service_config(attempts: int) -> str:
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [
                        {"service": "ensayo.v1." + s}
                        for s in (
                            "CatalogService",
                            "AssignmentService",
                            "DecisioningService",
                            "EventsService",
                            "AnalysisService",
                        )
                    ],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(addr: str, *, api_key: str = "", attempts: int = 4) -> grpc.Channel:
    """A channel to ``addr``; ``api_key`` is sent as ``authorization: Bearer KEY``.

    Without TLS the key travels in clear: over plain channels it is only sent to loopback
    addresses by convention; use a TLS-terminating proxy or mesh elsewhere.
    """
    options = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", _service_config(attempts)),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ]
    channel = grpc.insecure_channel(addr, options=options)
    if api_key:
        interceptor = _KeyInterceptor(api_key)
        channel = grpc.intercept_channel(channel, interceptor)
    return channel


class _KeyInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Adds the bearer key to every call (call credentials need TLS, so metadata it is)."""

    def __init__(self, key: str) -> None:
        self._pair = ("authorization", f"Bearer {key}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._pair]
        return details._replace(metadata=metadata)  # type: ignore[attr-defined,no-any-return]

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        return continuation(self._details(details), requests)
