"""The observers the analysis service hands newly tracked events to.

Each part of the platform that reacts to events lists a provider module here; the module
exposes ``make_observer(**context) -> EventObserver``. The intake wiring stays in one place
and imports nothing it does not need.
"""

from __future__ import annotations

import importlib
from typing import Any

from ensayo.events.ports import EventObserver

__all__ = ["PROVIDERS", "build_observers"]

# Modules exposing make_observer(**context); context keys: redis (a redis.Redis client),
# snapshots (an ensayo.catalog.holder.SnapshotHolder), clock (() -> aware datetime).
PROVIDERS: tuple[str, ...] = ("ensayo.state.bandit_state",)


def build_observers(**context: Any) -> list[EventObserver]:
    """One observer per provider module, built with the wiring context."""
    observers: list[EventObserver] = []
    for name in PROVIDERS:
        module = importlib.import_module(name)
        observers.append(module.make_observer(**context))
    return observers
