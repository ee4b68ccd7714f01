"""The Helm chart, rendered and linted offline by Helm's own engine (helm-python-sdk binds Helm v4's Go
SDK; no helm binary, no cluster), every manifest validated with kubernetes-validate."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from service.runtime.config import ConsumerSettings
from tests.observability import CHART_DIR, DASHBOARD_FILE, RULES_FILE

RELEASE = "vitalstream"
NAMESPACE = "telemetry"
KUBE_VERSION = "1.31.0"  # validated against this API version; the chart needs >= 1.25
UID = 10001
ROLE_ARN = "arn:aws:iam::123456789012:role/vitalstream-consumer"
CHART_OWNED = {"metrics_host", "metrics_port", "worker_id"}
CRD_API_VERSIONS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
}
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

BASE_KINDS = ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]
CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "defaults": ({}, [*BASE_KINDS, "PodDisruptionBudget"]),
    "monitoring": (
        {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        [*BASE_KINDS, "PodDisruptionBudget", "PrometheusRule", "ServiceMonitor"],
    ),
    "keda": ({"keda": {"enabled": True}}, [*BASE_KINDS, "ScaledObject", "TriggerAuthentication"]),
    "keda-min-2-role": (
        {"keda": {"enabled": True, "minReplicaCount": 2, "authentication": {"roleArn": ROLE_ARN}}},
        [*BASE_KINDS, "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication"],
    ),
    "hpa": ({"hpa": {"enabled": True}}, [*BASE_KINDS, "HorizontalPodAutoscaler"]),
    "irsa": ({"serviceAccount": {"roleArn": ROLE_ARN}}, [*BASE_KINDS, "PodDisruptionBudget"]),
    "one-replica": ({"replicas": 1}, BASE_KINDS),
    "no-dashboard": (
        {"grafanaDashboard": {"enabled": False}},
        ["Deployment", "Pod", "PodDisruptionBudget", "Service", "ServiceAccount"],
    ),
    "settings-and-passthrough": (
        {
            "config": {
                "stream_name": "wearables",
                "failover_ms": 30000,
                "enhanced_fan_out": True,
                "dead_letter_target": "s3",
                "endpoint_url": None,
                "detection": {"tachycardia_bpm": 125, "spike_sigma": 4.5},
            },
            "extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
            "nodeSelector": {"kubernetes.io/arch": "arm64"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "stream", "effect": "NoSchedule"}
            ],
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "vitalstream"}},
                }
            ],
            "affinity": {"nodeAffinity": {}},
            "metrics": {"port": 9500},
        },
        [*BASE_KINDS, "PodDisruptionBudget"],
    ),
}


Case = tuple[dict[str, Any], list[str], list[dict[str, Any]]]  # values, expected kinds, manifests


def render(values: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Template path -> the manifests it rendered (NOTES.txt left out)."""
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {
        path: [doc for doc in yaml.safe_load_all(text) if doc]
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
    }


def manifests(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for docs in render(values).values() for doc in docs]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def consumer_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]
    return template


def settings_env_names() -> set[str]:
    """Every environment variable service.runtime.config.ConsumerSettings reads."""
    names = {f"VITALSTREAM_{name.upper()}" for name in ConsumerSettings.model_fields if name != "detection"}
    detection = ConsumerSettings.model_fields["detection"].annotation
    assert dataclasses.is_dataclass(detection)
    names |= {f"VITALSTREAM_DETECTION__{field.name.upper()}" for field in dataclasses.fields(detection)}
    return names


def subset(small: dict[str, str], big: dict[str, str]) -> bool:
    return all(big.get(key) == value for key, value in small.items())


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    values, kinds = CASES[request.param]
    return values, kinds, manifests(values)


# --- every case -------------------------------------------------------------------------------------


def test_renders_the_expected_kinds(case: Case) -> None:
    _, kinds, docs = case
    assert sorted(doc["kind"] for doc in docs) == sorted(kinds)


def test_lint_passes_strict(case: Case) -> None:
    values, _, _ = case
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 = warning, 3 = error
    assert problems == []


def test_manifests_validate(case: Case) -> None:
    _, _, docs = case
    for doc in docs:
        name = doc["metadata"]["name"]
        assert DNS_1123.match(name), name
        assert len(name) <= 63, name
        assert doc["metadata"]["namespace"] == NAMESPACE
        if doc["kind"] in CRD_API_VERSIONS:  # not in kubernetes-validate's schemas: the envelope only
            assert doc["apiVersion"] == CRD_API_VERSIONS[doc["kind"]]
            assert isinstance(doc["spec"], dict)
            assert doc["spec"]
            assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_security_defaults(case: Case) -> None:
    _, _, docs = case
    pod = consumer_pod(docs)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["runAsGroup"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == UID
    assert context["runAsGroup"] == UID
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert pod["terminationGracePeriodSeconds"] >= 30


def test_environment_is_named_after_settings(case: Case) -> None:
    values, _, docs = case
    (container,) = consumer_pod(docs)["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    extra = {e["name"] for e in values.get("extraEnv", [])}
    chart_env = set(env) - extra
    assert chart_env <= settings_env_names(), sorted(chart_env - settings_env_names())
    assert env["VITALSTREAM_METRICS_HOST"]["value"] == "0.0.0.0"
    (port,) = container["ports"]
    assert port["name"] == "metrics"
    assert env["VITALSTREAM_METRICS_PORT"]["value"] == str(port["containerPort"])
    assert env["VITALSTREAM_WORKER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["args"] == ["consume"]


def test_probes_hit_health_endpoints_on_the_metrics_port(
    case: Case,
) -> None:
    _, _, docs = case
    (container,) = consumer_pod(docs)["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] in (ports["metrics"], "metrics")


def test_selectors_connect_service_deployment_and_budget(
    case: Case,
) -> None:
    _, _, docs = case
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert subset(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = one(docs, "Service")
    assert subset(service["spec"]["selector"], pod_labels)
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    for budget in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
        assert subset(budget["spec"]["selector"]["matchLabels"], pod_labels)
        assert budget["spec"]["maxUnavailable"] == 1
    test_pod = one(docs, "Pod")
    assert not subset(service["spec"]["selector"], test_pod["metadata"]["labels"]), (
        "Service would route to the test pod"
    )


def test_service_monitor_selects_the_service(case: Case) -> None:
    _, _, docs = case
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        service = one(docs, "Service")
        assert subset(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
        port_names = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"


def test_helm_test_pod_greps_metrics_from_the_service(
    case: Case,
) -> None:
    _, _, docs = case
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = one(docs, "Service")
    script = " ".join(pod["spec"]["containers"][0]["command"])
    url = (
        f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}/metrics"
    )
    assert url in script
    assert "vitalstream_records_total" in script
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


# --- particular cases -------------------------------------------------------------------------------


def test_replicas_default_two_and_left_to_an_autoscaler() -> None:
    assert one(manifests({}), "Deployment")["spec"]["replicas"] == 2
    for autoscaler in ("keda", "hpa"):
        assert "replicas" not in one(manifests({autoscaler: {"enabled": True}}), "Deployment")["spec"]


def test_keda_scales_the_deployment_on_kinesis_shards() -> None:
    docs = manifests({"keda": {"enabled": True, "maxReplicaCount": 8, "shardCount": 3}})
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    assert scaled["spec"]["maxReplicaCount"] == 8
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "aws-kinesis-stream"
    assert trigger["metadata"] == {
        "streamName": "vitalstream-telemetry",
        "awsRegion": "us-east-1",
        "shardCount": "3",
        "activationShardCount": "0",
    }
    auth = one(docs, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}


def test_keda_role_arn_replaces_identity_owner() -> None:
    auth = one(
        manifests({"keda": {"enabled": True, "authentication": {"roleArn": ROLE_ARN}}}),
        "TriggerAuthentication",
    )
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "roleArn": ROLE_ARN}


def test_hpa_scales_the_deployment() -> None:
    docs = manifests({"hpa": {"enabled": True, "minReplicas": 2, "maxReplicas": 6}})
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert one(docs, "PodDisruptionBudget")


def test_keda_and_hpa_together_fail_clearly() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"keda.enabled and hpa.enabled are both true"):
        render({"keda": {"enabled": True}, "hpa": {"enabled": True}})


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"replica": 3}, "replica"),
        ({"serviceMonitors": {"enabled": True}}, "serviceMonitors"),
        ({"config": {"stream": "x"}}, "stream"),
        ({"config": {"detection": {"tachycardia": 130}}}, "tachycardia"),
        ({"config": {"metrics_port": 9000}}, "metrics_port"),
        ({"keda": {"enabled": True, "shardcount": 2}}, "shardcount"),
    ],
)
def test_schema_rejects_typos(values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=key):
        render(values)


def test_schema_config_keys_are_the_settings_fields() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    config = schema["properties"]["config"]["properties"]
    settings = set(ConsumerSettings.model_fields) - CHART_OWNED
    assert set(config) == settings, (
        "values.schema.json `config` must list service.runtime.config.ConsumerSettings fields"
    )
    detection = ConsumerSettings.model_fields["detection"].annotation
    assert dataclasses.is_dataclass(detection)
    assert set(config["detection"]["properties"]) == {f.name for f in dataclasses.fields(detection)}
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(chart.values)  # the defaults satisfy the schema


def test_irsa_annotation() -> None:
    account = one(manifests({"serviceAccount": {"roleArn": ROLE_ARN}}), "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    assert "annotations" not in one(manifests({}), "ServiceAccount")["metadata"]
    pod = consumer_pod(manifests({"serviceAccount": {"roleArn": ROLE_ARN}}))
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_rendered_environment_loads_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values, _ = CASES["settings-and-passthrough"]
    (container,) = consumer_pod(manifests(values))["spec"]["containers"]
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for entry in container["env"]:
        if "value" in entry:
            monkeypatch.setenv(entry["name"], entry["value"])
    settings = ConsumerSettings()
    assert settings.stream_name == "wearables"
    assert settings.failover_ms == 30000
    assert settings.enhanced_fan_out is True
    assert settings.dead_letter_target == "s3"
    assert settings.endpoint_url is None
    assert settings.detection.tachycardia_bpm == 125
    assert settings.detection.spike_sigma == 4.5
    assert (settings.metrics_host, settings.metrics_port) == ("0.0.0.0", 9500)
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_STS_REGIONAL_ENDPOINTS"]["value"] == "regional"
    assert "VITALSTREAM_ENDPOINT_URL" not in env


def test_passthrough_scheduling_fields() -> None:
    values, _ = CASES["settings-and-passthrough"]
    pod = consumer_pod(manifests(values))["spec"]
    for key in ("nodeSelector", "tolerations", "topologySpreadConstraints", "affinity"):
        assert pod[key] == values[key]


def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    config_map = one(manifests({}), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (data,) = config_map["data"].values()
    assert json.loads(data) == json.loads(DASHBOARD_FILE.read_text())


def test_prometheus_rule_is_the_rules_file() -> None:
    rule = one(manifests({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
