"""API keys with scopes: keys are stored as hex SHA-256 and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ensayo.errors import PermissionDenied, Unauthenticated

__all__ = ["SCOPES", "ApiKey", "Authenticator", "load_keys", "required_scope"]

SCOPES = frozenset({"assign", "decide", "track", "read", "admin"})
_SERVICE_SCOPE = {
    "ensayo.v1.AssignmentService": "assign",
    "ensayo.v1.DecisioningService": "decide",
    "ensayo.v1.EventsService": "track",
    "ensayo.v1.AnalysisService": "read",
}
_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
_CATALOG_READ_PREFIXES = ("Get", "List")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A named key: only its SHA-256 (hex) is known to the server."""

    name: str
    sha256: str
    scopes: frozenset[str]


def load_keys(path: str | Path) -> tuple[ApiKey, ...]:
    """Parse the keys file: a YAML list of ``{name, sha256, scopes}``; raises ValueError."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: must be a YAML list of {{name, sha256, scopes}}")
    keys = []
    for i, item in enumerate(data):
        if not isinstance(item, Mapping):
            raise ValueError(f"{path}[{i}]: must be a mapping")
        name, digest, scopes = item.get("name"), item.get("sha256"), item.get("scopes", [])
        if not isinstance(name, str) or not name:
            raise ValueError(f"{path}[{i}].name: required")
        if not isinstance(digest, str) or len(digest) != 64:
            raise ValueError(f"{path}[{i}].sha256: must be 64 hex characters")
        int(digest, 16)
        if not isinstance(scopes, Sequence) or isinstance(scopes, str):
            raise ValueError(f"{path}[{i}].scopes: must be a list")
        unknown = set(scopes) - SCOPES
        if unknown:
            raise ValueError(f"{path}[{i}].scopes: unknown {sorted(unknown)}")
        keys.append(ApiKey(name, digest.lower(), frozenset(scopes)))
    return tuple(keys)


def required_scope(method: str) -> str | None:
    """The scope ``/package.Service/Method`` needs, or None for health and reflection."""
    if method.startswith(_OPEN_PREFIXES):
        return None
    service, _, rpc = method.strip("/").partition("/")
    if service == "ensayo.v1.CatalogService":
        return "read" if rpc.startswith(_CATALOG_READ_PREFIXES) else "admin"
    return _SERVICE_SCOPE.get(service, "admin")


class Authenticator:
    """Checks ``authorization: Bearer KEY`` against the loaded keys; None keys means open."""

    def __init__(self, keys: Sequence[ApiKey] | None) -> None:
        self._keys = tuple(keys) if keys is not None else None

    @property
    def enabled(self) -> bool:
        """Whether calls need a key."""
        return self._keys is not None

    def authorize(self, method: str, metadata: Mapping[str, str]) -> str:
        """The caller's name (``local`` when auth is off).

        Raises Unauthenticated without a known key and PermissionDenied without the scope.
        """
        scope = required_scope(method)
        if self._keys is None:
            return "local"
        if scope is None:
            return "anonymous"
        header = metadata.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("missing API key: send 'authorization: Bearer KEY' metadata")
        digest = hashlib.sha256(token.strip().encode("utf-8")).hexdigest()
        match = None
        for key in self._keys:  # every key is compared, so timing does not reveal which matched
            if hmac.compare_digest(digest, key.sha256):
                match = key
        if match is None:
            raise Unauthenticated("unknown API key")
        if scope not in match.scopes:
            raise PermissionDenied(f"API key {match.name!r} lacks the {scope!r} scope")
        return match.name
