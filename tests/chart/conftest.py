"""Fixtures for the chart tier: the Helm chart rendered offline by Helm's own Go code."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from .support import CHART_DIR, NAMESPACE, RELEASE, ROOT, Release, merge, parse


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    """The chart, loaded once by Helm's Go loader."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[..., Release]:
    """Render the chart with values layered over its defaults (like `helm template -f`)."""

    def _render(*layers: dict[str, Any], release: str = RELEASE) -> Release:
        values: dict[str, Any] = {}
        for layer in layers:
            values = merge(values, layer)
        rendered = chart.render(
            values=values or None, name=release, namespace=NAMESPACE, is_install=True
        )
        return parse(rendered)

    return _render


@pytest.fixture(scope="session")
def prod_values() -> dict[str, Any]:
    """The production example values file."""
    loaded: dict[str, Any] = yaml.safe_load((CHART_DIR / "values-prod.yaml").read_text())
    return loaded


@pytest.fixture(scope="session")
def default_release(render: Callable[..., Release]) -> Release:
    """The chart rendered with its default values."""
    return render()


@pytest.fixture(scope="session")
def prod_release(render: Callable[..., Release], prod_values: dict[str, Any]) -> Release:
    """The chart rendered with values-prod.yaml."""
    return render(prod_values)


@pytest.fixture(scope="session")
def base_renderer() -> ModuleType:
    """deploy/render_k8s_base.py, imported by path (deploy/ is not a package)."""
    pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    spec = importlib.util.spec_from_file_location(
        "render_k8s_base", ROOT / "deploy" / "render_k8s_base.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kustomize_build() -> Callable[[Path], list[dict[str, Any]]]:
    """`kustomize build DIR`, through kubectl's built-in kustomize or a kustomize binary."""
    if kubectl := shutil.which("kubectl"):
        command = [kubectl, "kustomize"]
    elif kustomize := shutil.which("kustomize"):
        command = [kustomize, "build"]
    else:
        pytest.skip("neither kubectl nor kustomize is on PATH to build the overlays")

    def _build(directory: Path) -> list[dict[str, Any]]:
        result = subprocess.run(
            [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return _build
