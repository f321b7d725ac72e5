"""Generate the Python stubs in libs/ensayo/v1 from protos/ensayo/v1 (the only way to make them).

Run as ``python scripts/gen_protos.py``; ``make generate-check`` runs it and fails when the
committed stubs differ. No rewriting of imports: the output root is ``libs/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUT = ROOT / "libs"
PACKAGE = OUT / "ensayo" / "v1"


def main() -> int:
    """Regenerate every stub; returns protoc's exit code."""
    import grpc_tools  # noqa: PLC0415  (dev dependency, imported only when generating)

    include = Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    for old in PACKAGE.glob("*_pb2*.py*"):
        old.unlink()
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *sources,
    ]
    env = dict(os.environ)
    # protoc finds the mypy-protobuf plugins next to this interpreter, venv or not.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    code = subprocess.call(cmd, cwd=ROOT, env=env)
    if code:
        return code
    names = sorted(p.stem for p in PACKAGE.glob("*_pb2.py"))
    lines = ['"""Generated protobuf and gRPC stubs for ensayo.v1: never edit by hand."""', ""]
    lines += [f"from ensayo.v1 import {n} as {n}" for n in names]
    lines += [f"from ensayo.v1 import {n}_grpc as {n}_grpc" for n in names if _has_service(n)]
    (PACKAGE / "__init__.py").write_text("\n".join(lines) + "\n")
    (PACKAGE / "py.typed").touch()
    return 0


def _has_service(stem: str) -> bool:
    return stem.endswith("_service_pb2")


if __name__ == "__main__":
    raise SystemExit(main())
