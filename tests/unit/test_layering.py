"""The layer rule: pure domain packages import neither grpc, redis, sqlalchemy nor stubs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LIBS = Path(__file__).resolve().parents[2] / "libs"
PURE = sorted(
    f"ensayo.{p.stem if p.is_file() else p.name}"
    for p in (LIBS / "ensayo").iterdir()
    if (p.suffix == ".py" and p.stem not in {"__init__"})
    or (
        p.is_dir()
        and (p / "__init__.py").exists()
        and p.name not in {"v1", "serverkit", "state", "storage", "client", "cli"}
    )
)
FORBIDDEN = ("grpc", "redis", "sqlalchemy", "ensayo.v1", "google.protobuf")


class TestLayering:
    def test_the_pure_packages_are_found(self) -> None:
        """The scan sees the domain packages (so the test below is not vacuous)."""
        assert {"ensayo.catalog", "ensayo.errors"} <= set(PURE)

    @pytest.mark.parametrize("module", PURE)
    def test_pure_module_imports_no_transport_or_storage(self, module: str) -> None:
        """Importing a domain module (and everything it imports) loads no adapter library."""
        code = (
            "import importlib, pkgutil, sys\n"
            f"m = importlib.import_module({module!r})\n"
            "if hasattr(m, '__path__'):\n"
            "    for info in pkgutil.walk_packages(m.__path__, m.__name__ + '.'):\n"
            "        importlib.import_module(info.name)\n"
            f"bad = [n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r} "
            f"or any(n == f or n.startswith(f + '.') for f in {FORBIDDEN!r})]\n"
            "print(','.join(sorted(bad)))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(LIBS)},
        )
        assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"
