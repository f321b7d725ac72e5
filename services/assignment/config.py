"""Assignment settings beyond the shared ``ServerConfig``, read from ``ENSAYO_*`` variables.

``from_env`` is pure and lists every bad variable in one ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ensayo.serverkit.config import EnvReader, boolean, positive_float

__all__ = ["AssignmentConfig"]


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
        r = EnvReader(env)
        redis_url = r.require(
            "ENSAYO_REDIS_URL",
            "the assignment service needs Redis for the catalog snapshot, sticky assignments, "
            "bandits and exposures (e.g. redis://127.0.0.1:6379/0)",
        )
        poll = r.get("ENSAYO_ALLOCATION_POLL_S", 1.0, positive_float)
        allocator = r.get("ENSAYO_ASSIGNMENT_ALLOCATOR", True, boolean)
        r.raise_if_any()
        return cls(redis_url, poll, allocator)
