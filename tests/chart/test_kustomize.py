"""The kustomize tree: k8s/base mirrors the chart's default render; the overlays patch it."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from .support import K8S_DIR, MIN_KUBE_VERSION, RELEASE, SERVICES, Release

pytestmark = pytest.mark.chart

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed"
)
KUBE_VERSIONS = (MIN_KUBE_VERSION, kubernetes_validate.latest_version())

BASE = K8S_DIR / "base"
OVERLAYS = {name: K8S_DIR / "overlays" / name for name in ("dev", "prod")}
API_KEY_SCOPES = {"assign", "decide", "track", "read", "admin"}


def load_kustomization(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return loaded


def base_objects() -> list[dict[str, Any]]:
    """The base's objects, read with PyYAML from the files its kustomization lists."""
    objects: list[dict[str, Any]] = []
    for resource in load_kustomization(BASE)["resources"]:
        objects.extend(doc for doc in yaml.safe_load_all((BASE / resource).read_text()) if doc)
    return objects


def kinds_and_names(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(obj["kind"], obj["metadata"]["name"]) for obj in objects}


def validate_all(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on {version}: {error}")


def patch_targets(directory: Path) -> set[tuple[str, str]]:
    """(kind, name) of every object an overlay's patches and generators claim to change."""
    kustomization = load_kustomization(directory)
    targets: set[tuple[str, str]] = set()
    for patch in kustomization.get("patches", []):
        if "path" in patch:
            docs = list(yaml.safe_load_all((directory / patch["path"]).read_text()))
        else:
            docs = list(yaml.safe_load_all(patch["patch"]))
        for doc in docs:
            if isinstance(doc, dict) and "kind" in doc:
                targets.add((doc["kind"], doc["metadata"]["name"]))
    for generator, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for entry in kustomization.get(generator, []):
            if entry.get("behavior") in {"merge", "replace"}:
                targets.add((kind, entry["name"]))
    return targets


class TestBase:
    """k8s/base is the chart's default render as plain manifests."""

    def test_up_to_date_with_the_chart(self, base_renderer: ModuleType) -> None:
        """Rerunning deploy/render_k8s_base.py would change nothing."""
        expected = base_renderer.render_base()
        present = {path.name: path.read_text() for path in BASE.glob("*.yaml")}
        stale = sorted(
            name
            for name in expected.keys() | present.keys()
            if expected.get(name) != present.get(name)
        )
        assert stale == [], "run: python deploy/render_k8s_base.py"

    def test_kinds_and_names_equal_the_chart(self, default_release: Release) -> None:
        """The base holds exactly the chart's non-hook objects, by kind and name."""
        assert kinds_and_names(base_objects()) == default_release.kinds_and_names(hooks=False)

    def test_kustomization_lists_every_file(self) -> None:
        """No manifest in base/ is left out of its kustomization."""
        files = sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
        assert sorted(load_kustomization(BASE)["resources"]) == files

    def test_objects_are_valid(self) -> None:
        """Every base object validates strictly against the Kubernetes schemas."""
        validate_all(base_objects())

    def test_no_helm_leftovers(self) -> None:
        """No Helm-only label or annotation survives into the base."""
        text = "\n".join(p.read_text() for p in BASE.glob("*.yaml"))
        assert "helm.sh/" not in re.sub(r"^#.*$", "", text, flags=re.MULTILINE)
        assert "checksum/config" not in text
        for obj in base_objects():
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"


class TestOverlays:
    """k8s/overlays/{dev,prod} patch only what the base has, and build to valid objects."""

    @pytest.mark.parametrize("overlay", list(OVERLAYS))
    def test_patches_name_base_objects(self, overlay: str) -> None:
        """Every patched or merged object exists in the base (a typo would patch nothing)."""
        targets = patch_targets(OVERLAYS[overlay])
        assert targets
        assert targets <= kinds_and_names(base_objects())

    @pytest.mark.parametrize("overlay", list(OVERLAYS))
    def test_builds_to_valid_objects(self, kustomize_build: Any, overlay: str) -> None:
        """`kustomize build` succeeds and every object validates strictly."""
        objects = kustomize_build(OVERLAYS[overlay])
        validate_all(objects)
        namespace = load_kustomization(OVERLAYS[overlay])["namespace"]
        assert {obj["metadata"]["namespace"] for obj in objects} == {namespace}

    def test_dev(self, kustomize_build: Any) -> None:
        """Dev: every base object, one to two replicas, small requests, debug logs, a dev key."""
        objects = kustomize_build(OVERLAYS["dev"])
        assert kinds_and_names(objects) == kinds_and_names(base_objects())
        by_key = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        for service in SERVICES:
            hpa = by_key["HorizontalPodAutoscaler", f"{RELEASE}-{service}"]["spec"]
            assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)
            (container,) = by_key["Deployment", f"{RELEASE}-{service}"]["spec"]["template"][
                "spec"
            ]["containers"]
            assert container["image"] == "ghcr.io/ensayo/ensayo:main"
            assert container["resources"]["requests"]["cpu"] == "50m"
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert by_key["ConfigMap", RELEASE]["data"]["ENSAYO_LOG_LEVEL"] == "debug"
        assert by_key["ConfigMap", RELEASE]["data"]["ENSAYO_LOG_FORMAT"] == "json"
        keys_file = by_key["Secret", f"{RELEASE}-api-keys"]["data"]["api-keys.yaml"]
        (entry,) = yaml.safe_load(base64.b64decode(keys_file))
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        assert set(entry["scopes"]) == API_KEY_SCOPES

    def test_prod(self, kustomize_build: Any) -> None:
        """Prod: pinned tag, larger bounds and requests, no placeholder Secrets."""
        objects = kustomize_build(OVERLAYS["prod"])
        base = kinds_and_names(base_objects())
        assert kinds_and_names(objects) == {key for key in base if key[0] != "Secret"}
        by_key = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        base_by_key = {(o["kind"], o["metadata"]["name"]): o for o in base_objects()}
        for service in SERVICES:
            key = f"{RELEASE}-{service}"
            hpa = by_key["HorizontalPodAutoscaler", key]["spec"]
            base_hpa = base_by_key["HorizontalPodAutoscaler", key]["spec"]
            assert hpa["minReplicas"] >= base_hpa["minReplicas"]
            assert hpa["maxReplicas"] >= base_hpa["maxReplicas"]
            (container,) = by_key["Deployment", key]["spec"]["template"]["spec"]["containers"]
            (base_container,) = base_by_key["Deployment", key]["spec"]["template"]["spec"][
                "containers"
            ]
            assert container["image"] == "ghcr.io/ensayo/ensayo:0.1.0"
            assert container["resources"] != base_container["resources"]
            # Strategic merge keeps everything else of the base container.
            assert container["readinessProbe"]["grpc"]["port"] == SERVICES[service][0]
        assignment = by_key["HorizontalPodAutoscaler", f"{RELEASE}-assignment"]["spec"]
        assert (assignment["minReplicas"], assignment["maxReplicas"]) == (3, 30)
