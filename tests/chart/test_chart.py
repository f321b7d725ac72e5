"""The Helm chart: lint, schema-valid objects, and the platform contract in what it renders."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from concurrent import futures
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ensayo.serverkit.auth import load_keys
from ensayo.serverkit.config import ConfigError, ServerConfig

from .support import (
    CHART_DIR,
    DATABASE_SERVICES,
    MIN_KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    SERVICES,
    Release,
)

pytestmark = pytest.mark.chart

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed"
)
KUBE_VERSIONS = (MIN_KUBE_VERSION, kubernetes_validate.latest_version())

ALL_OFF = {name: {"hpa": {"enabled": False}, "pdb": {"enabled": False}} for name in SERVICES}
SHA_OF_TEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def checksum(release: Release, service: str) -> str:
    annotations = release.deployment(service)["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["checksum/config"])


def secret_text(release: Release, name: str, key: str) -> str:
    return base64.b64decode(release.get("Secret", name)["data"][key]).decode()


class TestLint:
    """`helm lint --strict` through Helm's Go linter."""

    @pytest.mark.parametrize("values_file", [None, "values-prod.yaml"])
    def test_lint_has_no_errors_or_warnings(self, values_file: str | None) -> None:
        """The chart lints clean (only info messages) with default and production values."""
        values = yaml.safe_load((CHART_DIR / values_file).read_text()) if values_file else None
        report = helm.lint(CHART_DIR, values, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []

    def test_chart_metadata(self, chart: Any) -> None:
        """Chart.yaml is apiVersion v2 and deploys appVersion 0.1.0."""
        assert chart.metadata["apiVersion"] == "v2"
        assert chart.metadata["appVersion"] == "0.1.0"
        assert chart.schema is not None


class TestValuesFile:
    """values.yaml documents every key it sets (podinfo's hygiene)."""

    # Kubernetes objects passed through verbatim; their fields are Kubernetes' own.
    VERBATIM = frozenset({"resources", "pod", "container", "startup", "liveness", "readiness"})

    def test_every_key_has_a_comment(self) -> None:
        """A comment line sits right above each key outside verbatim Kubernetes blocks."""
        undocumented: list[str] = []
        path: list[tuple[int, str]] = []
        previous = ""
        for line in (CHART_DIR / "values.yaml").read_text().splitlines():
            stripped = line.strip()
            match = re.match(r"^( *)([A-Za-z][\w-]*):", line)
            if match and not stripped.startswith("#"):
                indent = len(match.group(1))
                path = [(i, k) for i, k in path if i < indent]
                verbatim = any(key in self.VERBATIM for _, key in path)
                if not verbatim and not previous.startswith("#"):
                    undocumented.append(".".join([k for _, k in path] + [match.group(2)]))
                path.append((indent, match.group(2)))
            previous = stripped
        assert undocumented == []


class TestKubernetesSchemas:
    """Every rendered object validates strictly against the Kubernetes OpenAPI schemas."""

    @pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
    @pytest.mark.parametrize("which", ["default", "prod"])
    def test_every_object_is_valid(
        self, which: str, kube_version: str, default_release: Release, prod_release: Release
    ) -> None:
        """No unknown field, wrong type or missing required field in any object."""
        release = default_release if which == "default" else prod_release
        without_schema = set()
        for manifest in release.manifests:
            try:
                kubernetes_validate.validate(manifest.obj, kube_version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                without_schema.add(manifest.kind)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{manifest.template} {manifest.kind}/{manifest.name}: {error}")
        # Only the Prometheus Operator CRD has no built-in schema; TestServiceMonitor checks it.
        assert without_schema <= {"ServiceMonitor"}

    def test_validation_is_strict(self, default_release: Release) -> None:
        """A misspelt field fails validation, so the test above can fail."""
        deployment = default_release.deployment("assignment")
        broken = yaml.safe_load(yaml.safe_dump(deployment))
        broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBE_VERSIONS[-1], strict=True)

    def test_names_are_unique_per_kind(self, default_release: Release) -> None:
        """No two objects of one kind share a name."""
        pairs = [(m.kind, m.name) for m in default_release.manifests]
        assert len(pairs) == len(set(pairs))


class TestValuesSchema:
    """values.schema.json and the template guards reject values that would break a release."""

    @pytest.mark.parametrize(
        "values",
        [
            {"catalog": {"hpa": {"enabled": "yes"}}},
            {"catlog": {"enabled": True}},
            {"apiKeys": {"entries": [{"name": "a", "sha256": "plain-key", "scopes": ["read"]}]}},
            {"apiKeys": {"entries": [{"name": "a", "sha256": SHA_OF_TEST, "scopes": ["root"]}]}},
            {"config": {"logFormat": "xml"}},
            {"image": {"pullPolicy": "Sometimes"}},
        ],
    )
    def test_schema_rejects(self, chart: Any, values: dict[str, Any]) -> None:
        """A mistyped, unknown or out-of-range value fails before anything renders."""
        with pytest.raises(helm.HelmValuesError):
            chart.render(values=values, name=RELEASE)

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            ({"terminationGracePeriodSeconds": 15}, r"must exceed preStopSleepSeconds \+ config"),
            ({"redis": {"url": ""}}, "set redis.url or redis.existingSecret"),
            ({"database": {"url": ""}}, "set database.url or database.existingSecret"),
        ],
    )
    def test_render_fails_with_a_clear_message(
        self, chart: Any, values: dict[str, Any], message: str
    ) -> None:
        """Values that pass the schema but make no working release fail with a reason."""
        with pytest.raises(helm.HelmRenderError, match=message):
            chart.render(values=values, name=RELEASE)

    def test_database_is_optional_without_catalog_and_analysis(self, render: Any) -> None:
        """Only catalog and analysis need ENSAYO_DATABASE_URL."""
        release = render(
            {
                "database": {"url": ""},
                "catalog": {"enabled": False},
                "analysis": {"enabled": False},
            }
        )
        assert {d["metadata"]["name"] for d in release.of_kind("Deployment")} == {
            f"{RELEASE}-assignment",
            f"{RELEASE}-decisioning",
        }


@pytest.mark.parametrize("service", list(SERVICES))
class TestServerPods:
    """Each service's Deployment and Service, with default values."""

    def test_security_context(self, default_release: Release, service: str) -> None:
        """Non-root UID 1000, read-only root, no capabilities, RuntimeDefault seccomp, /tmp."""
        pod = default_release.deployment(service)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 1000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        context = default_release.container(service)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["runAsNonRoot"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {
            m["mountPath"]: m["name"] for m in default_release.container(service)["volumeMounts"]
        }
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]

    def test_native_grpc_probes(self, default_release: Release, service: str) -> None:
        """Startup, liveness and readiness are native gRPC probes, port set, service unset."""
        grpc_port = SERVICES[service][0]
        container = default_release.container(service)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": grpc_port}
            assert not {"httpGet", "exec", "tcpSocket"} & container[probe].keys()

    def test_ports(self, default_release: Release, service: str) -> None:
        """Container and Service expose the contract's gRPC and metrics ports by name."""
        grpc_port, metrics_port = SERVICES[service]
        container_ports = {
            p["name"]: p["containerPort"] for p in default_release.container(service)["ports"]
        }
        assert container_ports == {"grpc": grpc_port, "metrics": metrics_port}
        svc = default_release.get("Service", f"{RELEASE}-{service}")
        service_ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
        assert service_ports == {"grpc": (grpc_port, "grpc"), "metrics": (metrics_port, "metrics")}

    def test_environment(self, default_release: Release, service: str) -> None:
        """Bind addresses on 0.0.0.0, URLs from the Secret, the rest from the ConfigMap."""
        grpc_port, metrics_port = SERVICES[service]
        prefix = f"ENSAYO_{service.upper()}"
        container = default_release.container(service)
        env = env_of(container)
        assert env[f"{prefix}_ADDR"]["value"] == f"0.0.0.0:{grpc_port}"
        assert env[f"{prefix}_METRICS_ADDR"]["value"] == f"0.0.0.0:{metrics_port}"
        assert env["ENSAYO_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": RELEASE,
            "key": "redis-url",
        }
        if service in DATABASE_SERVICES:
            assert env["ENSAYO_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": RELEASE,
                "key": "database-url",
            }
        else:
            assert "ENSAYO_DATABASE_URL" not in env
        assert container["envFrom"] == [{"configMapRef": {"name": RELEASE}}]
        config = default_release.get("ConfigMap", RELEASE)["data"]
        assert config == {
            "ENSAYO_LOG_LEVEL": "info",
            "ENSAYO_LOG_FORMAT": "json",
            "ENSAYO_SHUTDOWN_GRACE_S": "10",
        }
        # No credential-bearing URL sits in plain text in the pod spec or the ConfigMap.
        assert "redis://" not in yaml.safe_dump(container) + yaml.safe_dump(config)

    def test_command_image_and_resources(self, default_release: Release, service: str) -> None:
        """`ensayo serve SERVICE` from the appVersion image; CPU/memory requests, memory limit."""
        container = default_release.container(service)
        assert container["args"] == [service]
        assert "command" not in container
        assert container["image"] == "ghcr.io/ensayo/ensayo:0.1.0"
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert "memory" in container["resources"]["limits"]

    def test_termination_grace_exceeds_drain(self, default_release: Release, service: str) -> None:
        """A preStop sleep precedes SIGTERM, and Kubernetes waits out sleep plus drain."""
        pod = default_release.deployment(service)["spec"]["template"]["spec"]
        grace = float(default_release.get("ConfigMap", RELEASE)["data"]["ENSAYO_SHUTDOWN_GRACE_S"])
        command = default_release.container(service)["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep"
        assert pod["terminationGracePeriodSeconds"] > float(command[1]) + grace

    def test_selectors_pick_only_this_service(
        self, default_release: Release, service: str
    ) -> None:
        """The Deployment, Service and pod labels agree and include the component."""
        deployment = default_release.deployment(service)
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == service
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        svc = default_release.get("Service", f"{RELEASE}-{service}")
        assert svc["spec"]["selector"] == selector

    def test_hpa_owns_replicas(self, default_release: Release, render: Any, service: str) -> None:
        """With the HPA on the Deployment sets no count; with it off, the values' count."""
        assert "replicas" not in default_release.deployment(service)["spec"]
        release = render({service: {"hpa": {"enabled": False}, "replicas": 5}})
        assert release.deployment(service)["spec"]["replicas"] == 5


class TestConfigChecksum:
    """The checksum/config annotation rolls pods when, and only when, their config changes."""

    def test_present_and_shared(self, default_release: Release) -> None:
        """Every Deployment carries the same SHA-256 of the rendered config."""
        sums = {checksum(default_release, service) for service in SERVICES}
        assert len(sums) == 1
        (value,) = sums
        assert len(value) == 64
        int(value, 16)

    @pytest.mark.parametrize(
        "change",
        [
            {"config": {"logLevel": "debug"}},
            {"redis": {"url": "redis://other:6379/0"}},
            {"database": {"url": "postgresql+psycopg://u:p@other/db"}},
            {"apiKeys": {"entries": [{"name": "a", "sha256": SHA_OF_TEST, "scopes": ["read"]}]}},
        ],
    )
    def test_changes_with_config(
        self, render: Any, default_release: Release, change: dict[str, Any]
    ) -> None:
        """A ConfigMap or Secret change gives a new checksum."""
        assert checksum(render(change), "assignment") != checksum(default_release, "assignment")

    def test_stable_without_config_change(self, render: Any, default_release: Release) -> None:
        """Scaling alone does not restart pods."""
        changed = render({"assignment": {"hpa": {"maxReplicas": 50}}})
        assert checksum(changed, "assignment") == checksum(default_release, "assignment")


class TestSecrets:
    """Connection URLs and API keys come from Secrets, the chart's own or existing ones."""

    def test_default_api_keys_secret_is_mounted(self, default_release: Release) -> None:
        """ENSAYO_API_KEYS_FILE names the file the api-keys Secret volume provides."""
        assert (
            yaml.safe_load(secret_text(default_release, f"{RELEASE}-api-keys", "api-keys.yaml"))
            == []
        )
        for service in SERVICES:
            container = default_release.container(service)
            path = env_of(container)["ENSAYO_API_KEYS_FILE"]["value"]
            mount = next(
                m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")
            )
            assert mount["readOnly"] is True
            pod = default_release.deployment(service)["spec"]["template"]["spec"]
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == f"{RELEASE}-api-keys"
            assert volume["secret"]["items"] == [
                {"key": "api-keys.yaml", "path": path.removeprefix(mount["mountPath"] + "/")}
            ]

    def test_inline_api_keys(self, render: Any) -> None:
        """Inline entries become the YAML list the servers read."""
        entries = [{"name": "web", "sha256": SHA_OF_TEST, "scopes": ["assign", "track"]}]
        release = render({"apiKeys": {"entries": entries}})
        assert (
            yaml.safe_load(secret_text(release, f"{RELEASE}-api-keys", "api-keys.yaml")) == entries
        )
        assert "WARNING: no API keys" not in release.notes

    def test_existing_secrets(self, render: Any) -> None:
        """With existing Secrets the chart renders none and points every reference at them."""
        release = render(
            {
                "redis": {"existingSecret": "conn", "existingSecretKey": "redis"},
                "database": {"existingSecret": "conn", "existingSecretKey": "sql"},
                "apiKeys": {"existingSecret": "keys", "existingSecretKey": "k.yaml"},
            }
        )
        assert release.of_kind("Secret") == []
        for service in SERVICES:
            env = env_of(release.container(service))
            assert env["ENSAYO_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
                "name": "conn",
                "key": "redis",
            }
            if service in DATABASE_SERVICES:
                assert env["ENSAYO_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
                    "name": "conn",
                    "key": "sql",
                }
            pod = release.deployment(service)["spec"]["template"]["spec"]
            (keys,) = [v["secret"] for v in pod["volumes"] if "secret" in v]
            assert keys["secretName"] == "keys"
            assert keys["items"][0]["key"] == "k.yaml"

    def test_url_secret_holds_values(self, default_release: Release) -> None:
        """The chart's Secret carries the configured URLs."""
        assert secret_text(default_release, RELEASE, "redis-url") == "redis://ensayo-redis:6379/0"
        assert secret_text(default_release, RELEASE, "database-url").startswith(
            "postgresql+psycopg://"
        )


class TestDisruptionAndScaling:
    """PDBs and HPAs: on by default, each with an off switch."""

    def test_on_by_default(self, default_release: Release) -> None:
        """One PDB and one HPA per service, aimed at that service's Deployment and pods."""
        for service in SERVICES:
            name = f"{RELEASE}-{service}"
            deployment = default_release.deployment(service)
            pdb = default_release.get("PodDisruptionBudget", name)
            assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
            assert pdb["spec"]["maxUnavailable"] == 1
            hpa = default_release.get("HorizontalPodAutoscaler", name)
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name,
            }
            assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

    def test_flags_turn_them_off(self, render: Any) -> None:
        """hpa.enabled and pdb.enabled false remove them; the Deployments then set replicas."""
        release = render(ALL_OFF)
        assert release.of_kind("PodDisruptionBudget") == []
        assert release.of_kind("HorizontalPodAutoscaler") == []
        assert all(d["spec"]["replicas"] == 2 for d in release.of_kind("Deployment"))

    def test_one_flag_touches_one_service(self, render: Any) -> None:
        """Turning off one service's PDB leaves the others."""
        release = render({"catalog": {"pdb": {"enabled": False}}})
        names = {p["metadata"]["name"] for p in release.of_kind("PodDisruptionBudget")}
        assert names == {f"{RELEASE}-{s}" for s in SERVICES if s != "catalog"}

    def test_disabled_service_renders_nothing(self, render: Any) -> None:
        """enabled false drops the service's every object and its `helm test` target."""
        release = render({"decisioning": {"enabled": False}})
        assert not any(m.name == f"{RELEASE}-decisioning" for m in release.manifests)
        args = release.get("Pod", f"{RELEASE}-grpc-health")["spec"]["containers"][0]["args"]
        assert not any("decisioning" in target for target in args)
        assert len(args) == 3


class TestServiceMonitor:
    """The Prometheus Operator ServiceMonitor renders only when enabled."""

    def test_off_by_default(self, default_release: Release) -> None:
        """No ServiceMonitor (and no CRD dependency) with default values."""
        assert default_release.of_kind("ServiceMonitor") == []

    def test_scrapes_every_service(self, render: Any) -> None:
        """Enabled, it selects every Service and scrapes their `metrics` port at /metrics."""
        release = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
        (monitor,) = release.of_kind("ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prom"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == "metrics"
        assert endpoint["path"] == "/metrics"
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = release.of_kind("Service")
        assert len(services) == len(SERVICES)
        for svc in services:
            assert selector.items() <= svc["metadata"]["labels"].items()
            assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}


class TestMigrationJob:
    """The optional `ensayo migrate` hook."""

    def test_off_by_default(self, default_release: Release) -> None:
        """No Job with default values: catalog migrates at start."""
        assert default_release.of_kind("Job") == []

    def test_pre_install_and_upgrade_hook(self, render: Any) -> None:
        """Enabled, a hook Job runs `ensayo migrate` with the URL from a hook-time Secret."""
        release = render({"migrations": {"job": {"enabled": True}}})
        job = release.get("Job", f"{RELEASE}-migrate")
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["ensayo", "migrate"]
        ref = env_of(container)["ENSAYO_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        hook_secret = release.get("Secret", ref["name"])
        assert "helm.sh/hook" in hook_secret["metadata"]["annotations"]
        assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            job["metadata"]["annotations"]["helm.sh/hook-weight"]
        )
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


class TestHelmTestPod:
    """templates/tests/grpc-health.yaml: `helm test` asks each service's health over gRPC."""

    def test_targets_every_service(self, default_release: Release) -> None:
        """A test-hook pod checks each Service's DNS name on its gRPC port."""
        pod = default_release.get("Pod", f"{RELEASE}-grpc-health")
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["restartPolicy"] == "Never"
        container = pod["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["args"] == [
            f"{RELEASE}-{name}.{NAMESPACE}.svc:{grpc_port}"
            for name, (grpc_port, _) in SERVICES.items()
        ]

    @pytest.fixture
    def health_server(self) -> Any:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        yield servicer, f"127.0.0.1:{port}"
        server.stop(None)

    @pytest.mark.parametrize(
        ("status", "exit_code"),
        [
            (health_pb2.HealthCheckResponse.SERVING, 0),
            (health_pb2.HealthCheckResponse.NOT_SERVING, 1),
        ],
    )
    def test_script_against_a_real_health_server(
        self, default_release: Release, health_server: Any, status: int, exit_code: int
    ) -> None:
        """The pod's own script passes on SERVING and fails on NOT_SERVING."""
        servicer, target = health_server
        servicer.set("", status)
        container = default_release.get("Pod", f"{RELEASE}-grpc-health")["spec"]["containers"][0]
        assert container["command"][:2] == ["python", "-c"]
        result = subprocess.run(
            [sys.executable, "-c", container["command"][2], target],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == exit_code, result.stderr
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        assert result.stdout.strip() == f"{target} {name}"


class TestProductionValues:
    """values-prod.yaml renders the production shape it documents."""

    def test_credentials_from_existing_secrets(self, prod_release: Release) -> None:
        """The chart stores no URL and no API key of its own in production."""
        assert prod_release.of_kind("Secret") == []
        env = env_of(prod_release.container("catalog"))
        assert (
            env["ENSAYO_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "ensayo-connections"
        )

    def test_monitoring_and_scaling(self, prod_release: Release) -> None:
        """ServiceMonitor on, catalog at a fixed count without HPA, the others autoscaled."""
        assert len(prod_release.of_kind("ServiceMonitor")) == 1
        assert prod_release.deployment("catalog")["spec"]["replicas"] == 3
        hpas = {h["metadata"]["name"] for h in prod_release.of_kind("HorizontalPodAutoscaler")}
        assert hpas == {f"{RELEASE}-{s}" for s in SERVICES if s != "catalog"}
        assert len(prod_release.of_kind("PodDisruptionBudget")) == len(SERVICES)

    def test_grace_and_headless(self, prod_release: Release) -> None:
        """Longer drain with a longer termination grace; headless Services for client balancing."""
        grace = float(prod_release.get("ConfigMap", RELEASE)["data"]["ENSAYO_SHUTDOWN_GRACE_S"])
        for service in SERVICES:
            pod = prod_release.deployment(service)["spec"]["template"]["spec"]
            sleep = prod_release.container(service)["lifecycle"]["preStop"]["exec"]["command"][1]
            assert pod["terminationGracePeriodSeconds"] > float(sleep) + grace
            assert (
                prod_release.get("Service", f"{RELEASE}-{service}")["spec"]["clusterIP"] == "None"
            )


class TestNotes:
    """NOTES.txt tells the operator where each service listens and what is missing."""

    def test_lists_addresses_and_warns(self, default_release: Release) -> None:
        """Each service's in-cluster address appears, and empty API keys are flagged."""
        for name, (grpc_port, _) in SERVICES.items():
            assert f"{RELEASE}-{name}.{NAMESPACE}.svc:{grpc_port}" in default_release.notes
        assert "WARNING: no API keys" in default_release.notes


class TestAgainstServerConfig:
    """What the chart renders is accepted by the servers' own config and keys-file parsers."""

    @pytest.mark.parametrize("service", list(SERVICES))
    def test_rendered_env_parses(self, render: Any, tmp_path: Any, service: str) -> None:
        """ServerConfig.from_env takes the pod's environment: addresses, URLs, keys file."""
        entries = [{"name": "web", "sha256": SHA_OF_TEST, "scopes": ["assign", "read"]}]
        release = render({"apiKeys": {"entries": entries}})
        container = release.container(service)
        env = dict(release.get("ConfigMap", RELEASE)["data"])
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = secret_text(release, ref["name"], ref["key"])
        keys_file = tmp_path / "api-keys.yaml"
        keys_file.write_text(secret_text(release, f"{RELEASE}-api-keys", "api-keys.yaml"))
        env["ENSAYO_API_KEYS_FILE"] = str(keys_file)

        config = ServerConfig.from_env(service, env)
        assert config.addr == f"0.0.0.0:{SERVICES[service][0]}"
        assert config.metrics_addr == f"0.0.0.0:{SERVICES[service][1]}"
        assert config.log_format == "json"
        assert config.redis_url == "redis://ensayo-redis:6379/0"
        (key,) = load_keys(keys_file)
        assert key.scopes == frozenset({"assign", "read"})

    def test_without_keys_file_a_public_bind_is_refused(self, default_release: Release) -> None:
        """The reason the chart always mounts a keys file: 0.0.0.0 without one is an error."""
        env = {
            item["name"]: item["value"]
            for item in default_release.container("catalog")["env"]
            if "value" in item and item["name"] != "ENSAYO_API_KEYS_FILE"
        }
        with pytest.raises(ConfigError, match="non-loopback"):
            ServerConfig.from_env("catalog", env)
