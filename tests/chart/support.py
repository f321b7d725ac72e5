"""Shared constants and helpers of the chart tier: paths, the port contract, rendered objects.

`helm-python-sdk` binds libhelm (Helm v4's Go SDK) through ctypes: no helm binary, no cluster.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "ensayo"
K8S_DIR = ROOT / "k8s"
RELEASE = "ensayo"
NAMESPACE = "ensayo-test"

# The platform contract (CONTRACT.md): service -> (gRPC port, metrics port).
SERVICES: dict[str, tuple[int, int]] = {
    "assignment": (50051, 9151),
    "decisioning": (50052, 9152),
    "analysis": (50053, 9153),
    "catalog": (50054, 9154),
}
DATABASE_SERVICES = frozenset({"catalog", "analysis"})

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion); tests also use the newest.
MIN_KUBE_VERSION = "1.27.0"


@dataclass(frozen=True, slots=True)
class Manifest:
    """One rendered object and the template that produced it."""

    template: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def is_hook(self) -> bool:
        return "helm.sh/hook" in self.obj["metadata"].get("annotations", {})


@dataclass(frozen=True, slots=True)
class Release:
    """Everything one `helm template` produced."""

    manifests: tuple[Manifest, ...]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [m.obj for m in self.manifests if m.kind == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [m.obj for m in self.manifests if m.kind == kind and m.name == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def kinds_and_names(self, *, hooks: bool = False) -> set[tuple[str, str]]:
        return {(m.kind, m.name) for m in self.manifests if hooks or not m.is_hook}

    def deployment(self, service: str) -> dict[str, Any]:
        return self.get("Deployment", f"{RELEASE}-{service}")

    def container(self, service: str) -> dict[str, Any]:
        containers = self.deployment(service)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return dict(containers[0])


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge override into a copy of base, as Helm layers values files."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse(rendered: dict[str, str]) -> Release:
    """Split Helm's {template path: text} into objects, keeping NOTES.txt apart."""
    manifests: list[Manifest] = []
    notes = ""
    for path, text in sorted(rendered.items()):
        template = path.split("/templates/", 1)[1]
        if template == "NOTES.txt":
            notes = text
            continue
        manifests.extend(Manifest(template, doc) for doc in yaml.safe_load_all(text) if doc)
    return Release(tuple(manifests), notes)
