"""Analysis settings beyond the shared ``ServerConfig``, read from ``ENSAYO_*`` variables.

``from_env`` is pure and lists every bad variable in one ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from ensayo.serverkit.config import EnvReader, choice, positive_float

__all__ = ["CONSUMER_MODES", "AnalysisConfig"]

ConsumerMode = Literal["process", "thread", "off"]
CONSUMER_MODES: tuple[ConsumerMode, ...] = ("process", "thread", "off")


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    """What the analysis service needs on top of ``ServerConfig``.

    - ``consumer`` (``ENSAYO_ANALYSIS_CONSUMER``, default ``process``): where the stream
      consumer that writes events to SQL runs: a child ``process`` (its own interpreter and
      GIL, so intake and consumption use two cores), a ``thread`` of the server, or ``off``
      (a separate deployment consumes; run ``ensayo serve analysis`` with ``thread`` there).
    - ``claim_idle_s`` (``ENSAYO_ANALYSIS_CLAIM_IDLE_S``, default 60): how long a consumer's
      unacknowledged entries wait before another replica reclaims them (XAUTOCLAIM).
    """

    consumer: ConsumerMode = "process"
    claim_idle_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AnalysisConfig:
        """Read and validate; raises ``ConfigError`` listing every problem."""
        r = EnvReader(env)
        consumer = r.get("ENSAYO_ANALYSIS_CONSUMER", "process", choice(CONSUMER_MODES))
        claim = r.get("ENSAYO_ANALYSIS_CLAIM_IDLE_S", 60.0, positive_float)
        r.raise_if_any()
        return cls(cast("ConsumerMode", consumer), claim)
