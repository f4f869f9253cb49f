"""The Helm chart, through the real Helm engine (helm-python-sdk): lint and render every ci/ scenario,
validate every object with kubernetes-validate --strict, and check what the chart promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from connector.config import ENV_VARS, REQUIRED_ENV_VARS, read_by_libraries
from connector.jobs.guardrails import load_guardrails
from connector.k8s.permissions import connector_cluster_role
from tests.deploy.deploy_paths import CHART, CI_VALUES, NAMESPACE, ci_values, render_chart

pytestmark = pytest.mark.timeout(300)

KUBE_VERSION = latest_version()  # the newest schema kubernetes-validate ships
SCENARIOS = {p.name.removesuffix("-values.yaml"): p for p in CI_VALUES}


def _kinds(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    return by_kind


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = _kinds(objects)["Deployment"]
    return deployment


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    values = ci_values(SCENARIOS[request.param])
    return request.param, values, render_chart(values)


def test_all_ci_scenarios_exist() -> None:
    assert set(SCENARIOS) == {"minimal", "ha", "existing-secret", "irsa", "no-rbac", "proxy"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_chart_lints_clean(name: str) -> None:
    report = helm_python.lint(
        str(CHART), ci_values(SCENARIOS[name]), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_every_rendered_object_validates_strictly(scenario: tuple[str, dict[str, Any], list[Any]]) -> None:
    name, _, objects = scenario
    assert objects, name
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:  # type: ignore[attr-defined]
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")


def test_strict_validation_catches_an_unknown_field() -> None:
    deployment = _deployment(render_chart(ci_values(SCENARIOS["minimal"])))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):  # type: ignore[attr-defined]
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_security_context_probes_and_drain(scenario: tuple[str, dict[str, Any], list[Any]]) -> None:
    name, values, objects = scenario
    pod = _deployment(objects)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 8080, "protocol": "TCP"}]

    env = {e["name"]: e.get("value") for e in container["env"]}
    # The connector's own variables, plus the proxy and botocore ones `network` sets (read by the libraries).
    unknown = {n for n in env if not read_by_libraries(n)} - set(ENV_VARS)
    assert not unknown, f"{name}: {sorted(unknown)} not in connector.config.ENV_VARS"
    assert set(REQUIRED_ENV_VARS) <= set(env)
    assert env["CONNECTOR_HEALTH_ADDR"] == "0.0.0.0:8080"
    assert "CONNECTOR_TOKEN" not in env and env["CONNECTOR_TOKEN_FILE"] == "/var/run/secrets/connector/token"
    assert pod["terminationGracePeriodSeconds"] > float(env["CONNECTOR_DRAIN_GRACE_SECONDS"])

    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["token"]["readOnly"] is True and mounts["tmp"]["mountPath"] == "/tmp"
    assert "emptyDir" in volumes["tmp"]
    expected_secret = values["token"].get("existingSecret") or "acme-connector-token"
    assert volumes["token"]["secret"]["secretName"] == expected_secret
    assert volumes["token"]["secret"]["items"] == [{"key": values["token"].get("key", "token"), "path": "token"}]


def test_pdb_only_with_more_than_one_replica(scenario: tuple[str, dict[str, Any], list[Any]]) -> None:
    name, values, objects = scenario
    pdbs = _kinds(objects).get("PodDisruptionBudget", [])
    replicas = values.get("replicaCount", 1)
    assert _deployment(objects)["spec"]["replicas"] == replicas
    if replicas > 1:
        assert [p["spec"]["minAvailable"] for p in pdbs] == [1], name
    else:
        assert pdbs == [], name


def test_rbac_is_least_privilege_or_absent(scenario: tuple[str, dict[str, Any], list[Any]]) -> None:
    name, values, objects = scenario
    kinds = _kinds(objects)
    pod = _deployment(objects)["spec"]["template"]["spec"]
    rbac = values.get("rbac", {}).get("create", True)
    rbac_kinds = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    if not rbac:
        assert not rbac_kinds & set(kinds), f"{name}: RBAC objects rendered with rbac.create=false"
        assert pod["automountServiceAccountToken"] is False
        return
    assert pod["automountServiceAccountToken"] is True
    (role,) = kinds["ClusterRole"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert not {"escalate", "impersonate", "update", "patch"} & set(rule["verbs"]), rule
        assert "secrets" not in rule["resources"], rule
    bindable = values.get("rbac", {}).get("bindableClusterRoles", ["view", "edit"])
    # One source of truth: the rules the kubernetes integration needs (connector/k8s/permissions.py).
    expected = connector_cluster_role("connector", bindable)["rules"]

    def canonical(rules: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (
                tuple(r["apiGroups"]),
                tuple(sorted(r["resources"])),
                tuple(sorted(r["verbs"])),
                tuple(sorted(r.get("resourceNames", []))),
            )
            for r in rules
        )

    assert canonical(role["rules"]) == canonical(expected)
    writes = [r for r in role["rules"] if {"create", "delete"} & set(r["verbs"])]
    assert [sorted(r["resources"]) for r in writes] == [["clusterrolebindings", "rolebindings"]]
    aws_auth = [r for r in kinds.get("Role", []) if r["metadata"]["name"].endswith("aws-auth")]
    if values.get("rbac", {}).get("awsAuthConfigMap"):
        (aws_auth_role,) = aws_auth
        assert aws_auth_role["metadata"]["namespace"] == "kube-system"
        assert aws_auth_role["rules"] == [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["aws-auth"], "verbs": ["get", "update"]}
        ]
    else:
        assert aws_auth == []


def test_service_account_and_irsa_annotation(scenario: tuple[str, dict[str, Any], list[Any]]) -> None:
    name, values, objects = scenario
    (account,) = _kinds(objects)["ServiceAccount"]
    assert _deployment(objects)["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    annotations = account["metadata"].get("annotations", {})
    expected = values.get("serviceAccount", {}).get("annotations", {})
    assert annotations == expected
    if name == "irsa":
        assert annotations["eks.amazonaws.com/role-arn"] == "arn:aws:iam::123456789012:role/access-connector"


def test_token_secret_created_or_referenced(scenario: tuple[str, dict[str, Any], list[Any]]) -> None:
    name, values, objects = scenario
    secrets = _kinds(objects).get("Secret", [])
    if values["token"].get("existingSecret"):
        assert secrets == [], f"{name}: must not create a Secret when existingSecret is set"
    else:
        (secret,) = secrets
        assert list(secret["data"]) == [values["token"].get("key", "token")]


def test_network_policy_denies_ingress_and_allows_egress(scenario: tuple[str, dict[str, Any], list[Any]]) -> None:
    _, values, objects = scenario
    (policy,) = _kinds(objects)["NetworkPolicy"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    scraper = values.get("networkPolicy", {}).get("metricsScraper", {})
    if scraper.get("enabled"):
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
        assert rule["from"][0]["podSelector"]["matchLabels"] == scraper["podLabels"]
    else:
        assert spec["ingress"] == []
    ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert ports == {53, *values.get("networkPolicy", {}).get("egressPorts", [443])}


def test_guardrails_mounted_from_a_config_map(tmp_path: Path) -> None:
    values = ci_values(SCENARIOS["ha"])
    objects = render_chart(values)
    (config_map,) = _kinds(objects)["ConfigMap"]
    assert config_map["data"]["guardrails.yaml"].strip() == values["guardrails"]["policy"].strip()
    pod = _deployment(objects)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["CONNECTOR_GUARDRAILS_FILE"] == "/etc/connector/guardrails/guardrails.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["guardrails"]["configMap"]["name"] == config_map["metadata"]["name"]
    # The mounted file loads with the connector's own loader.
    policy_file = tmp_path / "guardrails.yaml"
    policy_file.write_text(config_map["data"]["guardrails.yaml"], encoding="utf-8")
    guardrails = load_guardrails(policy_file)
    assert guardrails is not None and guardrails.kubernetes_roles == ("view", "edit")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"connector": {"controlPlaneUrl": "http://plain.example.com"}}, "controlPlaneUrl"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"unexpected": True}, "unexpected"),
        ({"rbac": {"create": True, "bindableClusterRoles": ["cluster-admin"], "awsAuthConfigMap": False}}, "bindable"),
    ],
)
def test_schema_refuses_bad_values(override: dict[str, Any], message: str) -> None:
    values = ci_values(SCENARIOS["minimal"])
    for key, value in override.items():
        values[key] = (values.get(key) or {}) | value if isinstance(value, dict) else value
    with helm_python.Chart.load(str(CHART)) as chart, pytest.raises(helm_python.HelmError, match=message):
        chart.validate_schema(values)


def test_schema_is_strict_at_every_level() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path}: additionalProperties must be false"
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "values")


def test_proxy_and_aws_endpoint_settings_reach_the_container() -> None:
    values = ci_values(SCENARIOS["proxy"])
    pod = _deployment(render_chart(values))["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy.corp.example:3128"
    assert env["NO_PROXY"].startswith("169.254.169.254,169.254.170.2")
    assert env["AWS_ENDPOINT_URL_STS"].startswith("https://vpce-") and env["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    minimal = _deployment(render_chart(ci_values(SCENARIOS["minimal"])))["spec"]["template"]["spec"]
    assert not {"HTTPS_PROXY", "NO_PROXY"} & {e["name"] for e in minimal["containers"][0]["env"]}
    with helm_python.Chart.load(str(CHART)) as chart, pytest.raises(helm_python.HelmError, match="PATH"):
        chart.validate_schema(values | {"network": values["network"] | {"awsEnv": {"PATH": "/tmp"}}})
