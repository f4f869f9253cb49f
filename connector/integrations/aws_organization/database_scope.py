"""One (account, region) of database discovery: list RDS instances, Aurora clusters and Redshift clusters, and
take each one tagged for this connector through its checks. A problem with one database (a tag, its secret,
the network, a privilege) becomes that database's `error` item with the fix; the others go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector.aws.errors import error_code
from connector.errors import ConnectorError
from connector.integrations.aws_organization.database_discovery import (
    TAG_CONNECTOR,
    TAG_SECRET,
    DiscoveredDatabase,
    clusters,
    error_item,
    instances,
    redshift_clusters,
    with_parent,
)
from connector.integrations.base import InventoryItem
from connector.logging import get_logger, register_secret

log = get_logger("connector.integrations.aws_organization")

# Session key, service, region -> client (the member role's clients, from AwsSessions).
ClientOf = Callable[[str, str], Any]
# A managed database whose tags and secret are in order -> its inventory (databases, schemas, tables, roles);
# the engine layer provides it. None: discovery stops at the checks.
ContentsOf = Callable[[DiscoveredDatabase, "ReadyDatabase"], Iterator[InventoryItem]]


class DatabaseUnusable(Exception):
    """A managed database cannot be used; `code` and `hint` go into its error item."""

    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.code, self.hint = code, hint


class ReadyDatabase:
    """A managed database whose tags checked out, with its secret's login once read (never logged or emitted)."""

    def __init__(self, db: DiscoveredDatabase, connect_to: tuple[str, int], username: str, password: str) -> None:
        self.db = db
        self.connect_to = connect_to  # where the connection really opens (the endpoint map applied)
        self.username = username
        self._password = password

    def password(self) -> str:
        return self._password

    def __repr__(self) -> str:  # never the password
        return f"ReadyDatabase({self.db.arn!r}, user={self.username!r})"


def read_secret(client_of: ClientOf, arn: str, connector_id: str, host: str = "") -> tuple[str, str]:
    """(username, password) from a Secrets Manager secret, read with the member role of the database's account
    in the secret's region. Raises DatabaseUnusable naming the fix; the secret's content is never in a message."""
    region = arn.split(":")[3]
    try:
        value = client_of("secretsmanager", region).get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            raise DatabaseUnusable(
                "SecretNotFound", f"the secret {arn} in tag {TAG_SECRET} does not exist", f"fix the {TAG_SECRET} tag"
            ) from None
        if code in ("AccessDeniedException", "AccessDenied"):
            raise DatabaseUnusable(
                "SecretAccessDenied",
                f"the connector may not read the secret {arn}",
                f"tag the secret {TAG_CONNECTOR} = {connector_id} (the connector reads only secrets tagged so), and "
                "if it is encrypted with a customer-managed KMS key, let the member role decrypt with it",
            ) from None
        raise DatabaseUnusable(code, f"reading the secret {arn} failed ({code})", "the next sync retries it") from None
    except BotoCoreError as exc:
        raise DatabaseUnusable(
            type(exc).__name__, f"reading the secret {arn} failed", "the next sync retries it"
        ) from None
    try:
        data = json.loads(value.get("SecretString") or "")
        username, password = data["username"], data["password"]
        if not (isinstance(username, str) and isinstance(password, str) and username and password):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise DatabaseUnusable(
            "SecretMalformed",
            f"the secret {arn} is not JSON with string fields username and password",
            'store the connector user as {"username": "...", "password": "..."}',
        ) from None
    named = data.get("host")
    if host and isinstance(named, str) and named and named.lower().rstrip(".") != host.lower().rstrip("."):
        # A tag must not be able to hand one database's login to another server.
        raise DatabaseUnusable(
            "SecretForAnotherHost",
            f"the secret {arn} is for host {named[:253]}, not {host}",
            f"point {TAG_SECRET} at this database's own secret",
        )
    register_secret(password)
    return username, password


class DatabaseScope:
    """The database part of one (account, region): what `OrgSync` runs as a scope task."""

    def __init__(
        self,
        connector_id: str,
        client_of: ClientOf,
        resolve: Callable[[str, int], tuple[str, int]],
        kinds: frozenset[str],
        contents: ContentsOf | None = None,
    ) -> None:
        self.connector_id = connector_id
        self.client_of = client_of
        self.resolve = resolve
        self.kinds = kinds
        self.contents = contents

    def items(self, account_id: str, region: str) -> Iterator[InventoryItem]:
        cluster_arns: dict[str, str] = {}
        if "rds_cluster" in self.kinds or "rds_instance" in self.kinds:
            rds = self.client_of("rds", region)
            if "rds_cluster" in self.kinds:
                for db in clusters(rds, account_id, region):
                    cluster_arns[db.identifier] = db.arn
                    yield db.item(self.connector_id)
                    yield from self.managed(db)
            if "rds_instance" in self.kinds:
                for db in instances(rds, account_id, region):
                    yield with_parent(db.item(self.connector_id), cluster_arns.get(db.cluster_id, ""))
                    yield from self.managed(db)
        if "redshift_cluster" in self.kinds:
            for db in redshift_clusters(self.client_of("redshift", region), account_id, region):
                yield db.item(self.connector_id)
                yield from self.managed(db)

    def managed(self, db: DiscoveredDatabase) -> Iterator[InventoryItem]:
        """Nothing for a database not tagged for this connector; else its contents, or its error item."""
        if not db.managed_by(self.connector_id):
            return
        try:
            ready = self.ready(db)
            if self.contents is not None:
                yield from self.contents(db, ready)
        except DatabaseUnusable as exc:
            log.warning("database_unusable", database=db.arn, error_code=exc.code)
            yield error_item(db, exc.code, str(exc), exc.hint)
        except ConnectorError as exc:  # messages name the fix and hold no secret
            log.warning("database_unusable", database=db.arn, error_code=str(exc.code))
            yield error_item(db, str(exc.code), exc.message, "see the message; the next sync retries it")
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            log.warning("database_unusable", database=db.arn, error_code=code)
            yield error_item(db, code, f"an AWS call for {db.identifier} failed ({code})", "the next sync retries it")
        except Exception as exc:  # one database's surprise must not end the sync; its text may hold anything
            log.warning("database_inventory_crashed", database=db.arn, error=type(exc).__name__)
            yield error_item(
                db,
                "INTERNAL",
                f"listing {db.identifier} failed ({type(exc).__name__})",
                "report it; the next sync retries it",
            )

    def ready(self, db: DiscoveredDatabase) -> ReadyDatabase:
        problem = db.tag_problem()
        if problem is not None:
            raise DatabaseUnusable(problem.code, problem.message, problem.hint)
        if not db.address or not db.port:
            raise DatabaseUnusable(
                "NoEndpoint",
                f"{db.identifier} has no endpoint yet (status {db.status or 'unknown'})",
                "the next sync retries it once the database is available",
            )
        username = password = ""
        if db.auth_type == "user-password":
            username, password = read_secret(self.client_of, db.secret_arn, self.connector_id, db.address)
        return ReadyDatabase(db, self.resolve(db.address, db.port), username, password)
