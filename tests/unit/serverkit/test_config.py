"""ServerConfig.from_env: defaults, validation, the loopback rule."""

from __future__ import annotations

import pytest

from ensayo.serverkit.config import ConfigError, ServerConfig, is_loopback, parse_addr


class TestServerConfig:
    def test_defaults_follow_the_contract(self) -> None:
        """With no variables each service listens on its contract address on loopback."""
        config = ServerConfig.from_env("assignment", {})
        assert config.addr == "127.0.0.1:50051"
        assert config.metrics_addr == "127.0.0.1:9151"
        assert ServerConfig.from_env("catalog", {}).addr == "127.0.0.1:50054"
        assert config.database_url == "sqlite:///.ensayo/ensayo.db"

    def test_reads_variables(self) -> None:
        """Every ENSAYO_* variable is read into its field."""
        config = ServerConfig.from_env(
            "analysis",
            {
                "ENSAYO_ANALYSIS_ADDR": "127.0.0.1:7000",
                "ENSAYO_ANALYSIS_METRICS_ADDR": "127.0.0.1:7001",
                "ENSAYO_LOG_LEVEL": "DEBUG",
                "ENSAYO_REDIS_URL": "redis://h:1/0",
                "ENSAYO_DATABASE_URL": "postgresql+psycopg://u@h/db",
                "ENSAYO_SHUTDOWN_GRACE_S": "2.5",
                "ENSAYO_GRPC_WORKERS": "4",
            },
        )
        assert config.grpc_workers == 4
        assert (config.addr, config.metrics_addr) == ("127.0.0.1:7000", "127.0.0.1:7001")
        assert config.log_level == "debug"
        assert config.shutdown_grace_s == 2.5
        assert config.database_url.startswith("postgresql")

    def test_every_bad_variable_is_listed_at_once(self) -> None:
        """Several bad values give one error naming each variable and the reason."""
        with pytest.raises(ConfigError) as info:
            ServerConfig.from_env(
                "catalog",
                {
                    "ENSAYO_CATALOG_ADDR": "nonsense",
                    "ENSAYO_LOG_LEVEL": "loud",
                    "ENSAYO_SHUTDOWN_GRACE_S": "-1",
                    "ENSAYO_REDIS_URL": "localhost",
                    "ENSAYO_GRPC_WORKERS": "0",
                },
            )
        text = str(info.value)
        for name in (
            "ENSAYO_CATALOG_ADDR",
            "ENSAYO_LOG_LEVEL",
            "ENSAYO_SHUTDOWN_GRACE_S",
            "ENSAYO_REDIS_URL",
            "ENSAYO_GRPC_WORKERS",
        ):
            assert name in text
        assert len(info.value.problems) == 5

    def test_non_loopback_bind_needs_api_keys(self) -> None:
        """Binding 0.0.0.0 without a keys file is refused with a clear reason."""
        with pytest.raises(ConfigError, match="non-loopback.*ENSAYO_API_KEYS_FILE"):
            ServerConfig.from_env("assignment", {"ENSAYO_ASSIGNMENT_ADDR": "0.0.0.0:50051"})

    def test_non_loopback_bind_with_keys_is_allowed(self, tmp_path) -> None:
        """With a keys file, any address may be bound."""
        keys = tmp_path / "keys.yaml"
        keys.write_text("[]")
        config = ServerConfig.from_env(
            "assignment",
            {"ENSAYO_ASSIGNMENT_ADDR": "0.0.0.0:50051", "ENSAYO_API_KEYS_FILE": str(keys)},
        )
        assert config.api_keys_file == str(keys)

    def test_missing_keys_file_is_reported(self) -> None:
        """A keys file that does not exist is a configuration error."""
        with pytest.raises(ConfigError, match="no such file"):
            ServerConfig.from_env("catalog", {"ENSAYO_API_KEYS_FILE": "/nonexistent.yaml"})

    def test_unknown_service(self) -> None:
        """Only the four services exist."""
        with pytest.raises(ConfigError, match="not one of"):
            ServerConfig.from_env("billing", {})


class TestAddresses:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("127.0.0.1:1", ("127.0.0.1", 1)),
            ("[::1]:50051", ("::1", 50051)),
            ("localhost:0", ("localhost", 0)),
        ],
    )
    def test_parse_addr(self, text: str, expected: tuple[str, int]) -> None:
        """host:port parses, IPv6 in brackets included."""
        assert parse_addr(text) == expected

    @pytest.mark.parametrize("text", ["50051", ":50051", "host:99999", "host:x"])
    def test_parse_addr_rejects(self, text: str) -> None:
        """Malformed addresses raise ValueError."""
        with pytest.raises(ValueError):
            parse_addr(text)

    @pytest.mark.parametrize(
        ("host", "loopback"),
        [
            ("127.0.0.1", True),
            ("127.3.2.1", True),
            ("::1", True),
            ("localhost", True),
            ("0.0.0.0", False),
            ("10.0.0.1", False),
            ("example.com", False),
        ],
    )
    def test_is_loopback(self, host: str, loopback: bool) -> None:
        """Only loopback hosts count as loopback."""
        assert is_loopback(host) is loopback
