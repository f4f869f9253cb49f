"""Where the deployment artefacts live, and small loaders shared by the deploy tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from cfnlint.decode import cfn_yaml

REPO = Path(__file__).resolve().parents[2]
CFN_DIR = REPO / "cloudformation"
ECS_TEMPLATE = CFN_DIR / "connector-ecs.yaml"
MANAGEMENT_TEMPLATE = CFN_DIR / "management-account-role.yaml"
MEMBER_TEMPLATE = CFN_DIR / "member-account-role.yaml"
TEMPLATES = (ECS_TEMPLATE, MANAGEMENT_TEMPLATE, MEMBER_TEMPLATE)
ECS_DIR = REPO / "deploy" / "ecs"
DOCKERFILE = ECS_DIR / "Dockerfile"
TASK_DEFINITION = ECS_DIR / "task-definition.json"
CHART = REPO / "deploy" / "helm" / "connector"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "acme"
NAMESPACE = "access-connector"


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation template with its short-form intrinsics (!Ref, !Sub...) decoded."""
    data: dict[str, Any] = cfn_yaml.load(str(path))
    return data


def render_chart(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Render the chart with the real Helm engine (helm-python-sdk); returns the Kubernetes objects."""
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    for name, text in sorted(manifests.items()):
        if not name.endswith(".yaml"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def ci_values(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data
