"""`connector doctor` on Resource Explorer: usable, an account-region without an index (the docs' SCP pitfall),
an index made LOCAL instead of AGGREGATOR."""

from __future__ import annotations

import pytest

from connector import doctor
from connector.integrations.aws_organization.settings import parse_settings
from tests.discovery.conftest import SPEC, STORAGE, settings, workloads

pytestmark = pytest.mark.timeout(120)


def _checks(sb, **overrides):
    found = doctor.aws_checks(
        parse_settings(settings(sb, resource_types=list(STORAGE), **overrides)), sb.seed_info.connector_id, 8
    )
    return {c.id: c for c in found}


def test_usable_index_and_view(sandbox):
    checks = _checks(sandbox)
    assert checks["resource_explorer"].status == "pass", checks["resource_explorer"]
    assert "us-east-1" in checks["resource_explorer"].message
    assert checks["resource_explorer.indexes"].status == "pass"
    assert "resource_explorer" not in _checks(sandbox, resource_explorer="off")


def test_missing_index_names_the_scp_pitfall(sandbox):
    explorer = sandbox.resource_explorer
    account = workloads(sandbox)[0]
    saved = explorer.indexes.pop((account, "eu-west-1"))
    try:
        check = _checks(sandbox)["resource_explorer.indexes"]
    finally:
        explorer.indexes[(account, "eu-west-1")] = saved
    assert check.status == "warn" and f"{account}/eu-west-1" in check.message
    assert "CloudFormation" in check.fix and "aws:RequestedRegion" in check.fix


def test_local_instead_of_aggregator(sandbox):
    explorer = sandbox.resource_explorer
    info = sandbox.seed_info
    saved = (dict(explorer.indexes), dict(explorer.views), dict(explorer.default_views))
    try:
        explorer.reset()
        explorer.setup_organization(
            info.management_account_id, "us-east-1", [a.id for a in info.accounts], list(SPEC.regions),
            aggregator_type="LOCAL",
        )  # fmt: skip
        check = _checks(sandbox)["resource_explorer"]
    finally:
        explorer.indexes.update(saved[0])
        explorer.views.update(saved[1])
        explorer.default_views.update(saved[2])
    assert check.status == "warn" and "Aggregator" in check.message and "Quick Setup" in check.fix
