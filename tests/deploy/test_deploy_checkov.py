"""checkov (offline, in its own venv) on the CloudFormation templates and on the rendered Helm chart of every
ci/ scenario: no failed check; every skip carries its reason inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import run_checkov
from tests.deploy.deploy_paths import CFN_DIR, CI_VALUES, ci_values, render_chart

pytestmark = pytest.mark.timeout(900)  # the first run installs checkov (about 30-90 s on a loaded machine)


def _failures(report: dict[str, Any]) -> str:
    return "\n".join(
        f"{c['check_id']} {c['check_name']}: {c['file_path']} {c.get('resource')}"
        for c in report["results"]["failed_checks"]
    )


def _assert_clean(report: dict[str, Any]) -> None:
    summary = report["summary"]
    assert summary["failed"] == 0, _failures(report)
    assert summary["passed"] > 0, summary
    for skipped in report["results"]["skipped_checks"]:
        reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.strip()) > 15, f"{skipped['check_id']} skipped without a reason: {reason!r}"


def test_checkov_cloudformation_templates(checkov: Path) -> None:
    report = run_checkov(checkov, CFN_DIR, "cloudformation")
    _assert_clean(report)
    scanned = {Path(c["file_path"]).name for c in report["results"]["passed_checks"]}
    assert {"connector-ecs.yaml", "management-account-role.yaml", "member-account-role.yaml"} <= scanned


def test_checkov_rendered_helm_chart(checkov: Path, tmp_path: Path) -> None:
    for values_file in CI_VALUES:
        scenario = values_file.name.removesuffix("-values.yaml")
        for index, obj in enumerate(render_chart(ci_values(values_file))):
            out = tmp_path / scenario / f"{index:02d}-{obj['kind'].lower()}.yaml"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    report = run_checkov(checkov, tmp_path, "kubernetes")
    _assert_clean(report)
    checked = {Path(c["file_path"]).parts[1] for c in report["results"]["passed_checks"]}
    assert checked == {p.name.removesuffix("-values.yaml") for p in CI_VALUES}


def test_checkov_reports_a_failing_manifest(checkov: Path, tmp_path: Path) -> None:
    # The assertion above can fail: a privileged pod is reported.
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: x}\n"
        "spec:\n  containers:\n    - name: c\n      image: busybox:latest\n      securityContext: {privileged: true}\n",
        encoding="utf-8",
    )
    report = run_checkov(checkov, tmp_path, "kubernetes")
    assert "CKV_K8S_16" in {c["check_id"] for c in report["results"]["failed_checks"]}
