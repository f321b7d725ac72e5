"""Configuration read from ``ENSAYO_*`` environment variables, validated all at once.

``from_env`` is pure (it takes the mapping); only ``main()`` functions read ``os.environ``.
Every bad variable is reported in one error so an operator fixes them in one go.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ensayo.errors import EnsayoError

__all__ = [
    "DEFAULT_ADDRS",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_METRICS_ADDRS",
    "SERVICES",
    "ConfigError",
    "EnvReader",
    "ServerConfig",
    "boolean",
    "choice",
    "is_loopback",
    "parse_addr",
    "positive_float",
]

SERVICES = ("assignment", "decisioning", "analysis", "catalog")
DEFAULT_ADDRS = {
    "assignment": "127.0.0.1:50051",
    "decisioning": "127.0.0.1:50052",
    "analysis": "127.0.0.1:50053",
    "catalog": "127.0.0.1:50054",
}
DEFAULT_METRICS_ADDRS = {
    "assignment": "127.0.0.1:9151",
    "decisioning": "127.0.0.1:9152",
    "analysis": "127.0.0.1:9153",
    "catalog": "127.0.0.1:9154",
}
DEFAULT_DATABASE_URL = "sqlite:///.ensayo/ensayo.db"
_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMATS = ("auto", "json", "console")

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more environment variables are invalid; the message lists each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


def parse_addr(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:50051`` for IPv6); port 0 asks the OS for a free one."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0..65535")
    return host.strip("[]"), port


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1; a server there needs no API keys."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EnvReader:
    """Reads ``ENSAYO_*`` variables, collecting every problem instead of stopping at the first.

    Services use it for their own settings, so every configuration error reads alike:
    ``NAME='value': reason``.
    """

    def __init__(self, env: Mapping[str, str], prefix: str = "") -> None:
        self.env = env
        self.prefix = prefix
        self.problems: list[str] = []

    def get(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        """``parse`` of the variable, or ``default`` when unset or empty (or bad, noted)."""
        full = self.prefix + name
        raw = self.env.get(full)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, TypeError, EnsayoError) as exc:
            self.problems.append(f"{full}={raw!r}: {exc}")
            return default

    def require(self, name: str, why: str) -> str:
        """The variable's value; when unset, a problem saying ``why`` it is needed."""
        value = self.env.get(self.prefix + name, "").strip()
        if not value:
            self.problems.append(f"{self.prefix}{name} is not set: {why}")
        return value

    def raise_if_any(self) -> None:
        """Raise ConfigError listing every problem seen so far."""
        if self.problems:
            raise ConfigError(self.problems)


def choice(options: tuple[str, ...]) -> Callable[[str], str]:
    """A parser accepting one of ``options`` (case-insensitive)."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def positive_float(raw: str) -> float:
    """A parser of finite numbers > 0 (seconds, intervals)."""
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a finite number > 0")
    return value


def _workers(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= MAX_GRPC_WORKERS:
        raise ValueError(f"must be an integer from 1 to {MAX_GRPC_WORKERS}")
    return value


MAX_GRPC_WORKERS = 256
"""Most handler threads a server may run (``ENSAYO_GRPC_WORKERS``)."""


def boolean(raw: str) -> bool:
    """A parser of true/false, yes/no, on/off, 1/0."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _addr(raw: str) -> str:
    parse_addr(raw)
    return raw


def _url(raw: str) -> str:
    if "://" not in raw:
        raise ValueError("must be a URL (scheme://...)")
    return raw


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What every Ensayo server needs; services read their own extras from the same mapping."""

    service: str
    addr: str
    metrics_addr: str
    log_level: str = "info"
    log_format: str = "auto"
    redis_url: str = ""
    database_url: str = DEFAULT_DATABASE_URL
    shutdown_grace_s: float = 10.0
    api_keys_file: str = ""
    snapshot_poll_s: float = 1.0
    grpc_workers: int = 16

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str]) -> ServerConfig:
        """Read ``ENSAYO_*`` for ``service``; raises ConfigError listing every bad variable."""
        if service not in SERVICES:
            raise ConfigError([f"service {service!r} is not one of {', '.join(SERVICES)}"])
        up = service.upper()
        r = EnvReader(env)
        config = cls(
            service=service,
            addr=r.get(f"ENSAYO_{up}_ADDR", DEFAULT_ADDRS[service], _addr),
            metrics_addr=r.get(f"ENSAYO_{up}_METRICS_ADDR", DEFAULT_METRICS_ADDRS[service], _addr),
            log_level=r.get("ENSAYO_LOG_LEVEL", "info", choice(_LOG_LEVELS)),
            log_format=r.get("ENSAYO_LOG_FORMAT", "auto", choice(_LOG_FORMATS)),
            redis_url=r.get("ENSAYO_REDIS_URL", "", _url),
            database_url=r.get("ENSAYO_DATABASE_URL", DEFAULT_DATABASE_URL, _url),
            shutdown_grace_s=r.get("ENSAYO_SHUTDOWN_GRACE_S", 10.0, positive_float),
            api_keys_file=r.get("ENSAYO_API_KEYS_FILE", "", str),
            snapshot_poll_s=r.get("ENSAYO_SNAPSHOT_POLL_S", 1.0, positive_float),
            grpc_workers=r.get("ENSAYO_GRPC_WORKERS", 16, _workers),
        )
        if config.api_keys_file and not Path(config.api_keys_file).is_file():
            r.problems.append(f"ENSAYO_API_KEYS_FILE={config.api_keys_file!r}: no such file")
        host = parse_addr(config.addr)[0] if not r.problems else "127.0.0.1"
        if not config.api_keys_file and not is_loopback(host):
            r.problems.append(
                f"ENSAYO_{up}_ADDR={config.addr!r}: refusing to bind a non-loopback address "
                "without ENSAYO_API_KEYS_FILE (set it, or bind 127.0.0.1)"
            )
        r.raise_if_any()
        return config
