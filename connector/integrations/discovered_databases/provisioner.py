"""The `rds_database` kind: a just-in-time database user on a database the organisation found by its tags.

Target: {"resource_type": "rds_database", "account_id", "region", and one of "instance_id" (an RDS instance),
"cluster_id" (an Aurora cluster) or "redshift_cluster_id"; then the database kind's own fields: "database",
"schema", "table", "level" or "role", "credentials"}.

Nothing about where to connect or which login to use comes from the job. Every job re-reads the database
from AWS with the member role of its account (`describe_one`) and goes on only if it is tagged for this
connector and its tags check out; the engine's settings are made from that description (`settings_of`), the
secret is read in that account, and the connection opens where the connector's endpoint map leads. The
grant itself (user inside the marker role, record, privileges, sealed password or IAM, revoke with no way
back in) is the database kind's (`connector.integrations.databases.provisioner.DatabaseGrants`).

Expiry: every sweep looks at the databases this process granted on; a full scan lists every database tagged
for this connector in every active account and region the integration covers. Grants are refused unless
the integration's `resource_types` name the database's type, so the full scan always covers what was granted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations.aws_organization.database_discovery import (
    DATABASE_RESOURCE_TYPES,
    DiscoveredDatabase,
    Kind,
    clusters,
    describe_one,
    instances,
    redshift_clusters,
)
from connector.integrations.aws_organization.integration import AwsOrganizationIntegration
from connector.integrations.aws_organization.settings import ACCOUNT_ID, REGION
from connector.integrations.base import GrantRequest, JobContext, RevokeRequest
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan
from connector.integrations.databases.integration import DatabaseIntegration
from connector.integrations.databases.provisioner import DatabaseGrants
from connector.integrations.discovered_databases.contents import raw_settings
from connector.integrations.effect import Effect

RESOURCE_TYPE = "rds_database"
PLACE_FIELDS = {"instance_id": "rds_instance", "cluster_id": "rds_cluster", "redshift_cluster_id": "redshift_cluster"}
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,62}$")


class _Discovered(DatabaseIntegration):
    """A database integration made from a discovered database, reading its secret and signing its IAM tokens
    with the member role of the database's account (never the connector's own identity)."""

    type_id = "aws_organization"  # never registered: it lives inside the organisation integration

    def __init__(self, org: AwsOrganizationIntegration, db: DiscoveredDatabase) -> None:
        self.org, self.account_id = org, db.account_id
        super().__init__(org.integration_id, raw_settings(db, org), org.services)

    def _client(self, service: str) -> Any:
        def make(region: str) -> Any:
            return self.org.aws.client(self.org.member(self.account_id), service, region)

        return make


class _Postgres(_Discovered):
    engine_name = "postgresql"


class _MySql(_Discovered):
    engine_name = "mysql"


class _Redshift(_Discovered):
    engine_name = "redshift"


_BY_FAMILY: dict[str, type[_Discovered]] = {"postgresql": _Postgres, "mysql": _MySql, "redshift": _Redshift}


@dataclasses.dataclass(frozen=True)
class Place:
    account_id: str
    region: str
    kind: Kind
    identifier: str

    def target(self) -> dict[str, str]:
        field = next(f for f, k in PLACE_FIELDS.items() if k == self.kind)
        return {
            "resource_type": RESOURCE_TYPE,
            "account_id": self.account_id,
            "region": self.region,
            field: self.identifier,
        }


def parse_place(target: Mapping[str, Any]) -> tuple[Place, dict[str, Any]]:
    """The database the target names, and the rest of the target (the database kind's own fields)."""
    account, region = target.get("account_id"), target.get("region")
    if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account):
        raise InvalidJob("target.account_id: the 12-digit account of the database is required")
    if not isinstance(region, str) or not REGION.fullmatch(region):
        raise InvalidJob("target.region: the database's region (e.g. eu-west-1) is required")
    named = [f for f in PLACE_FIELDS if target.get(f) not in (None, "")]
    if len(named) != 1:
        raise InvalidJob(f"target: name the database with exactly one of {sorted(PLACE_FIELDS)}")
    identifier = target[named[0]]
    if not isinstance(identifier, str) or not _IDENTIFIER.fullmatch(identifier):
        raise InvalidJob(f"target.{named[0]}: not an RDS / Redshift identifier")
    rest = {k: v for k, v in target.items() if k not in ("account_id", "region", *PLACE_FIELDS)}
    rest["resource_type"] = "database"
    kind: Kind = PLACE_FIELDS[named[0]]  # type: ignore[assignment]
    return Place(account, region, kind, identifier), rest


class DiscoveredDatabaseGrants:
    def __init__(self, integration: AwsOrganizationIntegration) -> None:
        self.integration = integration

    # -- the database, as AWS says it is now ---------------------------------------------------------------
    def _database(self, place: Place) -> DiscoveredDatabase:
        if place.kind not in self.integration.config.resource_types:
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"the integration's resource_types do not name {place.kind}: add it, so that the expiry loop's full "
                "scan looks where this grant would live",
                retryable=False,
            )
        if place.account_id in self.integration.config.excluded_account_ids:
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"account {place.account_id} is excluded by the integration",
                retryable=False,
            )
        service = "redshift" if place.kind == "redshift_cluster" else "rds"
        client = self.integration.client(place.account_id, service, place.region)
        db = describe_one(client, place.kind, place.identifier, place.account_id, place.region)
        if db is None:
            raise ConnectorError(
                ErrorCode.NOT_FOUND,
                f"{place.kind} {place.identifier} does not exist in {place.account_id} {place.region}",
                retryable=False,
            )
        if not db.managed_by(self.integration.services.connector_id):
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"{place.kind} {place.identifier} is not tagged apono-connector-id = this connector's id",
                retryable=False,
            )
        problem = db.tag_problem()
        if problem is not None:
            raise ConnectorError(ErrorCode.PRECONDITION_FAILED, f"{problem.message}: {problem.hint}", retryable=False)
        return db

    def _delegate(self, place: Place) -> DatabaseGrants:
        db = self._database(place)
        return DatabaseGrants(_BY_FAMILY[db.family](self.integration, db))

    # -- Provisioner -------------------------------------------------------------------------------------
    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        place, rest = parse_place(request.target)
        return self._delegate(place).describe(dataclasses.replace(request, target=rest), ctx)

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        place, rest = parse_place(request.target)
        self.integration.note_place(RESOURCE_TYPE, place.account_id, place.region, place.kind, place.identifier)
        result = self._delegate(place).grant(dataclasses.replace(request, target=rest), effect, ctx)
        return result | {"account_id": place.account_id, "region": place.region, place.kind: place.identifier}

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        place, rest = parse_place(request.target)
        result = self._delegate(place).revoke(dataclasses.replace(request, target=rest), ctx)
        return result | {"account_id": place.account_id, "region": place.region, place.kind: place.identifier}

    # -- ExpiryScanner -----------------------------------------------------------------------------------
    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        places = {Place(*p) for p in self.integration.places(RESOURCE_TYPE)}  # type: ignore[arg-type]
        if scan.full:
            places |= set(self._managed_everywhere(scan))
        for place in sorted(places, key=lambda p: (p.account_id, p.region, p.kind, p.identifier)):
            scan.check()
            try:
                found = list(self._delegate(place).expired(scan))
            except (ClientError, BotoCoreError, ConnectorError) as exc:
                scan.problem(f"{RESOURCE_TYPE} {place.account_id}/{place.region}/{place.identifier}", str(exc)[:300])
                continue
            for expired in found:
                request = expired.request
                if request is not None:
                    wrapped = {**{k: v for k, v in request.target.items() if k != "resource_type"}, **place.target()}
                    request = dataclasses.replace(request, target=wrapped)
                yield dataclasses.replace(
                    expired,
                    place=f"{place.account_id}/{place.region}/{place.identifier}/{expired.place}",
                    request=request,
                )

    def _regions(self, account: str, scan: ExpiryScan) -> tuple[str, ...]:
        regions = self.integration.config.regions
        if regions != "enabled":
            return regions or (self.integration.config.region,)
        try:
            ec2 = self.integration.client(account, "ec2", self.integration.config.region)
            return tuple(sorted(r["RegionName"] for r in ec2.describe_regions(AllRegions=False).get("Regions", [])))
        except (ClientError, BotoCoreError, ConnectorError) as exc:
            scan.problem(f"{RESOURCE_TYPE} {account}/regions", str(exc)[:300])
            return ()

    def _managed_everywhere(self, scan: ExpiryScan) -> Iterator[Place]:
        kinds = set(self.integration.config.resource_types) & set(DATABASE_RESOURCE_TYPES)
        if not kinds:
            return
        connector_id = self.integration.services.connector_id
        for account in self.integration.active_accounts():
            for region in self._regions(account, scan):
                scan.check()
                try:
                    found: list[DiscoveredDatabase] = []
                    if kinds & {"rds_instance", "rds_cluster"}:
                        rds = self.integration.client(account, "rds", region)
                        if "rds_instance" in kinds:
                            found += instances(rds, account, region)
                        if "rds_cluster" in kinds:
                            found += clusters(rds, account, region)
                    if "redshift_cluster" in kinds:
                        found += redshift_clusters(
                            self.integration.client(account, "redshift", region), account, region
                        )
                except (ClientError, BotoCoreError, ConnectorError) as exc:
                    scan.problem(f"{RESOURCE_TYPE} {account}/{region}", str(exc)[:300])
                    continue
                for db in found:
                    if db.managed_by(connector_id) and db.tag_problem() is None:
                        yield Place(account, region, db.kind, db.identifier)
