"""Per-call context the interceptor sets and handlers read (the caller's name, for audit)."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["current_actor", "set_actor"]

_actor: ContextVar[str] = ContextVar("ensayo_actor", default="local")


def current_actor() -> str:
    """The authenticated API key's name, or ``local`` when auth is off."""
    return _actor.get()


def set_actor(name: str) -> None:
    """Bind the caller's name for the current call."""
    _actor.set(name)
