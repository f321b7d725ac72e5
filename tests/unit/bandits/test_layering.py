"""The bandit package stays pure: importing it pulls in no transport or storage module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("grpc", "redis", "sqlalchemy", "ensayo.v1")


class TestLayering:
    def test_import_loads_no_transport_or_storage(self):
        """A fresh interpreter importing ensayo.bandits has no grpc/redis/sqlalchemy/ensayo.v1."""
        code = "import sys, json, ensayo.bandits; print(json.dumps(sorted(sys.modules)))"
        libs = str(Path(__file__).resolve().parents[3] / "libs")
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONPATH": libs},
            capture_output=True,
            text=True,
            check=True,
        )
        loaded = json.loads(out.stdout)
        leaked = [m for m in loaded for f in FORBIDDEN if m == f or m.startswith(f + ".")]
        assert leaked == []
        assert "ensayo.bandits.exploration" in loaded
