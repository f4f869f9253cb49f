"""PostgreSQL (RDS, Aurora PostgreSQL, self-managed) through psycopg 3. Every name reaches SQL through
`psycopg.sql.Identifier` / `sql.Literal`, after identifiers.check_identifier.

The connector's login needs CREATEROLE (to make and drop users), membership of pg_signal_backend (to end a
revoked user's sessions; rds_superuser has it) and the privileges it hands out WITH GRANT OPTION, or
ownership (rds_superuser on RDS). Users are made in one transaction with their marker membership and their
grant record (COMMENT ON ROLE), so a user never exists without the record the expiry loop reads; the
password goes over as a SCRAM verifier computed here (libpq's PQencryptPasswordConn), so the plain password
never reaches the server, its statement log or pg_stat_statements. VALID UNTIL is the grant's expiry: even
with the connector gone, the server refuses the login after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import InventoryItem
from connector.integrations.databases.engine import (
    RECORD_PREFIX,
    RECORDS_NAME,
    DbObject,
    IdleConnections,
    ManagedUser,
    NewUser,
    Privileges,
    RevokeOutcome,
    RoleLevel,
    not_ours,
)
from connector.integrations.databases.identifiers import PG_MAX, AccessLevel
from connector.integrations.databases.secrets import DbCredentials
from connector.integrations.databases.settings import DatabaseSettings
from connector.integrations.effect import Level
from connector.logging import redact_text

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
# Role attributes and predefined roles that amount to administrator level (or the power to get it).
ADMIN_ATTRIBUTES = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
ADMIN_ROLES = frozenset(
    {
        "rds_superuser",
        "rds_replication",
        "rds_password",
        "rdsadmin",
        "pg_execute_server_program",
        "pg_read_server_files",
        "pg_write_server_files",
        "pg_signal_backend",
        "pg_monitor",
        "pg_checkpoint",
        "pg_database_owner",
        "azure_pg_admin",
        "cloudsqlsuperuser",
    }
)
READ_ROLES = frozenset({"pg_read_all_data", "pg_read_all_settings", "pg_read_all_stats", "pg_stat_scan_tables"})
WRITE_ROLES = frozenset({"pg_write_all_data"})
TABLE_PRIVILEGES = {
    AccessLevel.READ_ONLY: ("SELECT",),
    AccessLevel.READ_WRITE: ("SELECT", "INSERT", "UPDATE", "DELETE"),
    AccessLevel.ADMIN: ("ALL",),
}
SEQUENCE_PRIVILEGES = {
    AccessLevel.READ_ONLY: ("SELECT",),
    AccessLevel.READ_WRITE: ("USAGE", "SELECT", "UPDATE"),
    AccessLevel.ADMIN: ("ALL",),
}
WRITE_PRIVILEGES = frozenset({"INSERT", "UPDATE", "DELETE", "TRUNCATE", "CREATE", "TEMPORARY", "TEMP"})
CONNECT_TIMEOUT = 10
TERMINATE_WAIT_MS = 5000
RETRY_STATES = frozenset({"40001", "40P01", "55P03", "2BP01", "42710", "23505"})


def _keywords(privs: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(p) for p in privs)  # fixed words from the tables above, never input


def db_error(exc: Exception, what: str) -> ConnectorError:
    """A driver failure as a typed error: the SQLSTATE, the server's first line (redacted) and the fix."""
    if isinstance(exc, ConnectorError):
        return exc
    state = getattr(exc, "sqlstate", None) or ""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).splitlines()[0] if str(exc) else ""
    text = redact_text(str(primary))[:300]
    if state in ("28P01", "28000") or (isinstance(exc, psycopg.OperationalError) and "authentication failed" in text):
        return ConnectorError(
            ErrorCode.ACCESS_DENIED,
            f"{what}: the database refused the connector's login ({text}); check the secret's username and "
            "password (or, with iam-auth, that the user has rds_iam and the role rds-db:connect)",
            retryable=False,
        )
    if state == "42501":
        return ConnectorError(
            ErrorCode.ACCESS_DENIED,
            f"{what}: the connector's database user lacks a privilege ({text}); it needs CREATEROLE, "
            "pg_signal_backend and the privileges it grants (rds_superuser on RDS)",
            retryable=False,
        )
    if state in ("3D000", "42P01", "3F000", "42704"):
        return ConnectorError(ErrorCode.NOT_FOUND, f"{what}: {text}", retryable=False)
    # Serialization, deadlock, lock, another replica making the same role at the same moment, or catalogue rows
    # changed under a concurrent GRANT ("tuple concurrently updated"): a retry sees the settled state.
    if state in RETRY_STATES or (state == "XX000" and "concurrently" in text):
        return ConnectorError(ErrorCode.CONFLICT, f"{what}: {text} (SQLSTATE {state}); retry", retryable=True)
    if isinstance(exc, psycopg.OperationalError):
        return ConnectorError(
            ErrorCode.UNAVAILABLE,
            f"{what}: cannot reach the database ({text}); check the host, port, ssl_mode and that the connector's "
            "network (security group, VPC) reaches it",
            retryable=True,
        )
    return ConnectorError(ErrorCode.INTERNAL, f"{what}: {type(exc).__name__} {state} {text}".strip(), retryable=False)


class PostgresEngine:
    name = "postgresql"
    user_name_max = PG_MAX
    item_prefix = "postgresql"
    has_sequences = True

    def __init__(
        self,
        settings: DatabaseSettings,
        credentials: Callable[[], DbCredentials],
        endpoint: tuple[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self._credentials = credentials
        self.endpoint = endpoint or (settings.host, settings.effective_port)
        self.marker = settings.marker_role
        self._idle: IdleConnections[psycopg.Connection[Any]] = IdleConnections(_usable, lambda c: c.close())

    # -- connections ------------------------------------------------------------------------------------
    def conninfo(self, database: str, creds: DbCredentials) -> dict[str, Any]:
        host, port = self.endpoint
        info: dict[str, Any] = {
            "port": port,
            "user": creds.username,
            "password": creds.password,
            "dbname": database,
            "sslmode": self.settings.ssl_mode,
            "connect_timeout": CONNECT_TIMEOUT,
            "application_name": "access-connector",
        }
        if self.settings.ssl_ca_file:
            info["sslrootcert"] = self.settings.ssl_ca_file
        if host != self.settings.host and _is_ip(host):
            # Reached through a mapped address: TLS still checks the real host name (verify-full).
            info |= {"host": self.settings.host, "hostaddr": host}
        else:
            info["host"] = host
        return info

    @contextlib.contextmanager
    def connect(self, database: str | None = None, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
        database = database or self.settings.effective_database
        conn = self._idle.take(database) if autocommit else None
        if conn is None:
            try:
                conn = psycopg.connect(**self.conninfo(database, self._credentials()), autocommit=autocommit)
            except Exception as exc:
                raise db_error(exc, f"connecting to {self.settings.address}/{database}") from None
        try:
            yield conn
        except psycopg.Error as exc:
            conn.close()
            raise db_error(exc, f"{self.settings.address}/{database}") from None
        except BaseException:
            conn.close()
            raise
        if autocommit:
            self._idle.give(database, conn)
        else:
            conn.close()

    def check(self) -> dict[str, object]:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT current_user, rolcreaterole, rolsuper, pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')"
                " FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
        assert row is not None
        return {"user": row[0], "createrole": bool(row[1]), "superuser": bool(row[2]), "signal_backend": bool(row[3])}

    # -- inventory --------------------------------------------------------------------------------------
    def _databases(self, conn: psycopg.Connection[Any]) -> list[str]:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
            "AND datname NOT IN ('rdsadmin') AND has_database_privilege(datname, 'CONNECT') ORDER BY datname"
        ).fetchall()
        return [r[0] for r in rows]

    def inventory(self, check: Callable[[], None], limit: int) -> Iterator[InventoryItem]:
        """Databases, schemas, tables and roles, streamed (a server-side cursor per database) and bounded."""
        address, kind = self.settings.address, self.item_prefix
        emitted = 0
        with self.connect() as conn:
            databases = self._databases(conn)
            yield from self._roles(conn, address)
        for database in databases:
            check()
            db_id = f"{address}/{database}"
            yield InventoryItem(type=f"{kind}.database", id=db_id, name=database, attributes={"address": address})
            emitted += 1
            try:
                with self.connect(database, autocommit=False) as conn:
                    for schema, owner in conn.execute(
                        "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname <> ALL(%s) "
                        "AND nspname NOT LIKE 'pg\\_temp\\_%%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' "
                        "ORDER BY nspname",
                        (list(SYSTEM_SCHEMAS),),
                    ).fetchall():
                        yield InventoryItem(
                            type=f"{kind}.schema", id=f"{db_id}/{schema}", name=schema, parent_id=db_id,
                            attributes={"owner": owner},
                        )  # fmt: skip
                        emitted += 1
                    with conn.cursor(name="ac_inventory") as cur:
                        cur.itersize = 2000
                        cur.execute(
                            "SELECT n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','f') "
                            "AND n.nspname <> ALL(%s) ORDER BY 1, 2",
                            (list(SYSTEM_SCHEMAS),),
                        )
                        for schema, table, relkind, owner in cur:
                            if emitted >= limit:
                                yield _truncated(kind, address, limit)
                                return
                            if emitted % 500 == 0:
                                check()
                            yield InventoryItem(
                                type=f"{kind}.table", id=f"{db_id}/{schema}/{table}", name=table,
                                parent_id=f"{db_id}/{schema}", attributes={"kind": _RELKIND.get(relkind, relkind), "owner": owner},
                            )  # fmt: skip
                            emitted += 1
            except ConnectorError as exc:
                yield InventoryItem(
                    type="error", id=f"{db_id}#inventory", name=database, parent_id=db_id,
                    attributes={"stage": "database", "error_code": str(exc.code), "error": exc.message},
                )  # fmt: skip

    def _roles(self, conn: psycopg.Connection[Any], address: str) -> Iterator[InventoryItem]:
        rows = conn.execute(
            "SELECT r.rolname, r.rolcanlogin, r.rolsuper, pg_has_role(r.oid, m.oid, 'MEMBER') FROM pg_roles r "
            "LEFT JOIN pg_roles m ON m.rolname = %s WHERE r.rolname NOT LIKE 'pg\\_%%' ORDER BY r.rolname",
            (self.marker,),
        ).fetchall()
        for name, can_login, superuser, managed in rows:
            if name == self.marker:
                continue
            yield InventoryItem(
                type=f"{self.item_prefix}.role", id=f"{address}/role/{name}", name=name,
                attributes={"login": bool(can_login), "superuser": bool(superuser), "managed": bool(managed)},
            )  # fmt: skip

    # -- what a grant reaches ---------------------------------------------------------------------------
    def resolve(self, privileges: Privileges) -> tuple[RoleLevel, tuple[str, ...]]:
        """The level and the objects a grant reaches, read from the server (reads only). A missing object
        is NOT_FOUND: a grant on it would give nothing, or fail half-way."""
        on = privileges.on
        with self.connect(on.database) as conn:
            schemas = self._schemas(conn, on)
            if on.table:
                row = conn.execute(
                    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r','p','v','m','f')",
                    (on.schema, on.table),
                ).fetchone()
                if row is None:
                    raise ConnectorError(
                        ErrorCode.NOT_FOUND, f"table {on.schema}.{on.table} does not exist in database {on.database}",
                        retryable=False,
                    )  # fmt: skip
            objects = tuple(
                f"{self.settings.address}/{on.database}/{s}" + (f"/{on.table}" if on.table else "") for s in schemas
            )
            if privileges.role:
                return self._role_level(conn, privileges.role), objects or (f"{self.settings.address}/{on.database}",)
        assert privileges.level is not None
        level = {
            AccessLevel.READ_ONLY: Level.READ,
            AccessLevel.READ_WRITE: Level.WRITE,
            AccessLevel.ADMIN: Level.ADMIN,
        }[privileges.level]
        reasons = (f"{privileges.level} on {on.scope} {on.path()}",)
        return RoleLevel(level, reasons), objects or (f"{self.settings.address}/{on.database}",)

    def _schemas(self, conn: psycopg.Connection[Any], on: DbObject) -> list[str]:
        if on.schema:
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (on.schema,)).fetchone() is None:
                raise ConnectorError(
                    ErrorCode.NOT_FOUND, f"schema {on.schema} does not exist in database {on.database}", retryable=False
                )
            return [on.schema]
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) AND nspname NOT LIKE 'pg\\_%%' ORDER BY 1",
            ([*SYSTEM_SCHEMAS, RECORDS_NAME],),
        ).fetchall()
        return [r[0] for r in rows]

    def _role_level(self, conn: psycopg.Connection[Any], role: str) -> RoleLevel:
        """What membership of an existing role amounts to: admin for admin attributes or roles (through any
        chain of memberships) or privileges it may pass on; write for write privileges; read otherwise."""
        row = conn.execute(
            "SELECT oid, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()
        if row is None:
            raise ConnectorError(ErrorCode.NOT_FOUND, f"role {role} does not exist", retryable=False)
        if role == self.marker or conn.execute(
            "SELECT pg_has_role(%s, m.oid, 'MEMBER') FROM pg_roles m WHERE m.rolname = %s", (row[0], self.marker)
        ).fetchone() in ((True,),):
            raise ConnectorError(
                ErrorCode.INVALID_JOB, f"role {role} is the connector's own (its marker role, or a user it made)",
                retryable=False,
            )  # fmt: skip
        # Every role it reaches through memberships (pg_has_role MEMBER follows the whole chain).
        reached = conn.execute(
            "SELECT r.rolname, r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls "
            "FROM pg_roles r WHERE pg_has_role(%s, r.oid, 'MEMBER')",
            (row[0],),
        ).fetchall()
        reasons: list[str] = []
        for name, admin_attr in reached:
            if admin_attr:
                reasons.append(
                    f"role {name} has administrator attributes (SUPERUSER/CREATEROLE/CREATEDB/REPLICATION/BYPASSRLS)"
                )
            elif name in ADMIN_ROLES:
                reasons.append(f"role {name} is administrator level")
        if (
            conn.execute("SELECT 1 FROM pg_auth_members WHERE member = %s AND admin_option", (row[0],)).fetchone()
            is not None
        ):
            reasons.append(f"role {role} may grant its roles on (WITH ADMIN OPTION)")
        names = [r[0] for r in reached]
        grants = conn.execute(
            "SELECT DISTINCT privilege_type, is_grantable FROM information_schema.role_table_grants WHERE grantee = ANY(%s)",
            (names,),
        ).fetchall()
        owns = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = ANY(%s) "
            "AND c.relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname = ANY(%s))",
            (names, list(SYSTEM_SCHEMAS)),
        ).fetchone()
        if owns and owns[0]:
            reasons.append(f"role {role} owns {owns[0]} objects (full control of them)")
        if any(g == "YES" for _, g in grants):
            reasons.append(f"role {role} may grant its privileges on (WITH GRANT OPTION)")
        if reasons:
            return RoleLevel(Level.ADMIN, tuple(reasons))
        db_create = conn.execute(
            "SELECT bool_or(has_database_privilege(r.oid, current_database(), 'CREATE')) FROM pg_roles r "
            "WHERE r.rolname = ANY(%s) AND NOT r.rolsuper",
            (names,),
        ).fetchone()
        writes = sorted({p for p, _ in grants if p in WRITE_PRIVILEGES} | set(WRITE_ROLES.intersection(names)))
        if writes or (db_create and db_create[0] and role != "public"):
            return RoleLevel(Level.WRITE, (f"role {role} can write ({', '.join(writes) or 'CREATE in the database'})",))
        return RoleLevel(Level.READ, (f"role {role} can only read",))

    # -- users --------------------------------------------------------------------------------------------
    def _verifier(self, conn: psycopg.Connection[Any], user: str, password: str) -> str:
        return conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256").decode()

    def _ensure_marker(self, conn: psycopg.Connection[Any]) -> None:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.marker,)).fetchone() is not None:
            return
        with contextlib.suppress(pg_errors.DuplicateObject, pg_errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(self.marker)))

    def _ours(self, conn: psycopg.Connection[Any], user: str) -> bool | None:
        """None: no such user. True: a member of the marker role. False: someone else's."""
        row = conn.execute(
            "SELECT pg_has_role(r.oid, m.oid, 'MEMBER') FROM pg_roles r LEFT JOIN pg_roles m ON m.rolname = %s "
            "WHERE r.rolname = %s",
            (self.marker, user),
        ).fetchone()
        return None if row is None else bool(row[0])

    def _valid_until(self, valid_until: datetime | None) -> sql.Composable:
        return sql.Literal("infinity" if valid_until is None else valid_until.isoformat())

    def create_user(self, user: NewUser, iam: bool) -> bool:
        name = sql.Identifier(user.name)
        with self.connect() as conn:
            self._ensure_marker(conn)
            ours = self._ours(conn, user.name)
            if ours is False:
                raise not_ours(user.name, self.marker)
            with conn.transaction():  # user, marker membership and record: all or nothing
                password = (
                    sql.SQL("PASSWORD NULL")
                    if user.password is None
                    else sql.SQL("PASSWORD {}").format(sql.Literal(self._verifier(conn, user.name, user.password)))
                )
                attrs = sql.SQL(
                    "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT {} VALID UNTIL {}"
                ).format(password, self._valid_until(user.valid_until))
                if ours is None:
                    conn.execute(sql.SQL("CREATE ROLE {} WITH ").format(name) + attrs)
                    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(self.marker), name))
                else:  # a re-delivery: a new password (the earlier delivery's stops working); only we made it
                    conn.execute(
                        sql.SQL("ALTER ROLE {} WITH LOGIN {} VALID UNTIL {}").format(
                            name, password, self._valid_until(user.valid_until)
                        )
                    )
                conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(name, sql.Literal(user.record)))
                if iam:
                    self._grant_iam(conn, user.name)
        return ours is None

    def _grant_iam(self, conn: psycopg.Connection[Any], user: str) -> None:
        """RDS IAM authentication: membership of rds_iam (exists only on RDS / Aurora)."""
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'").fetchone() is None:
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                "this server has no rds_iam role: IAM database authentication exists only on RDS and Aurora "
                "PostgreSQL with IAM authentication enabled; use auth_type user-password",
                retryable=False,
            )
        conn.execute(sql.SQL("GRANT rds_iam TO {}").format(sql.Identifier(user)))

    def set_password(self, user: str, password: str, valid_until: datetime | None, record: str) -> None:
        with self.connect() as conn:
            if not self._ours(conn, user):
                raise ConnectorError(
                    ErrorCode.NOT_FOUND, f"database user {user} of this grant does not exist", retryable=False
                )
            with conn.transaction():
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}").format(
                        sql.Identifier(user),
                        sql.Literal(self._verifier(conn, user, password)),
                        self._valid_until(valid_until),
                    )
                )
                conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(user), sql.Literal(record)))

    def grant(self, user: str, privileges: Privileges) -> list[str]:
        """The privileges, in the object's database. Repeating it changes nothing."""
        on, who = privileges.on, sql.Identifier(user)
        done: list[str] = []
        with self.connect(on.database) as conn, conn.transaction():
            if not self._ours(conn, user):
                raise not_ours(user, self.marker)
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(on.database), who))
            done.append(f"CONNECT on database {on.database}")
            if privileges.role:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(privileges.role), who))
                return [*done, f"role {privileges.role}"]
            level = privileges.level
            assert level is not None
            if level is AccessLevel.ADMIN:
                conn.execute(
                    sql.SQL("GRANT ALL PRIVILEGES ON DATABASE {} TO {}").format(sql.Identifier(on.database), who)
                )
            for schema in self._schemas(conn, on):
                s = sql.Identifier(schema)
                schema_privs = "ALL" if level is AccessLevel.ADMIN else "USAGE"
                conn.execute(sql.SQL("GRANT {} ON SCHEMA {} TO {}").format(sql.SQL(schema_privs), s, who))
                tables = _keywords(TABLE_PRIVILEGES[level])
                if on.table:
                    conn.execute(
                        sql.SQL("GRANT {} ON TABLE {}.{} TO {}").format(tables, s, sql.Identifier(on.table), who)
                    )
                    done.append(f"{'/'.join(TABLE_PRIVILEGES[level])} on {schema}.{on.table}")
                    continue
                conn.execute(sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(tables, s, who))
                if self.has_sequences:
                    conn.execute(
                        sql.SQL("GRANT {} ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
                            _keywords(SEQUENCE_PRIVILEGES[level]), s, who
                        )
                    )
                done.append(f"{'/'.join(TABLE_PRIVILEGES[level])} on all tables in {schema}")
        return done

    def _ungrant(self, conn: psycopg.Connection[Any], user: str, privileges: Privileges) -> None:
        on, who = privileges.on, sql.Identifier(user)
        conn.execute(sql.SQL("REVOKE ALL PRIVILEGES ON DATABASE {} FROM {}").format(sql.Identifier(on.database), who))
        if privileges.role:
            with contextlib.suppress(pg_errors.UndefinedObject):
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(privileges.role), who))
        for schema in self._schemas_if_any(conn, on):
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sql.Identifier(schema), who))
            # Object by object, leaving out what the user owns (the connector holds no privilege there to
            # revoke; ownership is dealt with by the revoke itself).
            rows = conn.execute(
                "SELECT c.relname, c.relkind = 'S' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r','p','v','m','f','S') AND c.relowner <> "
                "(SELECT oid FROM pg_roles WHERE rolname = %s) AND (%s = '' OR c.relname = %s)",
                (schema, user, on.table, on.table),
            ).fetchall()
            for is_sequence in (False, True):
                names = [sql.Identifier(schema, r[0]) for r in rows if r[1] is is_sequence]
                what = sql.SQL("SEQUENCE" if is_sequence else "TABLE")
                for start in range(0, len(names), 500):
                    conn.execute(
                        sql.SQL("REVOKE ALL ON {} {} FROM {}").format(
                            what, sql.SQL(", ").join(names[start : start + 500]), who
                        )
                    )

    def _schemas_if_any(self, conn: psycopg.Connection[Any], on: DbObject) -> list[str]:
        try:
            return self._schemas(conn, on)
        except ConnectorError:
            return []  # the schema is gone: nothing left to revoke there

    def _terminate(self, conn: psycopg.Connection[Any], user: str) -> int:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
            (TERMINATE_WAIT_MS, user),
        ).fetchall()
        return sum(1 for r in rows if r[0])

    def _owned(self, conn: psycopg.Connection[Any], user: str) -> int:
        row = conn.execute(
            "SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid "
            "WHERE r.rolname = %s AND d.deptype = 'o' AND d.refclassid = 'pg_authid'::regclass",
            (user,),
        ).fetchone()
        return int(row[0]) if row else 0

    def revoke(
        self, user: str, privileges: Privileges | None, *, cleanup: bool, deactivated_record: str
    ) -> RevokeOutcome:
        """No way back in: NOLOGIN and no password first, then its sessions ended, its privileges revoked,
        and the user dropped. A user that owns objects is left deactivated (and reported) unless `cleanup`,
        which hands what it owns to the connector's login and then drops it. Every step repeats safely."""
        out = RevokeOutcome(user=user, existed=False)
        with self.connect() as conn:
            ours = self._ours(conn, user)
            if ours is None:
                return out  # already gone
            if not ours:
                raise not_ours(user, self.marker)
            out.existed = True
            who = sql.Identifier(user)
            conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN PASSWORD NULL VALID UNTIL '-infinity'").format(who))
            out.steps.append("nologin")
            out.sessions_ended = self._terminate(conn, user)
            out.steps.append("sessions_ended")
        if privileges is not None:
            with self.connect(privileges.on.database) as conn, conn.transaction():
                self._ungrant(conn, user, privileges)
                out.steps.append("privileges_revoked")
        with self.connect() as conn:
            owned = self._owned(conn, user)
            if owned and cleanup:
                self._hand_over(user)
                owned = self._owned(conn, user)
            if owned:
                return self._deactivate(conn, user, out, f"owns {owned} objects", deactivated_record)
            try:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(who))
            except pg_errors.DependentObjectsStillExist:
                # Privileges left in other databases (granted outside this grant): revoke them there.
                self._drop_privileges_everywhere(user)
                try:
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(who))
                except pg_errors.DependentObjectsStillExist as exc:
                    return self._deactivate(
                        conn, user, out, redact_text(str(exc).splitlines()[0])[:200], deactivated_record
                    )
            out.dropped = True
            out.steps.append("dropped")
        return out

    def _deactivate(
        self, conn: psycopg.Connection[Any], user: str, out: RevokeOutcome, why: str, record: str
    ) -> RevokeOutcome:
        who = sql.Identifier(user)
        rows = conn.execute(
            "SELECT g.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles u ON u.oid = a.member "
            "WHERE u.rolname = %s AND g.rolname <> %s",
            (user, self.marker),
        ).fetchall()
        for (group,) in rows:  # memberships give privileges even without a login (SET ROLE from elsewhere)
            conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), who))
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(who, sql.Literal(record)))
        out.deactivated, out.reason = True, why
        out.steps.append("deactivated")
        return out

    def _databases_of(self, conn: psycopg.Connection[Any], user: str) -> list[str]:
        rows = conn.execute(
            "SELECT DISTINCT db.datname FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid "
            "JOIN pg_database db ON db.oid = d.dbid WHERE r.rolname = %s AND d.refclassid = 'pg_authid'::regclass",
            (user,),
        ).fetchall()
        return [r[0] for r in rows]

    def _as_member(self, conn: psycopg.Connection[Any], user: str) -> None:
        """REASSIGN / DROP OWNED need the privileges of the role: a CREATEROLE login grants itself membership."""
        if not conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (user,)).fetchone()[0]:  # type: ignore[index]
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(user)))

    def _drop_privileges_everywhere(self, user: str) -> None:
        with self.connect() as conn:
            databases = self._databases_of(conn, user)
        for database in databases:
            with self.connect(database) as conn:
                if self._owned_here(conn, user):
                    continue
                self._as_member(conn, user)
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))  # owns nothing: privileges only

    def _owned_here(self, conn: psycopg.Connection[Any], user: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid JOIN pg_database db ON db.oid = d.dbid "
            "WHERE r.rolname = %s AND d.deptype = 'o' AND db.datname = current_database()",
            (user,),
        ).fetchone()
        return row is not None

    def _hand_over(self, user: str) -> None:
        """User cleanup: what the user owns goes to the connector's login, then its privileges are dropped."""
        with self.connect() as conn:
            databases = self._databases_of(conn, user)
        for database in databases:
            with self.connect(database) as conn:
                self._as_member(conn, user)
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(user)))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))

    # -- the records --------------------------------------------------------------------------------------
    def managed_users(self) -> Iterator[ManagedUser]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT r.rolname, shobj_description(r.oid, 'pg_authid'), r.rolcanlogin FROM pg_roles r "
                "JOIN pg_auth_members a ON a.member = r.oid JOIN pg_roles m ON m.oid = a.roleid "
                "WHERE m.rolname = %s ORDER BY r.rolname",
                (self.marker,),
            ).fetchall()
        for name, comment, can_login in rows:
            record = comment if isinstance(comment, str) and comment.startswith(RECORD_PREFIX) else None
            yield ManagedUser(name, record, bool(can_login))

    def record_of(self, user: str) -> ManagedUser | None:
        with self.connect() as conn:
            if not self._ours(conn, user):
                return None
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_authid'), rolcanlogin FROM pg_roles WHERE rolname = %s", (user,)
            ).fetchone()
        if row is None:
            return None
        record = row[0] if isinstance(row[0], str) and row[0].startswith(RECORD_PREFIX) else None
        return ManagedUser(user, record, bool(row[1]))


_RELKIND = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}


def _truncated(kind: str, address: str, limit: int) -> InventoryItem:
    return InventoryItem(
        type="error", id=f"{address}#truncated", name=address,
        attributes={"stage": "database", "error_code": "TRUNCATED",
                    "error": f"more than {limit} objects: raise max_inventory_items to see them all"},
    )  # fmt: skip


def _usable(conn: psycopg.Connection[Any]) -> bool:
    return not conn.closed and not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
