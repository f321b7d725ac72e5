"""Assignment settings beyond the shared ``ServerConfig``, read from ``ENSAYO_*`` variables.

``from_env`` is pure and lists every bad variable in one ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ensayo.serverkit.config import ConfigError

__all__ = ["AssignmentConfig"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class AssignmentConfig:
    """What the assignment service needs on top of ``ServerConfig``.

    - ``redis_url`` (``ENSAYO_REDIS_URL``): required; snapshots, sticky assignments, bandit
      state and exposures live there.
    - ``allocation_poll_s`` (``ENSAYO_ALLOCATION_POLL_S``, default 1): how often bandit
      allocations are refreshed and the allocator considers an update.
    - ``allocator`` (``ENSAYO_ASSIGNMENT_ALLOCATOR``, default true): whether this replica
      stands for election as the bandit allocator.
    """

    redis_url: str
    allocation_poll_s: float = 1.0
    allocator: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AssignmentConfig:
        """Read and validate; raises ``ConfigError`` listing every problem."""
        problems: list[str] = []
        redis_url = env.get("ENSAYO_REDIS_URL", "")
        if not redis_url:
            problems.append(
                "ENSAYO_REDIS_URL is not set: the assignment service needs Redis for the "
                "catalog snapshot, sticky assignments, bandits and exposures "
                "(e.g. redis://127.0.0.1:6379/0)"
            )
        poll = 1.0
        raw_poll = env.get("ENSAYO_ALLOCATION_POLL_S", "")
        if raw_poll:
            try:
                poll = float(raw_poll)
            except ValueError:
                poll = float("nan")
            if not 0 < poll < float("inf"):
                problems.append(f"ENSAYO_ALLOCATION_POLL_S={raw_poll!r}: must be a number > 0")
                poll = 1.0
        allocator = True
        raw_allocator = env.get("ENSAYO_ASSIGNMENT_ALLOCATOR", "").strip().lower()
        if raw_allocator in _FALSE:
            allocator = False
        elif raw_allocator and raw_allocator not in _TRUE:
            problems.append(
                f"ENSAYO_ASSIGNMENT_ALLOCATOR={raw_allocator!r}: must be true or false"
            )
        if problems:
            raise ConfigError(problems)
        return cls(redis_url, poll, allocator)
