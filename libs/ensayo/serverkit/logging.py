"""structlog configured once: JSON off a TTY, console on one, UTC ISO timestamps, context vars.

Unit ids and attribute values never go to logs in clear: use ``redact`` for anything that
identifies a person.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from typing import TextIO, cast

import structlog

from ensayo.serverkit.context import call_context_processor

__all__ = ["configure", "redact"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog for a server process; ``fmt`` is auto, json or console."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    # Tracebacks without local variables: a frame's locals hold unit ids, attributes and
    # configuration, which logs must never carry (structlog shows them by default).
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        call_context_processor,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if use_json:
        processors.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=cast("TextIO", _CurrentStderr())),
        cache_logger_on_first_use=True,
    )


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at write time (test runners swap and close it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def redact(value: str) -> str:
    """A short stable pseudonym for an identifier, so logs can be correlated without it."""
    return "h:" + hashlib.blake2b(value.encode("utf-8"), digest_size=6).hexdigest()
