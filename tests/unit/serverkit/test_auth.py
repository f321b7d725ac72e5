"""API keys: loading, the scope of every RPC, authorisation outcomes."""

from __future__ import annotations

import hashlib

import pytest

from ensayo.errors import PermissionDenied, Unauthenticated
from ensayo.serverkit.auth import ApiKey, Authenticator, load_keys, required_scope


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class TestRequiredScope:
    @pytest.mark.parametrize(
        ("method", "scope"),
        [
            ("/ensayo.v1.AssignmentService/Assign", "assign"),
            ("/ensayo.v1.AssignmentService/AssignStream", "assign"),
            ("/ensayo.v1.DecisioningService/Decide", "decide"),
            ("/ensayo.v1.EventsService/Track", "track"),
            ("/ensayo.v1.AnalysisService/GetExperimentReport", "read"),
            ("/ensayo.v1.CatalogService/GetExperiment", "read"),
            ("/ensayo.v1.CatalogService/ListAuditRecords", "read"),
            ("/ensayo.v1.CatalogService/ApplyExperiment", "admin"),
            ("/ensayo.v1.CatalogService/SetExperimentState", "admin"),
            ("/grpc.health.v1.Health/Check", None),
            ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", None),
        ],
    )
    def test_scope_per_rpc(self, method: str, scope: str | None) -> None:
        """Each RPC needs the scope CONTRACT.md gives it; health and reflection stay open."""
        assert required_scope(method) == scope


class TestAuthenticator:
    keys = (
        ApiKey("ops", _digest("secret-ops"), frozenset({"admin", "read"})),
        ApiKey("web", _digest("secret-web"), frozenset({"assign"})),
    )

    def test_disabled_means_local(self) -> None:
        """Without keys every call is allowed as 'local'."""
        assert Authenticator(None).authorize("/ensayo.v1.CatalogService/ApplyLayer", {}) == "local"

    def test_valid_key_with_scope(self) -> None:
        """A known key with the needed scope yields its name."""
        auth = Authenticator(self.keys)
        md = {"authorization": "Bearer secret-ops"}
        assert auth.authorize("/ensayo.v1.CatalogService/ApplyLayer", md) == "ops"

    def test_missing_key(self) -> None:
        """No key is UNAUTHENTICATED."""
        with pytest.raises(Unauthenticated, match="missing"):
            Authenticator(self.keys).authorize("/ensayo.v1.AssignmentService/Assign", {})

    def test_unknown_key(self) -> None:
        """A key whose hash is not listed is UNAUTHENTICATED."""
        with pytest.raises(Unauthenticated, match="unknown"):
            Authenticator(self.keys).authorize(
                "/ensayo.v1.AssignmentService/Assign", {"authorization": "Bearer nope"}
            )

    def test_key_without_scope(self) -> None:
        """A known key lacking the scope is PERMISSION_DENIED, naming key and scope."""
        with pytest.raises(PermissionDenied, match="'web'.*'admin'"):
            Authenticator(self.keys).authorize(
                "/ensayo.v1.CatalogService/ApplyLayer", {"authorization": "Bearer secret-web"}
            )

    def test_health_needs_no_key(self) -> None:
        """Health checks pass without a key even when auth is on."""
        assert Authenticator(self.keys).authorize("/grpc.health.v1.Health/Check", {})


class TestLoadKeys:
    def test_loads_yaml(self, tmp_path) -> None:
        """The keys file is a YAML list of name, sha256, scopes."""
        path = tmp_path / "keys.yaml"
        path.write_text(f"- name: ops\n  sha256: {_digest('k')}\n  scopes: [admin, read]\n")
        (key,) = load_keys(path)
        assert key.name == "ops"
        assert key.scopes == {"admin", "read"}

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("name: x", "list"),
            ("- name: x\n  sha256: abc\n  scopes: []", "64 hex"),
            (f"- name: x\n  sha256: {'a' * 64}\n  scopes: [root]", "unknown"),
            (f"- sha256: {'a' * 64}\n  scopes: []", "name"),
        ],
    )
    def test_rejects_bad_files(self, tmp_path, text: str, message: str) -> None:
        """Malformed key files fail with the entry and the reason."""
        path = tmp_path / "keys.yaml"
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_keys(path)
