"""deploy/ecs: the Dockerfile (hadolint + what the runtime needs) and the task definition (registered
through botocore against moto, linted, and its environment checked against connector.config.ENV_VARS)."""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from connector.config import ENV_VARS, REQUIRED_ENV_VARS, read_by_libraries
from tests.deploy.deploy_paths import DOCKERFILE, ECS_TEMPLATE, TASK_DEFINITION, load_template

pytestmark = pytest.mark.timeout(300)

HADOLINT = Path(sysconfig.get_path("scripts")) / "hadolint"


def _hadolint(dockerfile: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(HADOLINT), "--no-color", "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout.strip().startswith("["), f"hadolint did not run: {proc.stderr}"
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return findings


def test_hadolint_has_no_findings() -> None:
    findings = _hadolint(DOCKERFILE)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nRUN cd /tmp && ls\n", encoding="utf-8")
    codes = {f["code"] for f in _hadolint(bad)}
    assert {"DL3007", "DL3013"} <= codes, codes


def test_dockerfile_is_multi_stage_non_root_and_read_only_ready() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE)
    assert len(stages) == 2 and stages[0][1] == "builder", stages
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, flags=re.MULTILINE)
    final = text.split("\nFROM ${PYTHON_IMAGE}\n", 1)[1]
    assert "pip wheel" not in final and "apt-get" not in final, "no build tools in the final stage"
    assert "COPY --from=builder /opt/connector /opt/connector" in final
    assert re.search(r"^USER 10001:10001$", final, flags=re.MULTILINE), "numeric non-root user"
    assert "PYTHONDONTWRITEBYTECODE=1" in final
    assert 'ENTRYPOINT ["connector"]' in final and 'CMD ["run"]' in final
    assert re.search(r"HEALTHCHECK .*\n\s+CMD \[\"python\".*/healthz", final), "python-based health check"


def _check_env_names(container: dict[str, Any], where: str) -> dict[str, str]:
    env = {e["name"]: e.get("value") for e in container.get("environment", [])}
    secrets = {s["name"] for s in container.get("secrets", [])}
    unknown = {n for n in set(env) | secrets if not read_by_libraries(n)} - set(ENV_VARS)
    assert not unknown, f"{where}: {sorted(unknown)} not read by `connector run` (connector.config.ENV_VARS)"
    assert set(REQUIRED_ENV_VARS) <= set(env), f"{where}: missing {set(REQUIRED_ENV_VARS) - set(env)}"
    assert "CONNECTOR_TOKEN" in secrets and "CONNECTOR_TOKEN" not in env, f"{where}: token must be an ECS secret"
    assert env["CONNECTOR_HEALTH_ADDR"].startswith("0.0.0.0:"), f"{where}: health port must listen on 0.0.0.0"
    return {k: v for k, v in env.items() if isinstance(v, str)}


def lint_connector_container(container: dict[str, Any], where: str) -> None:
    assert container["readonlyRootFilesystem"] is True, f"{where}: readonlyRootFilesystem"
    assert container["user"].split(":")[0].isdigit() and int(container["user"].split(":")[0]) > 0, where
    assert not container.get("privileged"), where
    health = " ".join(container["healthCheck"]["command"])
    assert health.startswith("CMD python -c") and "/healthz" in health, f"{where}: health check"
    env = _check_env_names(container, where)
    assert float(env["CONNECTOR_DRAIN_GRACE_SECONDS"]) < container["stopTimeout"] <= 120, f"{where}: stopTimeout"
    assert {m["containerPath"] for m in container["mountPoints"]} >= {"/tmp"}, f"{where}: writable /tmp"
    assert container["logConfiguration"]["logDriver"] == "awslogs", where


def _camel(value: Any) -> Any:
    """CloudFormation's PascalCase container definition, in the API's camelCase."""
    if isinstance(value, dict):
        return {(k[0].lower() + k[1:]): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _template_containers() -> dict[str, dict[str, Any]]:
    props = load_template(ECS_TEMPLATE)["Resources"]["TaskDefinition"]["Properties"]
    containers = {}
    for item in props["ContainerDefinitions"]:
        if "Fn::If" in item:
            item = item["Fn::If"][1]
        container = _camel(item)
        for key in ("environment", "secrets"):
            # A conditional entry (`!If [HasGuardrails, {...}, !Ref AWS::NoValue]`): take the "present" branch.
            container[key] = [e["fn::If"][1] if "fn::If" in e else e for e in container.get(key, [])]
        containers[container["name"]] = container
    return containers


def _task_definition() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TASK_DEFINITION.read_text(encoding="utf-8"))
    return data


def test_task_definition_registers_through_botocore(aws: Any) -> None:
    ecs = aws("ecs")
    registered = ecs.register_task_definition(**_task_definition())["taskDefinition"]
    described = ecs.describe_task_definition(taskDefinition=registered["taskDefinitionArn"])["taskDefinition"]
    assert described["family"] == "access-connector"
    assert described["requiresCompatibilities"] == ["FARGATE"] and described["networkMode"] == "awsvpc"
    connector = {c["name"]: c for c in described["containerDefinitions"]}["connector"]
    lint_connector_container(connector, "registered task definition")


def test_task_definition_is_linted() -> None:
    task = _task_definition()
    assert task["executionRoleArn"] != task["taskRoleArn"]
    containers = {c["name"]: c for c in task["containerDefinitions"]}
    lint_connector_container(containers["connector"], "task-definition.json")
    init = containers["guardrails-init"]
    assert init["essential"] is False and init["readonlyRootFilesystem"] is True and init["user"] == "10001"
    assert containers["connector"]["dependsOn"] == [{"containerName": "guardrails-init", "condition": "SUCCESS"}]


def test_lint_rejects_a_plain_token_and_a_short_stop_timeout() -> None:
    bad = _task_definition()["containerDefinitions"][1]
    bad = bad | {"environment": [*bad["environment"], {"name": "CONNECTOR_TOKEN", "value": "x"}]}
    with pytest.raises(AssertionError, match="token must be an ECS secret"):
        lint_connector_container(bad, "bad")
    short = _task_definition()["containerDefinitions"][1] | {"stopTimeout": 30}
    with pytest.raises(AssertionError, match="stopTimeout"):
        lint_connector_container(short, "short")
    unknown = _task_definition()["containerDefinitions"][1]
    unknown = unknown | {"environment": [*unknown["environment"], {"name": "CONNECTOR_TYPO", "value": "1"}]}
    with pytest.raises(AssertionError, match="CONNECTOR_TYPO"):
        lint_connector_container(unknown, "unknown")


def test_cloudformation_container_matches_the_task_definition() -> None:
    from_template = _template_containers()
    from_json = {c["name"]: c for c in _task_definition()["containerDefinitions"]}
    assert set(from_template) == set(from_json) == {"connector", "guardrails-init"}
    template_connector = from_template["connector"]
    _check_env_names(template_connector, "connector-ecs.yaml")
    for key in ("readonlyRootFilesystem", "user", "stopTimeout", "healthCheck", "command", "mountPoints"):
        assert template_connector[key] == from_json["connector"][key], key
    # The same variables, but the proxy ones the template sets only when given a proxy (the JSON has no proxy).
    assert {e["name"] for e in template_connector["environment"] if not read_by_libraries(e["name"])} == {
        e["name"] for e in from_json["connector"]["environment"]
    }
    for key in ("entryPoint", "command", "readonlyRootFilesystem", "user", "mountPoints", "essential"):
        assert from_template["guardrails-init"][key] == from_json["guardrails-init"][key], key
