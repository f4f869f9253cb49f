"""Identity Center as AWS serves it where moto does not: which accounts each permission set is provisioned to
(filtered, paginated, kept up to date by CreateAccountAssignment), and its two limits (one rate shared by the
whole API, at most N calls of one kind outstanding)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connector.sandbox import Sandbox, SeedSpec
from tests.sandbox.sandbox_helpers import NO_RETRIES

pytestmark = pytest.mark.timeout(120)
SPEC = SeedSpec(extra_permission_sets=3, permission_set_share=0.3, cluster_accounts=0)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox.start(seed=SPEC) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def clean(sb: Sandbox) -> Iterator[None]:
    sb.faults.clear()
    yield
    sb.faults.clear()


def _sso(sb: Sandbox) -> Any:
    return sb.client("sso-admin", sb.seed_info.identity_center.region, config=NO_RETRIES)


def _accounts_of(sso: Any, instance: str, ps: str) -> list[str]:
    pages = sso.get_paginator("list_accounts_for_provisioned_permission_set").paginate(
        InstanceArn=instance, PermissionSetArn=ps, PaginationConfig={"PageSize": 1}
    )
    return [a for page in pages for a in page["AccountIds"]]


def test_each_set_lists_the_accounts_it_is_provisioned_to_paginated_and_filtered(sb: Sandbox) -> None:
    ic = sb.seed_info.identity_center
    sso = _sso(sb)
    members = [a.id for a in sb.seed_info.accounts[1:] if a.state == "ACTIVE"]
    per_set = round(len(members) * SPEC.permission_set_share)
    by_account: dict[str, set[str]] = {}
    for n in range(SPEC.extra_permission_sets):
        ps = ic.permission_sets[f"Team{n:02d}"]
        accounts = _accounts_of(sso, ic.instance_arn, ps)  # one per page: pagination works
        assert len(accounts) == len(set(accounts)) == per_set
        assert set(accounts) <= set(members)
        for account in accounts:
            by_account.setdefault(account, set()).add(ps)
            found = sso.list_account_assignments(InstanceArn=ic.instance_arn, AccountId=account, PermissionSetArn=ps)
            assert len(found["AccountAssignments"]) == 1  # the seed's group assignment there
    assert _accounts_of(sso, ic.instance_arn, ic.permission_sets["ReadOnly"]) == []  # nowhere yet
    for account in members:  # the inverse call honours AccountId
        listed = sso.list_permission_sets_provisioned_to_account(InstanceArn=ic.instance_arn, AccountId=account)
        assert set(listed.get("PermissionSets", [])) == by_account.get(account, set())
    with pytest.raises(ClientError) as err:
        sso.list_accounts_for_provisioned_permission_set(
            InstanceArn=ic.instance_arn, PermissionSetArn=ic.instance_arn.replace("instance", "permissionSet") + "/ps-0"
        )
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_an_assignment_provisions_its_set_to_the_account(sb: Sandbox) -> None:
    ic = sb.seed_info.identity_center
    sso = _sso(sb)
    account = sb.seed_info.accounts[2].id
    ps = ic.permission_sets["ReadOnly"]
    sso.create_account_assignment(
        InstanceArn=ic.instance_arn,
        TargetId=account,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=ps,
        PrincipalType="USER",
        PrincipalId=next(iter(ic.users.values())),
    )
    assert _accounts_of(sso, ic.instance_arn, ps) == [account]


def test_one_rate_shared_by_every_operation(sb: Sandbox) -> None:
    sb.faults.rate_limit(rate=1.0, burst=2, service="sso-admin", per="service")
    ic = sb.seed_info.identity_center
    sso = _sso(sb)
    sso.list_instances()
    sso.list_permission_sets(InstanceArn=ic.instance_arn)
    with pytest.raises(ClientError) as err:  # a third operation: the same bucket
        sso.describe_permission_set(InstanceArn=ic.instance_arn, PermissionSetArn=ic.permission_sets["ReadOnly"])
    assert err.value.response["Error"]["Code"] == "ThrottlingException"


def test_at_most_limit_calls_outstanding(sb: Sandbox) -> None:
    ic = sb.seed_info.identity_center
    sb.faults.concurrency(2, service="sso-admin", operation="ListPermissionSets")
    sb.faults.latency(0.5, service="sso-admin", operation="ListPermissionSets")
    outcomes: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            _sso(sb).list_permission_sets(InstanceArn=ic.instance_arn)
            result = "ok"
        except ClientError as exc:
            result = exc.response["Error"]["Code"]
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ["ThrottlingException", "ThrottlingException", "ok", "ok"]
    call()  # the slots are free again once answered
    assert outcomes[-1] == "ok"
