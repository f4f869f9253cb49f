"""RDS instances, Aurora clusters and Redshift clusters in one account and region, and the tags that hand one
to this connector (seed 001, "RDS auto-discovery"): `apono-connector-id` = the connector's id, `auth_type` =
`iam-auth` or `user-password`, and for user-password `apono-secret` = the ARN of a Secrets Manager secret.

Every database found is an inventory item. Those tagged for this connector are *managed*: their tags are checked
here, and a problem becomes an `error` item that names the tag and the fix, while the sync goes on. Neither RDS
nor moto filters by tag on Describe*, so the tags are read from each description (TagList / Tags).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError

from connector.aws.errors import error_code
from connector.aws.partitions import partition_of
from connector.integrations.base import InventoryItem

TAG_CONNECTOR = "apono-connector-id"
TAG_AUTH = "auth_type"
TAG_SECRET = "apono-secret"  # noqa: S105 - a tag name, not a secret
AUTH_TYPES = ("iam-auth", "user-password")
DATABASE_RESOURCE_TYPES = ("rds_instance", "rds_cluster", "redshift_cluster")
ITEM_TYPES = {"rds_instance": "rds.instance", "rds_cluster": "rds.cluster", "redshift_cluster": "redshift.cluster"}
# Engine -> the SQL dialect the connector speaks to it.
ENGINE_FAMILY = {
    "postgres": "postgresql",
    "aurora-postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora-mysql": "mysql",
    "aurora": "mysql",  # Aurora MySQL 5.6
    "redshift": "redshift",
}
DEFAULT_DATABASE = {"postgresql": "postgres", "mysql": "", "redshift": "dev"}
SECRET_ARN = re.compile(r"^arn:aws(-cn|-us-gov)?:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@!-]{1,512}$")
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")
PAGE = {"PageSize": 100}  # RDS MaxRecords 20-100: the fewest calls

Kind = Literal["rds_instance", "rds_cluster", "redshift_cluster"]


@dataclass(frozen=True)
class TagProblem:
    code: str  # TagMissing | TagInvalid | IamAuthDisabled | TagOnAuroraMember
    message: str
    hint: str


@dataclass(frozen=True)
class DiscoveredDatabase:
    """One database endpoint as AWS describes it. Nothing here comes from a job."""

    kind: Kind
    account_id: str
    region: str
    identifier: str
    arn: str
    engine: str
    address: str
    port: int
    db_name: str = ""
    iam_auth: bool = False
    resource_id: str = ""  # DbiResourceId / DbClusterResourceId: the rds-db:connect ARN names it
    cluster_id: str = ""  # the Aurora cluster of a member instance
    status: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return ENGINE_FAMILY.get(self.engine, "")

    @property
    def database(self) -> str:
        return self.db_name or DEFAULT_DATABASE.get(self.family, "")

    @property
    def auth_type(self) -> str:
        return self.tags.get(TAG_AUTH, "").strip()

    @property
    def secret_arn(self) -> str:
        return self.tags.get(TAG_SECRET, "").strip()

    def managed_by(self, connector_id: str) -> bool:
        return self.tags.get(TAG_CONNECTOR, "").strip() == connector_id

    def tag_problem(self) -> TagProblem | None:
        """What keeps a database tagged for this connector from being used, with the fix; None when nothing."""
        where = f"{self.kind.replace('_', ' ')} {self.identifier} ({self.account_id}, {self.region})"
        if self.cluster_id:
            return TagProblem(
                "TagOnAuroraMember",
                f"{where} is a member of Aurora cluster {self.cluster_id}",
                f"tag the Aurora cluster {self.cluster_id} (the connector connects to its writer endpoint), "
                f"and remove {TAG_CONNECTOR} from the instance",
            )
        if not self.family:
            return TagProblem(
                "EngineUnsupported",
                f"{where} runs engine {self.engine!r}",
                f"the connector manages PostgreSQL, MySQL, MariaDB and Redshift; remove the {TAG_CONNECTOR} tag",
            )
        auth = self.auth_type
        if not auth:
            return TagProblem(
                "TagMissing",
                f"{where} has no {TAG_AUTH} tag",
                f"add the tag {TAG_AUTH} = iam-auth or user-password (and {TAG_SECRET} = the secret's ARN for "
                "user-password)",
            )
        if auth not in AUTH_TYPES:
            return TagProblem(
                "TagInvalid",
                f"{where}: tag {TAG_AUTH} is {auth[:40]!r}",
                f"set the tag {TAG_AUTH} to iam-auth or user-password",
            )
        if auth == "iam-auth" and self.kind == "redshift_cluster":
            return TagProblem(
                "TagInvalid",
                f"{where}: {TAG_AUTH} iam-auth is not supported for Redshift by this connector",
                f"set {TAG_AUTH} = user-password and {TAG_SECRET} = the ARN of the connector user's secret",
            )
        if auth == "iam-auth" and not self.iam_auth:
            return TagProblem(
                "IamAuthDisabled",
                f"{where} is tagged {TAG_AUTH} = iam-auth but IAM database authentication is off",
                f"enable it (aws rds modify-{'db-cluster' if self.kind == 'rds_cluster' else 'db-instance'} "
                "--enable-iam-database-authentication ...) or tag user-password with a secret",
            )
        if auth == "user-password":
            if not self.secret_arn:
                return TagProblem(
                    "TagMissing",
                    f"{where} is tagged {TAG_AUTH} = user-password but has no {TAG_SECRET} tag",
                    f"add the tag {TAG_SECRET} = the ARN of the Secrets Manager secret holding the connector "
                    'user ({"username": ..., "password": ...}), and tag that secret '
                    f"{TAG_CONNECTOR} = the connector id",
                )
            if not SECRET_ARN.fullmatch(self.secret_arn):
                return TagProblem(
                    "TagInvalid",
                    f"{where}: tag {TAG_SECRET} is not a Secrets Manager secret ARN",
                    f"set {TAG_SECRET} to the secret's full ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)",
                )
        return None

    def item(self, connector_id: str) -> InventoryItem:
        managed = self.managed_by(connector_id)
        return InventoryItem(
            type=ITEM_TYPES[self.kind],
            id=self.arn,
            name=self.identifier,
            account_id=self.account_id,
            region=self.region,
            parent_id="",
            attributes={
                "engine": self.engine,
                "family": self.family,
                "address": self.address,
                "port": self.port,
                "database": self.database,
                "iam_auth": self.iam_auth,
                "resource_id": self.resource_id,
                "cluster_id": self.cluster_id,
                "status": self.status,
                "tags": dict(self.tags),
                "managed": managed,
                "auth_type": self.auth_type if managed else "",
                "secret_arn": self.secret_arn if managed else "",
            },
        )


def _tags(tag_list: Any) -> dict[str, str]:
    return {str(t.get("Key", "")): str(t.get("Value", "")) for t in tag_list or [] if isinstance(t, dict)}


def instances(rds: Any, account_id: str, region: str) -> Iterator[DiscoveredDatabase]:
    for page in rds.get_paginator("describe_db_instances").paginate(PaginationConfig=PAGE):
        yield from _instance_page(page, account_id, region)


def _instance_page(page: Mapping[str, Any], account_id: str, region: str) -> Iterator[DiscoveredDatabase]:
    for d in page.get("DBInstances", []):
        endpoint = d.get("Endpoint") or {}
        yield DiscoveredDatabase(
            kind="rds_instance",
            account_id=account_id,
            region=region,
            identifier=str(d["DBInstanceIdentifier"]),
            arn=str(d.get("DBInstanceArn") or _arn(region, account_id, "rds", "db:" + d["DBInstanceIdentifier"])),
            engine=str(d.get("Engine", "")),
            address=str(endpoint.get("Address", "")),
            port=int(endpoint.get("Port") or d.get("DbInstancePort") or 0),
            db_name=str(d.get("DBName") or ""),
            iam_auth=bool(d.get("IAMDatabaseAuthenticationEnabled")),
            resource_id=str(d.get("DbiResourceId", "")),
            cluster_id=str(d.get("DBClusterIdentifier") or ""),
            status=str(d.get("DBInstanceStatus", "")),
            tags=_tags(d.get("TagList")),
        )


def clusters(rds: Any, account_id: str, region: str) -> Iterator[DiscoveredDatabase]:
    """Aurora (and Multi-AZ DB) clusters; the members are the instances whose cluster_id names them."""
    for page in rds.get_paginator("describe_db_clusters").paginate(PaginationConfig=PAGE):
        yield from _cluster_page(page, account_id, region)


def _cluster_page(page: Mapping[str, Any], account_id: str, region: str) -> Iterator[DiscoveredDatabase]:
    for c in page.get("DBClusters", []):
        yield DiscoveredDatabase(
            kind="rds_cluster",
            account_id=account_id,
            region=region,
            identifier=str(c["DBClusterIdentifier"]),
            arn=str(c.get("DBClusterArn") or _arn(region, account_id, "rds", "cluster:" + c["DBClusterIdentifier"])),
            engine=str(c.get("Engine", "")),
            address=str(c.get("Endpoint", "")),  # the writer endpoint
            port=int(c.get("Port") or 0),
            db_name=str(c.get("DatabaseName") or ""),
            iam_auth=bool(c.get("IAMDatabaseAuthenticationEnabled")),
            resource_id=str(c.get("DbClusterResourceId", "")),
            status=str(c.get("Status", "")),
            tags=_tags(c.get("TagList")),
        )


def redshift_clusters(redshift: Any, account_id: str, region: str) -> Iterator[DiscoveredDatabase]:
    for page in redshift.get_paginator("describe_clusters").paginate(PaginationConfig={"PageSize": 100}):
        yield from _redshift_page(page, account_id, region)


def _redshift_page(page: Mapping[str, Any], account_id: str, region: str) -> Iterator[DiscoveredDatabase]:
    for c in page.get("Clusters", []):
        endpoint = c.get("Endpoint") or {}
        ident = str(c["ClusterIdentifier"])
        yield DiscoveredDatabase(
            kind="redshift_cluster",
            account_id=account_id,
            region=region,
            identifier=ident,
            arn=_arn(region, account_id, "redshift", f"cluster:{ident}"),
            engine="redshift",
            address=str(endpoint.get("Address", "")),
            port=int(endpoint.get("Port") or 5439),
            db_name=str(c.get("DBName") or ""),
            status=str(c.get("ClusterStatus", "")),
            tags=_tags(c.get("Tags")),
        )


def describe_one(client: Any, kind: Kind, identifier: str, account_id: str, region: str) -> DiscoveredDatabase | None:
    """One database as AWS describes it now (a grant re-reads it: the endpoint, tags and secret never come from
    a job). None when it does not exist."""
    if not IDENTIFIER.fullmatch(identifier):
        raise ValueError(f"{identifier[:80]!r} is not an RDS or Redshift identifier")
    try:
        if kind == "redshift_cluster":
            found = list(_redshift_page(client.describe_clusters(ClusterIdentifier=identifier), account_id, region))
        elif kind == "rds_cluster":
            found = list(_cluster_page(client.describe_db_clusters(DBClusterIdentifier=identifier), account_id, region))
        else:
            found = list(
                _instance_page(client.describe_db_instances(DBInstanceIdentifier=identifier), account_id, region)
            )
    except ClientError as exc:
        if error_code(exc) in (
            "DBInstanceNotFound",
            "DBInstanceNotFoundFault",
            "DBClusterNotFoundFault",
            "ClusterNotFound",
        ):
            return None
        raise
    return found[0] if found else None


def _arn(region: str, account_id: str, service: str, resource: str) -> str:
    return f"arn:{partition_of(region)}:{service}:{region}:{account_id}:{resource}"


def with_parent(item: InventoryItem, parent_id: str) -> InventoryItem:
    return InventoryItem(
        type=item.type,
        id=item.id,
        name=item.name,
        account_id=item.account_id,
        region=item.region,
        parent_id=parent_id,
        attributes=item.attributes,
    )


def error_item(db: DiscoveredDatabase, code: str, message: str, hint: str) -> InventoryItem:
    """A managed database the connector cannot use: the `error` item names the database and the fix."""
    return InventoryItem(
        type="error",
        id=f"{db.account_id}/{db.region}/database:{db.identifier}",
        account_id=db.account_id,
        region=db.region,
        parent_id=db.arn,
        attributes={"stage": "database", "code": code, "message": message[:500], "hint": hint, "resource": db.arn},
    )
