"""ensayo.stats stays pure: importing it pulls in no transport or storage library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LIBS = Path(__file__).resolve().parents[3] / "libs"


class TestLayering:
    def test_import_loads_no_grpc_redis_sqlalchemy_or_stubs(self):
        """A fresh interpreter importing ensayo.stats has no grpc, redis, sqlalchemy, ensayo.v1."""
        code = (
            "import sys; import ensayo.stats; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('grpc', 'redis', 'sqlalchemy', 'statsmodels') or m.startswith('ensayo.v1')]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONPATH": str(LIBS)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
