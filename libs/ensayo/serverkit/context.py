"""Per-call context the interceptor sets and handlers and log lines read.

One context variable per call: the caller's name (for audit) and what every log line of the
call carries (request id, RPC, service). Setting one variable is cheaper on the hot path
than binding and clearing structlog's context variables key by key;
``call_context_processor`` adds the fields to each log line instead.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = ["CallInfo", "call_context_processor", "current_actor", "set_actor", "set_call"]


@dataclass(slots=True)
class CallInfo:
    """What one RPC is: its request id, method and service, and the caller once known."""

    request_id: str
    rpc: str
    service: str
    actor: str = "local"


_call: ContextVar[CallInfo | None] = ContextVar("ensayo_call", default=None)


def set_call(info: CallInfo | None) -> None:
    """Start (or, with None, end) the current thread's call."""
    _call.set(info)


def current_actor() -> str:
    """The authenticated API key's name, or ``local`` when auth is off or outside a call."""
    info = _call.get()
    return info.actor if info is not None else "local"


def set_actor(name: str) -> None:
    """Record the caller's name for the current call."""
    info = _call.get()
    if info is not None:
        info.actor = name


def call_context_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the current call's request id, RPC and service to a log line (a processor)."""
    info = _call.get()
    if info is not None:
        event_dict.setdefault("request_id", info.request_id)
        event_dict.setdefault("rpc", info.rpc)
        event_dict.setdefault("service", info.service)
    return event_dict
