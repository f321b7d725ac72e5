"""deploy/Dockerfile and .dockerignore, checked without a Docker engine.

The Dockerfile is parsed into stages; the build context is reproduced from .dockerignore's
allow-list and built into a wheel, which is what the image's `pip install .` does.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .support import ROOT, SERVICES

pytestmark = pytest.mark.chart

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    """One FROM ... [AS name] block: its base and its (instruction, arguments) lines."""

    base: str
    name: str
    lines: list[tuple[str, str]] = field(default_factory=list)

    def args_of(self, instruction: str) -> list[str]:
        return [args for instr, args in self.lines if instr == instruction]

    def env(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for args in self.args_of("ENV"):
            for item in args.split():
                key, _, value = item.partition("=")
                pairs[key] = value
        return pairs


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and the stages, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        args = " ".join(args.split())
        if instruction == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert instruction == "ARG", f"only ARG may precede the first FROM: {line}"
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            stages[-1].lines.append((instruction, args))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], Stage]:
    global_args, stages = parse_dockerfile(DOCKERFILE.read_text())
    return global_args, {stage.name: stage for stage in stages if stage.name}, stages[-1]


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def in_context(relative: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes.

    A pattern also matches everything below a matching folder. Enough of Docker's
    matcher for the patterns this repository uses (`*`, `**/x`, `!dir/`).
    """
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in ignore_patterns():
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        candidates = [body, body.removeprefix("**/")] if body.startswith("**/") else [body]
        matched = any(
            fnmatch.fnmatchcase(prefix, candidate)
            or (candidate != body and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], candidate))
            for prefix in prefixes
            for candidate in candidates
        )
        if matched:
            included = negate
    return included


class TestDockerfile:
    """One multi-stage image: builder venv, slim non-root runtime, one stage per service."""

    def test_default_service_is_catalog(
        self, dockerfile: tuple[dict[str, str], dict[str, Stage], Stage]
    ) -> None:
        """ARG SERVICE defaults to catalog and the final stage is the one it names."""
        global_args, stages, final = dockerfile
        assert global_args["SERVICE"] == "catalog"
        assert final.base == "${SERVICE}"
        assert set(SERVICES) <= stages.keys()

    def test_builder_and_runtime_on_python_slim(
        self, dockerfile: tuple[dict[str, str], dict[str, Stage], Stage]
    ) -> None:
        """Both stages start from python:3.11-slim; the runtime takes only the builder's venv."""
        global_args, stages, _ = dockerfile
        assert global_args["PYTHON_IMAGE"] == "python:3.11-slim"
        assert stages["builder"].base == stages["runtime"].base == "${PYTHON_IMAGE}"
        runtime = stages["runtime"]
        assert runtime.args_of("COPY") == ["--from=builder /opt/venv /opt/venv"]
        assert not any("pip" in args for args in runtime.args_of("RUN"))

    def test_runtime_is_non_root(
        self, dockerfile: tuple[dict[str, str], dict[str, Stage], Stage]
    ) -> None:
        """The runtime creates UID/GID 1000 and switches to it before the entrypoint."""
        _, stages, _ = dockerfile
        runtime = stages["runtime"]
        assert "--uid 1000" in " ".join(runtime.args_of("RUN"))
        assert runtime.args_of("USER") == ["1000:1000"]
        instructions = [instr for instr, _ in runtime.lines]
        assert instructions.index("USER") < instructions.index("ENTRYPOINT")

    def test_entrypoint_is_ensayo_serve(
        self, dockerfile: tuple[dict[str, str], dict[str, Stage], Stage]
    ) -> None:
        """Exec-form ENTRYPOINT, so `ensayo` is PID 1 and gets SIGTERM."""
        _, stages, _ = dockerfile
        (entrypoint,) = stages["runtime"].args_of("ENTRYPOINT")
        assert json.loads(entrypoint) == ["ensayo", "serve"]

    @pytest.mark.parametrize("service", list(SERVICES))
    def test_service_stage(
        self, dockerfile: tuple[dict[str, str], dict[str, Stage], Stage], service: str
    ) -> None:
        """Each service stage sets ENSAYO_SERVICE, binds 0.0.0.0, exposes and runs its ports."""
        grpc_port, metrics_port = SERVICES[service]
        stage = dockerfile[1][service]
        assert stage.base == "runtime"
        env = stage.env()
        prefix = f"ENSAYO_{service.upper()}"
        assert env["ENSAYO_SERVICE"] == service
        assert env[f"{prefix}_ADDR"] == f"0.0.0.0:{grpc_port}"
        assert env[f"{prefix}_METRICS_ADDR"] == f"0.0.0.0:{metrics_port}"
        assert stage.args_of("EXPOSE") == [f"{grpc_port} {metrics_port}"]
        (cmd,) = stage.args_of("CMD")
        assert json.loads(cmd) == [service]

    def test_no_dev_dependencies(
        self, dockerfile: tuple[dict[str, str], dict[str, Stage], Stage]
    ) -> None:
        """The builder installs no extras and fails the build if grpcio-tools got in."""
        _, stages, _ = dockerfile
        runs = " ".join(stages["builder"].args_of("RUN"))
        assert "[dev]" not in runs
        assert "pip install --no-deps ." in runs
        assert "pip show grpcio-tools" in runs


class TestBuildContext:
    """.dockerignore lets in what `pip install .` needs and nothing else."""

    def test_allow_list(self) -> None:
        """Everything is ignored first; only the package's inputs come back."""
        assert ignore_patterns()[0] == "*"
        for wanted in ("pyproject.toml", "README.md", "libs/ensayo/__init__.py", "services/x.py"):
            assert in_context(wanted), wanted
        for unwanted in (".venv/bin/python", ".git/HEAD", "tests/unit/x.py", ".env", "k8s/a.yaml"):
            assert not in_context(unwanted), unwanted
        for cache in ("libs/ensayo/__pycache__/x.pyc", "services/a/__pycache__/b.pyc"):
            assert not in_context(cache), cache

    def test_every_copy_source_is_in_context(
        self, dockerfile: tuple[dict[str, str], dict[str, Stage], Stage]
    ) -> None:
        """No COPY in the Dockerfile names a path the context leaves out."""
        _, stages, _ = dockerfile
        for args in stages["builder"].args_of("COPY"):
            *sources, _ = args.split()
            for source in sources:
                assert in_context(source.rstrip("/")), source

    def test_context_builds_the_runtime_wheel(self, tmp_path: Path) -> None:
        """The context alone builds a wheel with every module, the CLI and no grpcio-tools."""
        readme = ROOT / "README.md"
        if not readme.exists():
            pytest.fail("pyproject.toml names README.md as the readme; the image build needs it")
        context = tmp_path / "context"
        context.mkdir()
        shutil.copy2(ROOT / "pyproject.toml", context)
        shutil.copy2(readme, context)
        sources: set[str] = set()
        for folder in ("libs", "services"):
            for path in sorted((ROOT / folder).rglob("*")):
                relative = path.relative_to(ROOT).as_posix()
                if path.is_file() and in_context(relative):
                    target = context / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
                    if path.suffix in {".py", ".pyi"}:
                        sources.add(relative)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--wheel-dir", str(tmp_path / "wheels"), str(context)],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        (wheel,) = (tmp_path / "wheels").glob("ensayo-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
            (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
            requires = [
                line.removeprefix("Requires-Dist: ")
                for line in archive.read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist: ")
            ]
            scripts = archive.read(entry_points).decode()
        installed = {name.removeprefix("libs/") for name in sources if "/__pycache__/" not in name}
        assert installed <= names, sorted(installed - names)[:10]
        assert any(n.startswith("ensayo/v1/") and n.endswith("_pb2.py") for n in names)
        assert "ensayo = ensayo.cli.main:main" in scripts
        runtime = [r for r in requires if "extra ==" not in r]
        assert any(r.startswith("grpcio-health-checking") for r in runtime)
        assert not any(r.startswith("grpcio-tools") for r in runtime)
