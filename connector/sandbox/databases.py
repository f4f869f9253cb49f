"""Databases in the sandbox: tagged RDS instances, Aurora clusters, Redshift clusters and their Secrets Manager
secrets, in member accounts (moto), whose endpoints lead to local database servers through the connector's
endpoint map (moto computes every endpoint address itself; only the port can be chosen).

And the one IAM rule the connector's secrets depend on, which moto does not enforce: the connector's roles may
read a secret only when it is tagged `apono-connector-id` = the connector's id (the condition the shipped
policies put on secretsmanager:GetSecretValue). The admin (root) keys read any secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from moto.secretsmanager.models import secretsmanager_backends

from connector.sandbox import protocol
from connector.sandbox.identity import PARTITION, resolve_caller

ClientFactory = Any  # (service, region, account) -> admin client acting in that account
Kind = Literal["rds_instance", "rds_cluster", "redshift_cluster"]
TAG_CONNECTOR = "apono-connector-id"
_DEFAULT_VERSIONS = {"mariadb": "10.11.9"}


@dataclass(frozen=True)
class SeedDatabase:
    """One database to create. `connect_to` is the local server its endpoint maps to (host, port)."""

    identifier: str
    kind: Kind = "rds_instance"
    engine: str = "postgres"  # postgres | mysql | mariadb | aurora-postgresql | aurora-mysql | redshift
    account_index: int = 0  # index into the seed's active workload accounts
    region: str = "us-east-1"
    port: int = 5432
    db_name: str = "postgres"
    auth_type: str | None = "user-password"  # the auth_type tag; None: no tag
    tagged: bool = True  # apono-connector-id = the connector's id
    credentials: tuple[str, str] | None = None  # (username, password) of the connector user, in a secret
    secret_tagged: bool = True  # the secret carries apono-connector-id (else the connector may not read it)
    iam_auth: bool = False
    connect_to: tuple[str, int] | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    engine_version: str | None = None  # moto knows no default for some engines (mariadb)


@dataclass(frozen=True)
class DatabaseInfo:
    identifier: str
    kind: str
    account: str
    region: str
    engine: str
    arn: str
    address: str
    port: int
    resource_id: str
    secret_arn: str
    connect_to: tuple[str, int] | None


def seed_databases(
    specs: tuple[SeedDatabase, ...], accounts: list[str], connector_id: str, client: ClientFactory
) -> list[DatabaseInfo]:
    out = []
    for spec in specs:
        account = accounts[spec.account_index % len(accounts)]
        secret_arn = ""
        if spec.credentials is not None:
            sm = client("secretsmanager", spec.region, account)
            secret_tags = [{"Key": TAG_CONNECTOR, "Value": connector_id}] if spec.secret_tagged else []
            secret_arn = sm.create_secret(
                Name=f"databases/{spec.identifier}/connector",
                SecretString=json.dumps({"username": spec.credentials[0], "password": spec.credentials[1]}),
                Tags=secret_tags,
            )["ARN"]
        tags = dict(spec.extra_tags)
        if spec.tagged:
            tags[TAG_CONNECTOR] = connector_id
        if spec.auth_type is not None:
            tags["auth_type"] = spec.auth_type
        if secret_arn:
            tags["apono-secret"] = secret_arn
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        out.append(_create(spec, account, tag_list, secret_arn, client))
    return out


def _create(spec: SeedDatabase, account: str, tags: list[dict[str, str]], secret_arn: str, client: Any) -> DatabaseInfo:
    admin = {"MasterUsername": "sandboxadmin", "MasterUserPassword": "Sandbox-admin-0"}  # moto needs one
    if spec.kind == "redshift_cluster":
        rs = client("redshift", spec.region, account)
        rs.create_cluster(
            ClusterIdentifier=spec.identifier,
            NodeType="dc2.large",
            DBName=spec.db_name,
            Port=spec.port,
            Tags=tags,
            **admin,
        )
        c = rs.describe_clusters(ClusterIdentifier=spec.identifier)["Clusters"][0]
        address, port = c["Endpoint"]["Address"], int(c["Endpoint"]["Port"])
        arn, resource_id = f"arn:aws:redshift:{spec.region}:{account}:cluster:{spec.identifier}", ""
    elif spec.kind == "rds_cluster":
        rds = client("rds", spec.region, account)
        c = rds.create_db_cluster(
            DBClusterIdentifier=spec.identifier,
            Engine=spec.engine,
            Port=spec.port,
            DatabaseName=spec.db_name,
            EnableIAMDatabaseAuthentication=spec.iam_auth,
            Tags=tags,
            **admin,
        )["DBCluster"]
        rds.create_db_instance(  # the writer, a member without tags of its own
            DBInstanceIdentifier=f"{spec.identifier}-1",
            DBClusterIdentifier=spec.identifier,
            Engine=spec.engine,
            DBInstanceClass="db.r6g.large",
        )
        address, port, arn, resource_id = c["Endpoint"], int(c["Port"]), c["DBClusterArn"], c["DbClusterResourceId"]
    else:
        rds = client("rds", spec.region, account)
        version = spec.engine_version or _DEFAULT_VERSIONS.get(spec.engine)
        d = rds.create_db_instance(
            **({"EngineVersion": version} if version else {}),
            DBInstanceIdentifier=spec.identifier,
            Engine=spec.engine,
            DBInstanceClass="db.t4g.micro",
            Port=spec.port,
            DBName=spec.db_name,
            EnableIAMDatabaseAuthentication=spec.iam_auth,
            Tags=tags,
            **admin,
        )["DBInstance"]
        address, port = d["Endpoint"]["Address"], int(d["Endpoint"]["Port"])
        arn, resource_id = d["DBInstanceArn"], d["DbiResourceId"]
    return DatabaseInfo(
        spec.identifier,
        spec.kind,
        account,
        spec.region,
        spec.engine,
        arn,
        address,
        port,
        resource_id,
        secret_arn,
        spec.connect_to,
    )


def endpoint_map(databases: list[DatabaseInfo]) -> str:
    """CONNECTOR_DATABASE_ENDPOINTS for the seeded databases that lead to a local server."""
    return ",".join(f"{d.address}:{d.port}={d.connect_to[0]}:{d.connect_to[1]}" for d in databases if d.connect_to)


def secret_read_denied(info: protocol.RequestInfo, body: bytes, connector_id: str | None) -> tuple[str, str] | None:
    """(code, message) when a role session reads a secret not tagged for the connector: the shipped policies'
    `secretsmanager:ResourceTag/apono-connector-id` condition, which moto does not evaluate."""
    if info.service != "secretsmanager" or info.operation != "GetSecretValue" or connector_id is None:
        return None
    caller = resolve_caller(info.access_key)
    if not caller.is_assumed_role:
        return None  # the sandbox admin
    try:
        secret_id = str(json.loads(body or b"{}").get("SecretId", ""))
    except ValueError:
        return None
    backend = secretsmanager_backends[caller.account][info.region]
    try:
        secret = backend.describe_secret(secret_id)
    except Exception:  # not found and the like: moto answers it
        return None
    name = str(getattr(secret, "arn", secret_id))
    tags = {t["Key"]: t["Value"] for t in secret.tags or []}
    if tags.get(TAG_CONNECTOR) == connector_id:
        return None
    return (
        "AccessDeniedException",
        f"User: {caller.arn} is not authorized to perform: secretsmanager:GetSecretValue on resource: {name} "
        "because no identity-based policy allows the secretsmanager:GetSecretValue action",
    )


__all__ = ["PARTITION", "DatabaseInfo", "SeedDatabase", "endpoint_map", "secret_read_denied", "seed_databases"]
