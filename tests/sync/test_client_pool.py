"""The shared client pool (connector/aws/client_pool.py), attacked: every way we could think of to get a call
signed with account A's credentials when account B was asked for. The sandbox tells who signed a call from its
access key (sts:GetCallerIdentity answers with the signer's account), so each check is on the effect."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import NoCredentialsError, ParamValidationError

from connector.aws import client_pool
from connector.aws.client_pool import AccountClient
from connector.aws.sessions import AwsSessions, ClientSettings

REGIONS = ("us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2", "eu-central-1", "ca-central-1")


@pytest.fixture(scope="module")
def roles(sandbox):
    """Sessions with a tiny shared pool (2 clients: constant eviction) and the member roles of 10 accounts."""
    info = sandbox.seed_info
    aws = AwsSessions(info.connector_id, ClientSettings(max_cached_clients=2))
    mgmt = aws.assume(info.management_role_arn, external_id=info.external_id)
    accounts = [
        a.id
        for a in info.accounts[1:]
        if a.state == "ACTIVE" and a.id not in (info.account_without_member_role, info.management_account_id)
    ][:10]
    keys = {account: aws.assume(info.member_role_arn(account), via=mgmt) for account in accounts}
    return aws, keys


def caller_account(client) -> str:
    return str(client.get_caller_identity()["Account"])


def test_a_lookup_is_bound_to_the_asked_sessions_own_credentials(roles):
    aws, keys = roles
    for account, key in keys.items():
        client = aws.client(key, "sts", "us-east-1")
        assert isinstance(client, AccountClient)
        assert client.binding.identity == key
        assert client.binding._credentials is aws._role_credentials[key]
        assert caller_account(client) == account
    with pytest.raises(KeyError):
        aws.client("arn:aws:iam::999999999999:role/Never||identity", "sts", "us-east-1")


def test_the_shared_client_itself_signs_as_nobody(roles):
    aws, keys = roles
    account, key = next(iter(keys.items()))
    client = aws.client(key, "sts", "us-east-1")
    assert caller_account(client) == account
    for raw in (client._client, aws._shared.get("sts", "us-east-1")):
        with pytest.raises(NoCredentialsError):
            raw.get_caller_identity()
    # ...not even right after a bound call failed in this thread (the binding is undone whatever happens)
    with pytest.raises(ParamValidationError):
        client.get_caller_identity(NoSuchParameter=1)
    with pytest.raises(NoCredentialsError):
        client._client.get_caller_identity()


def test_concurrent_calls_across_accounts_and_regions_with_eviction_all_sign_as_asked(roles):
    """64 threads, 10 accounts x 6 regions over a pool of 2 shared clients: clients are evicted and remade under
    the calls, and two accounts' calls run on one shared client at the same moment."""
    aws, keys = roles
    jobs = [(account, region) for account in keys for region in REGIONS] * 3
    barrier = threading.Barrier(16)

    def who(job: tuple[str, str]) -> tuple[str, str]:
        account, region = job
        with contextlib.suppress(threading.BrokenBarrierError):  # start together: calls overlap
            barrier.wait(timeout=0.5)
        return account, caller_account(aws.client(keys[account], "sts", region))

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(who, jobs))
    assert answers == [(account, account) for account, _ in jobs]
    assert len(aws._shared) <= 2


def test_nested_and_interleaved_calls_keep_each_accounts_binding(roles):
    aws, keys = roles
    (a, key_a), (b, key_b) = list(keys.items())[:2]
    client_a, client_b = aws.client(key_a, "sts", "us-east-1"), aws.client(key_b, "sts", "us-east-1")
    # a call of A made while B's call is bound in the same thread: A signs as A, then B is bound again
    seen: list[str] = []
    client_b._bound(lambda: seen.extend([caller_account(client_a), caller_account(client_b)]))
    assert seen == [a, b]
    # A's paginator, suspended between pages while B calls in the same thread: every page is still A's
    iam_a, iam_b = aws.client(key_a, "iam"), aws.client(key_b, "iam")
    pages = iam_a.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 1})
    arns = []
    for n, page in enumerate(pages):
        arns += [r["Arn"] for r in page["Roles"]]
        if n == 0:  # B's calls on the same shared clients (STS and IAM) between A's pages
            assert caller_account(client_b) == b
            assert all(f":{b}:" in r["Arn"] for r in iam_b.list_roles()["Roles"])
        if n > 3:
            break
    assert len(arns) >= 2
    assert all(f":{a}:" in arn for arn in arns), arns


def test_a_refresh_gives_the_same_account_new_keys(roles, sandbox, monkeypatch):
    aws, keys = roles
    account, key = list(keys.items())[2]
    client = aws.client(key, "sts", "us-east-1")
    assert caller_account(client) == account
    before = client.binding.frozen().access_key
    monkeypatch.setattr(client_pool, "RECHECK_SECONDS", 0.0)
    client.binding._snapshot = None  # as RECHECK_SECONDS after the last look
    creds = aws._role_credentials[key]
    creds._expiry_time = creds._expiry_time.replace(year=2000)  # expired: botocore must refresh before signing
    creds._refresh_using.__self__._cache.clear()  # ...and its fetcher must not answer from its own cache
    sandbox.faults.reset_counts()
    assert caller_account(client) == account
    assert sandbox.faults.calls("sts", "AssumeRole") == 1
    assert client.binding.frozen().access_key != before


def test_services_with_identity_caches_and_the_identity_get_their_own_clients(roles):
    aws, keys = roles
    key = next(iter(keys.values()))
    assert "s3" not in client_pool.SHARED_SERVICES
    assert not isinstance(aws.client(key, "s3", "us-east-1"), AccountClient)
    assert not isinstance(aws.client(aws.identity(), "sts", "us-east-1"), AccountClient)


def test_forgetting_a_session_leaves_no_way_to_its_binding(roles, sandbox):
    info = sandbox.seed_info
    aws, keys = roles
    account = list(keys)[3]
    mgmt = keys[account].split("|", 2)[2]
    key = aws.assume(info.member_role_arn(account), via=mgmt, external_id="another-session")
    assert key != keys[account]
    client = aws.client(key, "sts", "us-east-1")
    aws.forget(key)
    with pytest.raises(KeyError):
        aws.client(key, "sts", "us-east-1")
    assert caller_account(client) == account  # a client handed out before keeps its own (right) binding
