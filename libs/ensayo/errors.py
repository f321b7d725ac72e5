"""The one error tree of Ensayo; ``ensayo.serverkit.errors`` maps it to gRPC status codes.

Domain code raises these and never imports grpc, so the same errors serve the CLI, the
client and tests that run without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadyExists",
    "DependencyUnavailable",
    "EnsayoError",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "VersionConflict",
]


class EnsayoError(Exception):
    """Base of every error Ensayo raises on purpose; anything else is a bug."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path (``experiment.variants[1].weight``) and why it is bad."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidArgument(EnsayoError):
    """A request or definition breaks a rule; names every bad field and the reason."""

    def __init__(self, field: str, reason: str, *more: FieldViolation) -> None:
        self.violations: tuple[FieldViolation, ...] = (FieldViolation(field, reason), *more)
        super().__init__("; ".join(str(v) for v in self.violations))

    @property
    def field(self) -> str:
        """Path of the first bad field."""
        return self.violations[0].field

    @property
    def reason(self) -> str:
        """Why the first bad field is bad."""
        return self.violations[0].reason

    def prefixed(self, prefix: str) -> InvalidArgument:
        """The same violations with ``prefix`` put before each field path."""
        fixed = [FieldViolation(_join(prefix, v.field), v.reason) for v in self.violations]
        return InvalidArgument(fixed[0].field, fixed[0].reason, *fixed[1:])


def _join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if not field:
        return prefix
    return f"{prefix}{field}" if field.startswith("[") else f"{prefix}.{field}"


class NotFound(EnsayoError):
    """An object named in a request does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class AlreadyExists(EnsayoError):
    """A create-only write (``expected_version = 0``) found the key taken."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} already exists")


class VersionConflict(EnsayoError):
    """An optimistic write expected another version than the stored one."""

    def __init__(self, kind: str, key: str, expected: int, actual: int) -> None:
        self.kind = kind
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"expected_version: {kind} {key!r} is at version {actual}, not {expected}"
        )


class FailedPrecondition(EnsayoError):
    """The system is not in a state that allows the operation (e.g. an illegal state move)."""


class DependencyUnavailable(EnsayoError):
    """Redis or SQL cannot be reached and there is no safe fallback; the client may retry."""

    def __init__(self, dependency: str, reason: str) -> None:
        self.dependency = dependency
        super().__init__(f"{dependency} unavailable: {reason}")


class ResourceExhausted(EnsayoError):
    """A request is larger than a documented limit."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"{field}: {reason}")


class Unauthenticated(EnsayoError):
    """No API key, or an unknown one."""


class PermissionDenied(EnsayoError):
    """The API key lacks the scope the call needs."""
