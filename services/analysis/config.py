"""Analysis settings beyond the shared ``ServerConfig``, read from ``ENSAYO_*`` variables.

``from_env`` is pure and lists every bad variable in one ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ensayo.serverkit.config import ConfigError

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
        problems: list[str] = []
        consumer: ConsumerMode = "process"
        raw = env.get("ENSAYO_ANALYSIS_CONSUMER", "").strip().lower()
        if raw:
            match = [m for m in CONSUMER_MODES if m == raw]
            if match:
                consumer = match[0]
            else:
                problems.append(
                    f"ENSAYO_ANALYSIS_CONSUMER={raw!r}: must be one of {', '.join(CONSUMER_MODES)}"
                )
        claim = 60.0
        raw_claim = env.get("ENSAYO_ANALYSIS_CLAIM_IDLE_S", "")
        if raw_claim:
            try:
                claim = float(raw_claim)
            except ValueError:
                claim = float("nan")
            if not 0 < claim < float("inf"):
                problems.append(
                    f"ENSAYO_ANALYSIS_CLAIM_IDLE_S={raw_claim!r}: must be a number of seconds > 0"
                )
                claim = 60.0
        if problems:
            raise ConfigError(problems)
        return cls(consumer=consumer, claim_idle_s=claim)
