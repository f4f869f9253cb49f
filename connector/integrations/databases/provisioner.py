"""The database kind: a database user per grant. Provisioner and ExpiryScanner of the postgresql, mysql and
redshift integration types (target resource_type `database`).

Target: {"database": name (default: the integration's), "schema": name, "table": name,
         "level": "read-only" | "read-write" | "admin"  or  "role": an existing role,
         "credentials": "reset" (optional: every delivery makes a new password anyway)}

describe reads what the grant reaches from the server (the objects, and for a role what it amounts to:
administrator attributes or roles anywhere in its memberships, privileges it may pass on, writes) and says
so as the Effect the guardrails judge: admin level is refused by the default policy, `resources` rules see
every object as `host:port/database/schema[/table]`.

grant makes the user `ac_<hash of the grant id>` inside the connector's marker role with its grant record
(PostgreSQL: a comment on the role, in the same transaction; MySQL and Redshift: a row in the connector's
table, written first), then grants the privileges. The password is made here (secrets.token_urlsafe) and
leaves the connector only sealed to the requester's key; a re-delivery makes a new one (the earlier one stops
working), so reset-credentials is the same path. With IAM authentication there is no password: the user is
made for IAM (rds_iam / AWSAuthenticationPlugin), and the result names the `rds-db:connect` resource that
the IAM kind grants the requester's principal.

revoke leaves no way back in (engine.revoke): login stopped, sessions ended, privileges revoked, user
dropped; a user that owns objects stays deactivated (no login, no memberships) and is reported, and dropped by
the expiry loop once `user_cleanup_days` have passed. Every step repeats safely; a user that is gone is
success.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from connector.aws.partitions import partition_of
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import ledger
from connector.integrations.base import GrantRequest, JobContext, RevokeRequest
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan
from connector.integrations.databases.engine import (
    RECORD_PREFIX,
    RECORDS_NAME,
    DbObject,
    Engine,
    ManagedUser,
    NewUser,
    Privileges,
)
from connector.integrations.databases.identifiers import (
    MYSQL_MAX,
    PG_MAX,
    USER_PREFIX,
    AccessLevel,
    check_identifier,
    shown,
    user_name_for,
)
from connector.integrations.databases.integration import RESOURCE_TYPE, DatabaseIntegration
from connector.integrations.databases.settings import DatabaseSettings
from connector.integrations.effect import Effect
from connector.logging import get_logger
from connector.sealing import require_public_key, seal

log = get_logger("connector.integrations.databases")

FIELDS = frozenset({"resource_type", "database", "schema", "table", "level", "role", "credentials", "user"})
RECORD_LIMIT = 4000  # bytes of a record (Redshift's column; PostgreSQL comments and MySQL TEXT hold more)
PASSWORD_BYTES = 24  # secrets.token_urlsafe: 32 characters, 192 bits


def parse_target(
    target: Mapping[str, Any], engine: str, default_database: str, *, for_revoke: bool = False
) -> Privileges:
    unknown = sorted(set(target) - FIELDS)
    if unknown:
        raise InvalidJob(
            f"target.{shown(str(unknown[0]))}: unknown field; a database target takes {sorted(FIELDS - {'user'})}"
        )
    max_bytes = MYSQL_MAX if engine == "mysql" else PG_MAX
    names: dict[str, str] = {}
    for key in ("database", "schema", "table", "role"):
        value = target.get(key)
        if value is None or value == "":
            continue
        names[key] = check_identifier(value, f"target.{key}", max_bytes=max_bytes)
    database = names.get("database") or default_database
    if "table" in names and "schema" not in names and engine != "mysql":
        raise InvalidJob("target.schema: a table is named with its schema")
    on = DbObject(database, names.get("schema", ""), names.get("table", ""))
    own = (
        "database" if engine == "mysql" and database == RECORDS_NAME else "schema" if on.schema == RECORDS_NAME else ""
    )
    if own and not for_revoke:
        raise InvalidJob(f"target.{own}: {RECORDS_NAME} holds the connector's own grant records and is never granted")
    level_raw, role = target.get("level"), names.get("role", "")
    if role and level_raw is not None:
        raise InvalidJob("target.level: give a level or an existing role, not both")
    if role:
        return Privileges(on, role=role)
    if for_revoke and level_raw is None:
        return Privileges(on, level=AccessLevel.READ_ONLY)  # a revoke takes away everything it finds anyway
    try:
        level = AccessLevel(str(level_raw))
    except ValueError:
        raise InvalidJob(
            f"target.level must be one of {[str(v) for v in AccessLevel]} (or give an existing role), "
            f"not {shown(str(level_raw))}"
        ) from None
    credentials = target.get("credentials")
    if not for_revoke and credentials not in (None, "reset", "create"):
        raise InvalidJob("target.credentials must be 'reset' (or absent)")
    return Privileges(on, level=level)


def record_fields(request: GrantRequest | RevokeRequest, privileges: Privileges) -> dict[str, Any]:
    on = privileges.on
    fields: dict[str, Any] = {"grant_id": request.grant_id, "principal": request.principal, "database": on.database}
    if on.schema:
        fields["schema"] = on.schema
    if on.table:
        fields["table"] = on.table
    if privileges.role:
        fields["role"] = privileges.role
    elif privileges.level is not None:
        fields["level"] = str(privileges.level)
    return fields


def encode_record(expires_at: datetime | None, fields: Mapping[str, Any]) -> str:
    return RECORD_PREFIX + ledger.encode_json(
        expires_at, fields, limit=RECORD_LIMIT, what="the database grant's record"
    )


def decode_record(found: ManagedUser) -> ledger.Record:
    if found.record is None:
        return ledger.Record(None, {}, "the user has no grant record")
    return ledger.decode_json(found.record.removeprefix(RECORD_PREFIX))


def _target_of(fields: Mapping[str, Any]) -> dict[str, Any]:
    target: dict[str, Any] = {"resource_type": RESOURCE_TYPE}
    for key in ("database", "schema", "table", "level", "role"):
        value = fields.get(key)
        if isinstance(value, str) and value:
            target[key] = value
    return target


class DatabaseHandle(Protocol):
    """What the kind needs of a database: its settings, its engine, and what to do when our login is refused.
    A DatabaseIntegration is one; a database found by tag discovery can be another (`StaticDatabase`)."""

    @property
    def db(self) -> DatabaseSettings: ...

    def engine(self) -> Engine: ...

    def login_refused(self, exc: ConnectorError) -> None: ...


@dataclass
class StaticDatabase:
    """A DatabaseHandle from plain values: settings, an engine (connect.engine_for / open_engine), and an
    optional hook run when the database refuses the connector's login (e.g. SecretResolver.forget)."""

    db: DatabaseSettings
    engine_: Engine
    on_login_refused: Callable[[], None] | None = None

    def engine(self) -> Engine:
        return self.engine_

    def login_refused(self, exc: ConnectorError) -> None:
        if exc.code is ErrorCode.ACCESS_DENIED and self.on_login_refused is not None:
            self.on_login_refused()


class DatabaseGrants:
    """The kind. Made from a DatabaseIntegration by the registry, or from any DatabaseHandle."""

    def __init__(self, integration: DatabaseIntegration | DatabaseHandle) -> None:
        self.integration = integration
        self.settings = integration.db

    def _engine(self) -> Engine:
        return self.integration.engine()

    def _call(self, what: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return what(*args, **kwargs)
        except ConnectorError as exc:
            self.integration.login_refused(exc)
            raise

    @property
    def iam(self) -> bool:
        return self.settings.users_iam

    def user_of(self, grant_id: str) -> str:
        if not grant_id:
            raise InvalidJob("grant.grant_id is required")
        return user_name_for(grant_id, max_length=self._engine().user_name_max)

    # -- Provisioner -------------------------------------------------------------------------------------
    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        if "user" in request.target:
            raise InvalidJob("target.user: unknown field; the connector names the users it makes")
        privileges = parse_target(request.target, self.settings.engine, self.settings.effective_database)
        if not self.iam:
            require_public_key(request.requester_public_key)  # the password must be sealable: check first
        user = self.user_of(request.grant_id)
        encode_record(request.expires_at, record_fields(request, privileges) | {"state": "active"})  # fits?
        resolved, objects = self._call(self._engine().resolve, privileges)
        extra = {
            "engine": self.settings.engine,
            "address": self.settings.address,
            "database_user": user,
            "authentication": "iam" if self.iam else "password",
            "object": privileges.on.path(),
            "scope": privileges.on.scope,
        }
        extra |= {"role": privileges.role} if privileges.role else {"level": str(privileges.level)}
        return Effect(
            kind=RESOURCE_TYPE,
            principal=request.principal,
            level=resolved.level,
            expires_at=request.expires_at,
            reasons=resolved.reasons,
            account_id=self.settings.account_id,
            region=self.settings.region,
            resources=objects,
            extra=extra,
        )

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        privileges = parse_target(request.target, self.settings.engine, self.settings.effective_database)
        user = effect.extra["database_user"]
        base: dict[str, Any] = {
            "grant_id": request.grant_id,
            "engine": self.settings.engine,
            "address": self.settings.address,
            "database": privileges.on.database,
            "database_user": user,
        }
        if request.dry_run:
            steps = [f"create user {user} in role {self.settings.marker_role} with the grant record", *(
                [f"grant role {privileges.role}"] if privileges.role else [f"grant {privileges.level} on {privileges.on.path()}"]
            )]  # fmt: skip
            return base | {"dry_run": True, "steps": steps}
        engine = self._engine()
        record = encode_record(
            request.expires_at, record_fields(request, privileges) | {"state": "active", "attempt": str(ctx.attempt)}
        )
        password = None if self.iam else secrets.token_urlsafe(PASSWORD_BYTES)
        self._newest_delivery(engine, user, ctx.attempt)
        ctx.check_cancelled()
        rotate = self.settings.credential_rotation_days
        valid_until = request.expires_at
        if rotate is not None and password is not None:  # the login ends at the rotation date unless reset first
            rotation_end = datetime.now(UTC) + timedelta(days=rotate)
            valid_until = rotation_end if valid_until is None else min(valid_until, rotation_end)
        new_user = NewUser(user, password, valid_until, record, rotate if password is not None else None)
        created = self._call(engine.create_user, new_user, self.iam)
        try:
            ctx.check_cancelled()
            done = self._call(engine.grant, user, privileges)
        except Exception:
            # No half-made access: the user goes again (its record stays for the expiry loop if this fails too).
            try:
                engine.revoke(user, privileges, cleanup=False, deactivated_record=record)
            except Exception as undo:
                code = undo.code if isinstance(undo, ConnectorError) else type(undo).__name__
                log.warning(
                    "database_grant_rollback_failed", grant_id=request.grant_id, user=user, error_code=str(code)
                )
            raise
        result = base | {"created": bool(created), "privileges": done}
        if password is not None:
            login = {
                "engine": self.settings.engine,
                "host": self.settings.host,
                "port": self.settings.effective_port,
                "database": privileges.on.database,
                "username": user,
                "password": password,
                "ssl_mode": self.settings.ssl_mode,
            }
            result["credentials"] = seal(request.requester_public_key, login)  # only the requester opens it
        else:
            result["iam"] = self._iam_access(user)
        log.info(
            "database_grant_applied",
            grant_id=request.grant_id,
            user=user,
            engine=self.settings.engine,
            created=bool(created),
        )
        return result

    def _newest_delivery(self, engine: Engine, user: str, attempt: int) -> None:
        """An older delivery of this grant (a replica cut off while the control plane re-leased the job) must not
        replace the password a newer one handed out: the control plane accepts only the newest attempt's result."""
        found = self._call(engine.record_of, user)
        if found is None:
            return
        recorded = decode_record(found).fields.get("attempt")
        if isinstance(recorded, str) and recorded.isdigit() and int(recorded) > attempt:
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"a newer delivery (attempt {recorded}) of this grant already made its user; this one (attempt "
                f"{attempt}) leaves it alone",
                retryable=False,
            )

    def _iam_access(self, user: str) -> dict[str, Any]:
        """What the requester's principal needs for IAM login: rds-db:connect on exactly this user (granted by
        the IAM kind, iam_resource_access, with this ARN as its resource)."""
        s = self.settings
        out: dict[str, Any] = {"db_user": user, "host": s.host, "port": s.effective_port, "region": s.region}
        if s.resource_id and s.account_id and s.region:
            out["rds_db_connect_resource"] = (
                f"arn:{partition_of(s.region)}:rds-db:{s.region}:{s.account_id}:dbuser:{s.resource_id}/{user}"
            )
        else:
            out["note"] = "set account_id and resource_id (the DbiResourceId) to get the rds-db:connect ARN"
        return out

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        engine = self._engine()
        named = request.target.get("user")
        if named is not None:  # the expiry loop's revoke of a user whose record it could not read
            user = check_identifier(named, "target.user")
            if not user.startswith(USER_PREFIX):
                raise InvalidJob("target.user: only users the connector made (ac_...) can be named")
        else:
            user = self.user_of(request.grant_id)
        privileges = parse_target(
            {k: v for k, v in request.target.items() if k != "user"},
            self.settings.engine,
            self.settings.effective_database,
            for_revoke=True,
        )
        found = self._call(engine.record_of, user)
        record = decode_record(found) if found is not None else ledger.Record(None, {}, "none")
        fields = dict(record.fields) if not record.problem else record_fields(request, privileges)
        if not record.problem and (fields.get("level") or fields.get("role")):
            # Revoke what was really granted, as recorded (a revoke job may carry less).
            privileges = parse_target(
                _target_of(fields), self.settings.engine, self.settings.effective_database, for_revoke=True
            )
        base = {"grant_id": request.grant_id, "database_user": user, "engine": self.settings.engine}
        if request.dry_run:
            return base | {"dry_run": True, "steps": ["stop logins", "end sessions", "revoke privileges", "drop user"]}
        cleanup = self._cleanup_due(fields, time.time())
        deactivated = encode_record(
            datetime.fromtimestamp(record.expires_epoch, UTC) if record.expires_epoch is not None else None,
            {**fields, "state": "deactivated", "deactivated_at": str(fields.get("deactivated_at") or int(time.time()))},
        )
        ctx.check_cancelled()
        outcome = self._call(engine.revoke, user, privileges, cleanup=cleanup, deactivated_record=deactivated)
        if outcome.deactivated:
            log.warning(
                "database_user_deactivated", grant_id=request.grant_id, user=user, reason=outcome.reason,
                cleanup_days=self.settings.user_cleanup_days,
            )  # fmt: skip
        else:
            log.info("database_grant_revoked", grant_id=request.grant_id, user=user, existed=outcome.existed)
        return base | {
            "existed": outcome.existed,
            "dropped": outcome.dropped,
            "deactivated": outcome.deactivated,
            "reason": outcome.reason,
            "sessions_ended": outcome.sessions_ended,
            "steps": outcome.steps,
        }

    def _cleanup_due(self, fields: Mapping[str, Any], now: float) -> bool:
        days = self.settings.user_cleanup_days
        since = fields.get("deactivated_at")
        if days is None or fields.get("state") != "deactivated" or not isinstance(since, str) or not since.isdigit():
            return False
        return int(since) + days * 86400 <= now

    # -- ExpiryScanner -----------------------------------------------------------------------------------
    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        """Every user in the marker role, with its record: expired, undecodable (treated as expired), or
        deactivated and due for cleanup."""
        place = f"{self.settings.engine}://{self.settings.address}"
        for found in self._call(lambda: list(self._engine().managed_users())):
            scan.check()
            record = decode_record(found)
            fields = record.fields
            if not record.problem and fields.get("state") == "deactivated":
                if not self._cleanup_due(fields, scan.now):
                    continue
            elif not record.expired(scan.now):
                continue
            grant_id, principal = str(fields.get("grant_id", "")), str(fields.get("principal", ""))
            readable = not record.problem and grant_id and user_name_for(grant_id, max_length=64) == found.name
            target = _target_of(fields) if readable else {"resource_type": RESOURCE_TYPE, "user": found.name}
            yield ExpiredGrant(
                place=f"{place}/{found.name}",
                grant_key=ledger.grant_key(grant_id) if readable else found.name,
                expires_epoch=record.expires_epoch,
                problem=record.problem,
                request=RevokeRequest(
                    grant_id=grant_id if readable else found.name, principal=principal, target=target
                ),
            )
