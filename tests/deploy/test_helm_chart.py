"""The Helm chart renders, lints and validates against the Kubernetes schemas.

Rendering and linting go through Helm v4 itself (embedded by ``helm-python-sdk``); every
rendered manifest of a built-in kind is validated against the Kubernetes JSON schemas that
``kubernetes-validate`` ships.  Both the chart's defaults and the production-like example are
checked, as are the promises the chart makes: who may reach which port, what a GPU worker
asks for, that migrations run before an upgrade and that the settings it passes are valid.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from app.core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "radscribe"
PRODUCTION_VALUES = REPO / "deploy" / "helm" / "values-production.example.yaml"
RELEASE = "rs"
NAMESPACE = "radiology"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest with schemas.
KUBE_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CRD_GROUPS = ("monitoring.coreos.com/",)
LINT_WARNING = 2
POD_OWNERS = ("Deployment", "Job")

Manifest = dict[str, Any]


def production_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(PRODUCTION_VALUES.read_text())
    return values


VALUE_SETS = {"defaults": None, "production": production_values()}


def render(values: dict[str, Any] | None) -> list[Manifest]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(VALUE_SETS[request.param])


@pytest.fixture(scope="module")
def defaults() -> list[Manifest]:
    return render(None)


@pytest.fixture(scope="module")
def production() -> list[Manifest]:
    return render(production_values())


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == f"{RELEASE}-{name}")
    ]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (manifest,) = find(manifests, kind, f"radscribe-{name}")
    return manifest


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, Manifest]]:
    return [
        (m["metadata"]["name"], m["spec"]["template"]["spec"])
        for m in manifests
        if m["kind"] in POD_OWNERS
    ]


def container(manifests: list[Manifest], name: str) -> Manifest:
    spec = one(manifests, "Deployment", name)["spec"]["template"]["spec"]
    (only,) = spec["containers"]
    return dict(only)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_reports_no_warnings_or_errors(value_set: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= LINT_WARNING]
    assert report["errors"] == [] and problems == [], report


def test_lint_catches_a_bad_value() -> None:
    report = helm.lint(CHART, {"web": {"replicas": "two"}}, strict=True)
    assert any("/web/replicas" in error for error in report["errors"]), report


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_matches_the_kubernetes_schema(
    rendered: list[Manifest], kube_version: str
) -> None:
    checked = 0
    for manifest in rendered:
        if manifest["apiVersion"].startswith(CRD_GROUPS):
            continue  # custom resources: checked in test_add_on_objects_*
        kubernetes_validate.validate(manifest, kube_version, strict=True)
        checked += 1
    assert checked >= 10


def test_defaults_need_no_cluster_add_ons(defaults: list[Manifest]) -> None:
    kinds = {m["kind"] for m in defaults}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "HorizontalPodAutoscaler"}
    assert not find(defaults, "ConfigMap", "radscribe-dashboard")


def test_add_on_objects_render_when_switched_on(production: list[Manifest]) -> None:
    (monitor,) = find(production, "ServiceMonitor")
    ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    assert ports == {"http", "metrics"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    monitored = [
        s
        for s in find(production, "Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    served = {p["name"] for s in monitored for p in s["spec"]["ports"]}
    assert served == ports, "every endpoint of the ServiceMonitor has a Service port"

    (rule,) = find(production, "PrometheusRule")
    rules_file = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == rules_file
    assert rule["spec"]["groups"], "the PrometheusRule carries the alert rules"

    dashboard = one(production, "ConfigMap", "dashboard")
    assert dashboard["data"]["radscribe.json"].strip() == (
        (CHART / "files" / "grafana-dashboard.json").read_text().strip()
    )


def test_every_process_runs_a_real_radscribe_command(
    rendered: list[Manifest], check_radscribe_command: Callable[[Sequence[str]], str | None]
) -> None:
    errors = [
        f"{name}: {error}"
        for name, spec in pod_specs(rendered)
        for c in spec["containers"]
        if (error := check_radscribe_command(c["args"]))
    ]
    assert errors == []


def test_pods_run_as_non_root_with_a_read_only_root(rendered: list[Manifest]) -> None:
    for name, spec in pod_specs(rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert {"/tmp", "/var/lib/radscribe"} <= mounts, f"{name} needs writable paths"


def test_every_long_running_process_has_probes(rendered: list[Manifest]) -> None:
    for deployment in find(rendered, "Deployment"):
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "livenessProbe" in c and "readinessProbe" in c, deployment["metadata"]["name"]
        named = {p["name"] for p in c["ports"]}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in c:
                action = c[probe].get("httpGet") or c[probe].get("tcpSocket")
                assert action["port"] in named, f"{deployment['metadata']['name']} {probe}"


def test_web_is_ready_only_with_its_database(defaults: list[Manifest]) -> None:
    web = container(defaults, "web")
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/metrics"


def test_settings_the_chart_passes_are_valid(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = one(rendered, "ConfigMap", "config")["data"]
    fields = set(Settings.model_fields)
    for name in config:
        assert name.startswith("RADSCRIBE_"), name
        assert name.removeprefix("RADSCRIBE_").lower() in fields, f"{name} is not a setting"
    secret_env = {e["name"] for e in container(rendered, "dicom")["env"]}
    assert secret_env == {
        "RADSCRIBE_SECRET_KEY",
        "RADSCRIBE_DATABASE_URL",
        "RADSCRIBE_CELERY_BROKER_URL",
    }
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RADSCRIBE_SECRET_KEY", "k" * 48)
    monkeypatch.setenv("RADSCRIBE_DATABASE_URL", "postgresql://radscribe@db/radscribe")
    settings = load_settings()
    assert settings.is_production
    assert str(settings.data_dir) == "/var/lib/radscribe"


def test_the_chart_made_secret_holds_every_key_the_pods_read(defaults: list[Manifest]) -> None:
    secret = one(defaults, "Secret", "secrets")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert len(data["secret-key"]) >= 32
    assert data["database-url"].startswith("postgresql://")
    assert data["broker-url"].startswith("redis://")
    read = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for _, spec in pod_specs(defaults)
        for c in spec["containers"]
        for e in c["env"]
        if "valueFrom" in e
    }
    assert read == set(data)
    # The migration hook reads it, so it must exist first.
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def test_an_existing_secret_replaces_the_chart_made_one(production: list[Manifest]) -> None:
    assert not find(production, "Secret")
    names = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for _, spec in pod_specs(production)
        for c in spec["containers"]
        for e in c["env"]
        if "valueFrom" in e
    }
    assert names == {production_values()["secrets"]["existingSecret"]}


def test_migrations_run_as_a_hook_before_install_and_upgrade(rendered: list[Manifest]) -> None:
    job = one(rendered, "Job", "migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["db", "upgrade"]
    env = {e["name"] for e in c["env"]}
    assert {"RADSCRIBE_DATABASE_URL", "RADSCRIBE_SECRET_KEY", "RADSCRIBE_ENV"} <= env


def test_receivers_web_and_workers_share_one_data_volume(production: list[Manifest]) -> None:
    claims = {}
    for deployment in find(production, "Deployment"):
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            if "persistentVolumeClaim" in volume:
                claims[deployment["metadata"]["name"]] = volume["persistentVolumeClaim"]
    assert set(claims) == {f"{RELEASE}-radscribe-{n}" for n in ("web", "dicom", "worker-gpu")}
    assert len({c["claimName"] for c in claims.values()}) == 1
    pvc = one(production, "PersistentVolumeClaim", "data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_gpu_worker_requests_one_gpu_on_the_cuda_image(production: list[Manifest]) -> None:
    worker = container(production, "worker-gpu")
    assert worker["resources"] == {
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1},
        "requests": {"cpu": "2", "memory": "8Gi"},
    }
    assert worker["image"].endswith(":0.1.0-cuda")
    assert worker["args"] == ["worker"]
    spec = one(production, "Deployment", "worker-gpu")["spec"]
    assert "replicas" not in spec, "the autoscaler owns the replica count"
    tolerations = spec["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_workers_scale_on_queue_depth(production: list[Manifest]) -> None:
    (hpa,) = find(production, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-radscribe-worker-gpu"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "radscribe_job_queue_depth"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "2"}


def test_dicom_and_hl7_ports_are_exposed_to_the_hospital_network(
    production: list[Manifest],
) -> None:
    dicom = one(production, "Service", "dicom")
    assert dicom["spec"]["type"] == "LoadBalancer"
    assert dicom["spec"]["externalTrafficPolicy"] == "Local", "keeps the PACS source address"
    assert [(p["port"], p["targetPort"]) for p in dicom["spec"]["ports"]] == [(11112, "dicom")]
    hl7 = one(production, "Service", "hl7")
    assert [(p["port"], p["targetPort"]) for p in hl7["spec"]["ports"]] == [(2575, "hl7")]


def admitted(policy: Manifest, port: str) -> list[Any]:
    """The peers a NetworkPolicy admits to a port; ``["anyone"]`` for a rule without ``from``."""
    peers: list[Any] = []
    for rule in policy["spec"].get("ingress") or []:
        if any(p["port"] == port for p in rule.get("ports", [])):
            peers.extend(rule.get("from") or ["anyone"])
    return peers


def test_only_the_pacs_reaches_dicom_and_only_the_emr_reaches_hl7(
    production: list[Manifest],
) -> None:
    values = production_values()["networkPolicy"]
    assert admitted(one(production, "NetworkPolicy", "dicom"), "dicom") == values["pacsPeers"]
    assert admitted(one(production, "NetworkPolicy", "hl7"), "hl7") == values["emrPeers"]
    for policy in find(production, "NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress") or []:
            assert rule.get("from"), f"{policy['metadata']['name']} admits anyone"


def test_by_default_no_one_reaches_dicom_or_hl7(defaults: list[Manifest]) -> None:
    assert admitted(one(defaults, "NetworkPolicy", "dicom"), "dicom") == []
    assert admitted(one(defaults, "NetworkPolicy", "hl7"), "hl7") == []
    policed = {p["metadata"]["name"] for p in find(defaults, "NetworkPolicy")}
    assert policed == {d["metadata"]["name"] for d in find(defaults, "Deployment")}


def test_every_process_without_a_web_server_exposes_its_metrics_port(
    defaults: list[Manifest],
) -> None:
    for name in ("dicom", "hl7"):
        ports = {p["name"] for p in container(defaults, name).get("ports", [])}
        assert "metrics" in ports, name
        deployment = one(defaults, "Deployment", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels.get("radscribe.io/metrics-port") == "true", name


def test_load_adaptive_precision_is_off_by_default_and_set_on_the_gpu_worker_only(
    defaults: list[Manifest], production: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    def plain_env(c: Manifest) -> dict[str, str]:
        return {e["name"]: e["value"] for e in c["env"] if "value" in e}

    assert not any(
        name.startswith("RADSCRIBE_LOAD_ADAPTIVE")
        for _, spec in pod_specs(defaults)
        for c in spec["containers"]
        for name in plain_env(c)
    )
    worker = plain_env(container(production, "worker-gpu"))
    wanted = production_values()["workers"]["gpu"]["loadAdaptivePrecision"]
    assert worker["RADSCRIBE_LOAD_ADAPTIVE_PRECISION"] == "true"
    assert worker["RADSCRIBE_LOAD_ADAPTIVE_EVALUATION"] == wanted["evaluation"]
    assert worker["RADSCRIBE_LOAD_ADAPTIVE_HOLD_SECONDS"] == str(wanted["holdSeconds"])
    for name in ("web", "dicom", "hl7"):
        assert not plain_env(container(production, name))
    # The worker's settings, ConfigMap and its own variables together, are valid.
    for name, value in {**one(production, "ConfigMap", "config")["data"], **worker}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RADSCRIBE_SECRET_KEY", "k" * 48)
    settings = load_settings()
    assert settings.load_adaptive_precision
    assert (settings.load_adaptive_up_percent, settings.load_adaptive_down_percent) == (85, 60)
    assert settings.load_adaptive_light_precision == "int8"


def test_worker_concurrency_becomes_the_worker_argument(
    check_radscribe_command: Callable[[Sequence[str]], str | None],
) -> None:
    rendered = render({"workers": {"cpu": {"concurrency": 3}}})
    args = container(rendered, "worker")["args"]
    assert args == ["worker", "--concurrency", "3"]
    assert check_radscribe_command(args) is None
