"""A running sandbox that this process's AWS SDK uses as its connector identity (shared by test packages)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from connector.integrations.endpoints import EndpointMap
from connector.sandbox import DatabaseInfo, Sandbox, SeedDatabase, SeedSpec
from connector.sandbox.databases import endpoint_map, seed_databases


@contextmanager
def sandbox_as_aws(spec: SeedSpec | None) -> Iterator[Sandbox]:
    """Start the sandbox seeded with `spec` and point the default boto3 chain at it (the connector's role
    credentials, no profile or config file of this machine); undo it all on exit."""
    sb = Sandbox.start(seed=spec)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("AWS_PROFILE", raising=False)
            for key, value in sb.env().items():
                mp.setenv(key, value)
            mp.setenv("AWS_CONFIG_FILE", os.devnull)
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
            yield sb
    finally:
        sb.stop()


def in_account(sb: Sandbox, service: str, account: str, region: str = "us-east-1") -> Any:
    """An admin client acting in `account` (moto's x-moto-account-id header), for set-up and assertions."""
    client = sb.client(service, region)

    def header(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-moto-account-id"] = account

    client.meta.events.register("before-call.*.*", header)
    return client


def tagged_function(sb: Sandbox, name: str, account: str, *, timeout: int = 3, region: str = "us-east-1") -> str:
    """A Lambda function in `account` tagged for the connector (apono-connector-access), made once; its ARN.
    Its behaviour is whatever handler the test registers with `sb.lambdas.register(name, ...)`."""
    iam = in_account(sb, "iam", account, region)
    try:
        role = iam.get_role(RoleName=f"{name}-role")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        trust = '{"Version": "2012-10-17", "Statement": []}'
        role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    fn = in_account(sb, "lambda", account, region)
    try:
        return str(fn.get_function(FunctionName=name)["Configuration"]["FunctionArn"])
    except fn.exceptions.ResourceNotFoundException:
        made = fn.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="index.handler",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            Timeout=timeout,
            Tags={"apono-connector-access": "true"},
        )
        return str(made["FunctionArn"])


def tagged_database(sb: Sandbox, spec: SeedDatabase) -> DatabaseInfo:
    """A database (RDS instance, Aurora cluster or Redshift cluster) and its secret made after the seed, tagged
    as `spec` says, in one of the seed's active workload accounts (`spec.account_index`). Its endpoint leads
    to `spec.connect_to` through `endpoint_map_of([...])`."""
    info = sb.seed_info
    accounts = [
        a.id
        for a in info.accounts
        if a.state == "ACTIVE" and a.ou_path.startswith("Root/Workloads") and a.id != info.account_without_member_role
    ]

    def client(service: str, region: str, account: str) -> Any:
        return in_account(sb, service, account, region)

    (made,) = seed_databases((spec,), accounts, info.connector_id, client)
    return made


def endpoint_map_of(databases: list[DatabaseInfo]) -> EndpointMap:
    """The connector's endpoint map (CONNECTOR_DATABASE_ENDPOINTS) for these databases' local servers."""
    return EndpointMap.parse(endpoint_map(databases))
