"""MySQL 8 (RDS, Aurora MySQL) and MariaDB through PyMySQL. One engine, two dialects, told apart by VERSION().

PyMySQL has no identifier composer: names are checked (identifiers.check_identifier) and put in backticks by
`mysql_ident`, and nothing that passes the check can hold a backtick; string values (user names, passwords,
records) go through PyMySQL's own parameter escaping.

Where the two differ:
- roles: both have CREATE ROLE and GRANT role TO user; a role is `'name'@'%'` on MySQL and a bare name on
  MariaDB; the default role is `SET DEFAULT ROLE r TO u` (MySQL, several at once) vs `FOR u` (MariaDB, one);
  membership lives in mysql.role_edges (MySQL) vs mysql.roles_mapping (MariaDB). MySQL 8 needs ROLE_ADMIN (or
  the admin option) to grant roles, MariaDB the role's ADMIN OPTION (its creator has it).
- ending sessions: `KILL CONNECTION id` for each of the user's connections (information_schema.PROCESSLIST);
  killing another user's connection needs CONNECTION_ADMIN / SUPER, which RDS MySQL 8.0.36+ refuses: there
  `CALL mysql.rds_kill(id)` is used instead.
- IAM authentication (`IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'`) exists only on RDS / Aurora MySQL;
  MariaDB answers ERROR 1524 (plugin not loaded), reported as a precondition.
- neither has a login expiry like PostgreSQL's VALID UNTIL (PASSWORD EXPIRE still lets the user in to change
  it), so the expiry loop is the only line of defence; and neither can comment on a user in a way both read,
  so the grant records live in a table of the connector's own: `access_connector`.`grants`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pymysql
from pymysql.constants import ER

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import InventoryItem
from connector.integrations.databases.engine import (
    RECORD_PREFIX,
    RECORDS_NAME,
    IdleConnections,
    ManagedUser,
    NewUser,
    Privileges,
    RevokeOutcome,
    RoleLevel,
    not_ours,
)
from connector.integrations.databases.identifiers import MYSQL_USER_MAX, AccessLevel, check_identifier, mysql_ident
from connector.integrations.databases.secrets import DbCredentials
from connector.integrations.databases.settings import DatabaseSettings
from connector.integrations.effect import Level
from connector.logging import redact_text

LEDGER_DATABASE = RECORDS_NAME
LEDGER_TABLE = "grants"
LEDGER = f"`{LEDGER_DATABASE}`.`{LEDGER_TABLE}`"
SYSTEM_DATABASES = ("mysql", "information_schema", "performance_schema", "sys", LEDGER_DATABASE)
PRIVILEGES = {
    AccessLevel.READ_ONLY: "SELECT, SHOW VIEW",
    AccessLevel.READ_WRITE: "SELECT, SHOW VIEW, INSERT, UPDATE, DELETE",
    AccessLevel.ADMIN: "ALL PRIVILEGES",
}
WRITE_WORDS = ("INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX", "TRIGGER", "EVENT", "REFERENCES",
               "LOCK TABLES", "EXECUTE", "CREATE ROUTINE", "ALTER ROUTINE", "CREATE VIEW", "CREATE TEMPORARY TABLES")  # fmt: skip
ADMIN_WORDS = ("ALL PRIVILEGES", "GRANT OPTION", "ADMIN OPTION", "SUPER", "CREATE USER", "FILE", "PROCESS", "RELOAD",
               "SHUTDOWN", "ROLE_ADMIN", "SYSTEM_USER", "CONNECTION_ADMIN", "REPLICATION", "BINLOG", "SET USER",
               "CREATE TABLESPACE", "READ_ONLY ADMIN", "FEDERATED ADMIN")  # fmt: skip
CONNECT_TIMEOUT = 10


def db_error(exc: Exception, what: str, *, connecting: bool = False) -> ConnectorError:
    if isinstance(exc, ConnectorError):
        return exc
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    text = redact_text(str(exc.args[1]) if len(exc.args) > 1 else str(exc))[:300]
    if connecting and code in (ER.ACCESS_DENIED_ERROR, 1698):
        return ConnectorError(
            ErrorCode.ACCESS_DENIED,
            f"{what}: the database refused the connector's login ({text}); check the secret's username and "
            "password (or, with iam-auth, the AWSAuthenticationPlugin user and the role's rds-db:connect)",
            retryable=False,
        )
    if code in (
        ER.DBACCESS_DENIED_ERROR,
        ER.TABLEACCESS_DENIED_ERROR,
        ER.SPECIFIC_ACCESS_DENIED_ERROR,
        1044,
        1142,
        1227,
        1410,
    ):
        return ConnectorError(
            ErrorCode.ACCESS_DENIED,
            f"{what}: the connector's database user lacks a privilege ({text}); it needs the privileges listed in "
            "the README (CREATE USER, GRANT OPTION, PROCESS, ROLE_ADMIN on MySQL 8)",
            retryable=False,
        )
    if code in (ER.BAD_DB_ERROR, ER.NO_SUCH_TABLE, 1049, 1146):
        return ConnectorError(ErrorCode.NOT_FOUND, f"{what}: {text}", retryable=False)
    if code in (1205, 1213):
        return ConnectorError(ErrorCode.CONFLICT, f"{what}: {text}; retry", retryable=True)
    if isinstance(exc, pymysql.err.OperationalError) and code in (2003, 2006, 2013, 0):
        return ConnectorError(
            ErrorCode.UNAVAILABLE,
            f"{what}: cannot reach the database ({text}); check the host, port, ssl_mode and the connector's network",
            retryable=True,
        )
    return ConnectorError(ErrorCode.INTERNAL, f"{what}: MySQL error {code}: {text}", retryable=False)


class MySqlEngine:
    name = "mysql"
    user_name_max = MYSQL_USER_MAX
    item_prefix = "mysql"

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
        self._mariadb: bool | None = None
        self._idle: IdleConnections[pymysql.connections.Connection[Any]] = IdleConnections(
            lambda c: bool(c.open), lambda c: c.close()
        )

    # -- connections ------------------------------------------------------------------------------------
    def _ssl(self) -> dict[str, Any]:
        mode = self.settings.ssl_mode
        if mode == "disable":
            return {"ssl_disabled": True}
        if mode in ("verify-ca", "verify-full"):
            return {
                "ssl_ca": self.settings.ssl_ca_file,
                "ssl_verify_cert": True,
                "ssl_verify_identity": mode == "verify-full",
            }
        context = ssl.create_default_context()  # allow / prefer / require: encrypted when the server offers it
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return {"ssl": context}

    @contextlib.contextmanager
    def connect(self, database: str | None = None) -> Iterator[pymysql.connections.Connection[Any]]:
        key = database or ""
        conn = self._idle.take(key)
        if conn is None:
            conn = self._open(database)
        try:
            if self._mariadb is None:
                self._mariadb = "mariadb" in str(self._one(conn, "SELECT VERSION()")).lower()
            yield conn
        except pymysql.err.MySQLError as exc:
            conn.close()
            raise db_error(exc, self.settings.address) from None
        except BaseException:
            conn.close()
            raise
        self._idle.give(key, conn)

    def _open(self, database: str | None) -> pymysql.connections.Connection[Any]:
        host, port = self.endpoint
        creds = self._credentials()

        def dial(tls: dict[str, Any]) -> pymysql.connections.Connection[Any]:
            return pymysql.connect(
                host=host, port=port, user=creds.username, password=creds.password, database=database,
                connect_timeout=CONNECT_TIMEOUT, autocommit=True, charset="utf8mb4", program_name="access-connector",
                **tls,
            )  # fmt: skip

        try:
            try:
                conn = dial(self._ssl())
            except pymysql.err.OperationalError as exc:
                # allow / prefer: TLS when the server offers it, else plain (PyMySQL itself refuses, 2026).
                if not (exc.args and exc.args[0] == 2026 and self.settings.ssl_mode in ("allow", "prefer")):
                    raise
                conn = dial({"ssl_disabled": True})
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == 2026:
                raise self._no_tls() from None
            raise db_error(exc, f"connecting to {self.settings.address}", connecting=True) from None
        except Exception as exc:
            raise db_error(exc, f"connecting to {self.settings.address}", connecting=True) from None
        if self.settings.ssl_mode in ("require", "verify-ca", "verify-full") and not isinstance(
            getattr(conn, "_sock", None), ssl.SSLSocket
        ):
            conn.close()
            raise self._no_tls()
        return conn

    def _no_tls(self) -> ConnectorError:
        return ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"{self.settings.address} does not offer TLS and ssl_mode is {self.settings.ssl_mode}: enable TLS on the "
            "server or lower ssl_mode",
            retryable=False,
        )

    @staticmethod
    def _one(conn: pymysql.connections.Connection[Any], query: str, args: Any = None) -> Any:
        with conn.cursor() as cur:
            cur.execute(query, args)
            row = cur.fetchone()
        return None if row is None else row[0]

    @staticmethod
    def _all(conn: pymysql.connections.Connection[Any], query: str, args: Any = None) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return list(cur.fetchall())

    @staticmethod
    def _run(conn: pymysql.connections.Connection[Any], query: str, args: Any = None) -> None:
        with conn.cursor() as cur:
            cur.execute(query, args)

    @property
    def mariadb(self) -> bool:
        if self._mariadb is None:
            with self.connect():
                pass
        return bool(self._mariadb)

    def _role(self, name: str) -> str:
        """A role as the dialect names it in GRANT / CREATE ROLE."""
        return mysql_ident(name) if self.mariadb else f"{mysql_ident(name)}@'%'"

    def check(self) -> dict[str, object]:
        with self.connect() as conn:
            user = self._one(conn, "SELECT CURRENT_USER()")
            version = self._one(conn, "SELECT VERSION()")
            grants = " ".join(str(r[0]).upper() for r in self._all(conn, "SHOW GRANTS FOR CURRENT_USER()"))
        everything = "ALL PRIVILEGES ON *.*" in grants

        def has(word: str) -> bool:
            return everything or word in grants

        return {
            "user": user,
            "version": version,
            "mariadb": self.mariadb,
            "create_user": has("CREATE USER"),
            "process": has("PROCESS"),
            "grant_option": "WITH GRANT OPTION" in grants,
            "end_sessions": has("CONNECTION ADMIN") or has("CONNECTION_ADMIN") or has("SUPER"),
            "role_admin": True if self.mariadb else has("ROLE_ADMIN"),
        }

    # -- inventory --------------------------------------------------------------------------------------
    def inventory(self, check: Callable[[], None], limit: int) -> Iterator[InventoryItem]:
        address, kind = self.settings.address, self.item_prefix
        emitted = 0
        with self.connect() as conn:
            for name, is_role in self._accounts(conn):
                yield InventoryItem(
                    type=f"{kind}.role", id=f"{address}/role/{name}", name=name, attributes={"role": is_role}
                )
            databases = [r[0] for r in self._all(conn, "SHOW DATABASES") if r[0] not in SYSTEM_DATABASES]
            for database in databases:
                check()
                yield InventoryItem(type=f"{kind}.database", id=f"{address}/{database}", name=database)
                emitted += 1
            with conn.cursor(pymysql.cursors.SSCursor) as cur:  # streamed, not buffered
                cur.execute(
                    "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA NOT IN %s ORDER BY 1, 2",
                    (SYSTEM_DATABASES,),
                )
                for database, table, table_type in cur:
                    if emitted >= limit:
                        yield InventoryItem(
                            type="error", id=f"{address}#truncated", name=address,
                            attributes={"stage": "database", "error_code": "TRUNCATED",
                                        "error": f"more than {limit} objects: raise max_inventory_items to see them all"},
                        )  # fmt: skip
                        cur.close()
                        return
                    if emitted % 500 == 0:
                        check()
                    yield InventoryItem(
                        type=f"{kind}.table", id=f"{address}/{database}/{table}", name=table,
                        parent_id=f"{address}/{database}", attributes={"kind": str(table_type).lower()},
                    )  # fmt: skip
                    emitted += 1

    def _accounts(self, conn: pymysql.connections.Connection[Any]) -> list[tuple[str, bool]]:
        """Roles and users, without the connector's own marker and the users it made."""
        if self.mariadb:
            rows = self._all(conn, "SELECT User, is_role = 'Y' FROM mysql.user WHERE User <> '' ORDER BY User")
        else:
            rows = self._all(
                conn,
                "SELECT u.User, u.account_locked = 'Y' AND u.authentication_string = '' FROM mysql.user u "
                "WHERE u.User <> '' AND u.User NOT LIKE 'mysql.%%' ORDER BY u.User",
            )
        mine = {u for u, _ in self._members(conn)}
        seen: dict[str, bool] = {}
        for u, r in rows:  # one name may have several hosts
            if u != self.marker and u not in mine:
                seen[str(u)] = seen.get(str(u), False) or bool(r)
        return list(seen.items())

    # -- what a grant reaches ---------------------------------------------------------------------------
    def resolve(self, privileges: Privileges) -> tuple[RoleLevel, tuple[str, ...]]:
        on = privileges.on
        if on.schema:
            raise ConnectorError(
                ErrorCode.INVALID_JOB, "target.schema: MySQL has no schemas inside a database; name the database "
                "(and a table)", retryable=False,
            )  # fmt: skip
        with self.connect() as conn:
            if (
                self._one(conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (on.database,))
                is None
            ):
                raise ConnectorError(ErrorCode.NOT_FOUND, f"database {on.database} does not exist", retryable=False)
            if on.table and self._one(
                conn, "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (on.database, on.table),
            ) is None:  # fmt: skip
                raise ConnectorError(
                    ErrorCode.NOT_FOUND, f"table {on.table} does not exist in database {on.database}", retryable=False
                )
            objects = (f"{self.settings.address}/{on.path()}",)
            if privileges.role:
                return self._role_level(conn, privileges.role, 0), objects
        assert privileges.level is not None
        level = {AccessLevel.READ_ONLY: Level.READ, AccessLevel.READ_WRITE: Level.WRITE, AccessLevel.ADMIN: Level.ADMIN}
        return RoleLevel(level[privileges.level], (f"{privileges.level} on {on.scope} {on.path()}",)), objects

    def _role_level(self, conn: pymysql.connections.Connection[Any], role: str, depth: int) -> RoleLevel:
        if role == self.marker or role in {u for u, _ in self._members(conn)}:
            raise ConnectorError(
                ErrorCode.INVALID_JOB, f"role {role} is the connector's own (its marker role, or a user it made)",
                retryable=False,
            )  # fmt: skip
        if depth > 8:
            return RoleLevel(Level.ADMIN, (f"role {role}: memberships nested too deep to judge",))
        if self._one(conn, "SELECT 1 FROM mysql.user WHERE User = %s", (role,)) is None:
            raise ConnectorError(ErrorCode.NOT_FOUND, f"role {role} does not exist", retryable=False)
        try:
            grants = [str(r[0]) for r in self._all(conn, f"SHOW GRANTS FOR {self._role(role)}")]
        except pymysql.err.MySQLError as exc:
            raise db_error(exc, f"reading the grants of role {role}") from None
        reasons: list[str] = []
        write = False
        for line in grants:
            upper = line.upper()
            privs, _, rest = upper.removeprefix("GRANT ").partition(" ON ")
            if " ON " not in upper:  # GRANT `other` TO `role`: a nested role
                for nested in _backticked(line.split(" TO ")[0]):
                    inner = self._role_level(conn, nested, depth + 1)
                    if inner.level is Level.ADMIN:
                        reasons.extend(inner.reasons)
                    write = write or inner.level is Level.WRITE
                if "WITH ADMIN OPTION" in upper:
                    reasons.append(f"role {role} may grant its roles on (WITH ADMIN OPTION)")
                continue
            on_all = rest.startswith("*.*")
            if f"`{LEDGER_DATABASE.upper()}`." in rest:
                reasons.append(f"role {role} has privileges on the connector's own records: {line[:120]}")
            elif any(w in upper for w in ADMIN_WORDS):
                reasons.append(f"role {role}: {line[:120]}")
            elif on_all and privs.strip() != "USAGE":
                reasons.append(f"role {role} has privileges on every database: {line[:120]}")
            elif any(w in privs for w in WRITE_WORDS):
                write = True
        if reasons:
            return RoleLevel(Level.ADMIN, tuple(reasons))
        if write:
            return RoleLevel(Level.WRITE, (f"role {role} can write",))
        return RoleLevel(Level.READ, (f"role {role} can only read",))

    # -- the ledger and the marker ----------------------------------------------------------------------
    def _ensure_ledger(self, conn: pymysql.connections.Connection[Any]) -> None:
        self._run(conn, f"CREATE DATABASE IF NOT EXISTS {mysql_ident(LEDGER_DATABASE)}")
        self._run(
            conn,
            f"CREATE TABLE IF NOT EXISTS {mysql_ident(LEDGER_DATABASE)}.{mysql_ident(LEDGER_TABLE)} "
            "(user_name VARCHAR(80) NOT NULL PRIMARY KEY, record TEXT NOT NULL) CHARACTER SET utf8mb4",
        )
        if self._one(conn, "SELECT 1 FROM mysql.user WHERE User = %s", (self.marker,)) is None:
            with contextlib.suppress(pymysql.err.OperationalError):  # another replica made it first (1396)
                self._run(conn, f"CREATE ROLE IF NOT EXISTS {self._role(self.marker)}")

    def _write_record(self, conn: pymysql.connections.Connection[Any], user: str, record: str) -> None:
        self._run(
            conn,
            f"REPLACE INTO {LEDGER} (user_name, record) VALUES (%s, %s)",  # noqa: S608 - fixed names
            (user, record),
        )

    def _members(self, conn: pymysql.connections.Connection[Any]) -> list[tuple[str, bool]]:
        """(user, locked?) of every member of the marker role."""
        if self.mariadb:
            # The role's creator holds it WITH ADMIN OPTION (MariaDB grants it so): only the users made for grants.
            rows = self._all(
                conn,
                "SELECT User FROM mysql.roles_mapping WHERE Role = %s AND Admin_option = 'N' AND User LIKE 'ac\\_%%'",
                (self.marker,),
            )
        else:
            rows = self._all(
                conn,
                "SELECT TO_USER FROM mysql.role_edges WHERE FROM_USER = %s AND TO_USER LIKE 'ac\\_%%'",
                (self.marker,),
            )
        return [(str(r[0]), False) for r in rows]

    def _ours(self, conn: pymysql.connections.Connection[Any], user: str) -> bool | None:
        if self._one(conn, "SELECT 1 FROM mysql.user WHERE User = %s AND Host = '%%'", (user,)) is None:
            return None
        return user in {u for u, _ in self._members(conn)}

    # -- users --------------------------------------------------------------------------------------------
    def create_user(self, user: NewUser, iam: bool) -> bool:
        account = "%s@'%%'"
        with self.connect() as conn:
            self._ensure_ledger(conn)
            ours = self._ours(conn, user.name)
            if ours is False:
                raise not_ours(user.name, self.marker)
            self._write_record(conn, user.name, user.record)  # the record before the user
            if ours is None:
                if iam:
                    try:
                        self._run(
                            conn,
                            f"CREATE USER {account} IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'",
                            (user.name,),
                        )
                    except pymysql.err.MySQLError as exc:
                        if exc.args and exc.args[0] in (1524, 1396):
                            self._forget_record(conn, user.name)
                            raise ConnectorError(
                                ErrorCode.PRECONDITION_FAILED,
                                "this server has no AWSAuthenticationPlugin: IAM database authentication exists only on "
                                "RDS and Aurora MySQL with IAM authentication enabled; use auth_type user-password",
                                retryable=False,
                            ) from None
                        raise
                else:
                    self._run(
                        conn,
                        f"CREATE USER {account} {self._identified()}{_rotation(user.rotate_days)}",
                        (user.name, self._secret(user.password)),
                    )
            elif user.password is not None:  # a re-delivery: a new password, the earlier one stops working
                self._run(
                    conn,
                    f"ALTER USER {account} {self._identified()}{_rotation(user.rotate_days)} ACCOUNT UNLOCK",
                    (user.name, self._secret(user.password)),
                )
            self._run(conn, f"GRANT {self._role(self.marker)} TO {account}", (user.name,))
        return ours is None

    def _identified(self) -> str:
        # MariaDB: the mysql_native_password hash, so the plain password is in no statement (its general log
        # does not mask it). MySQL 8 masks passwords in its logs itself, and its default plugin's hash is salted.
        return "IDENTIFIED BY PASSWORD %s" if self.mariadb else "IDENTIFIED BY %s"

    def _secret(self, password: str | None) -> str:
        assert password is not None
        if not self.mariadb:
            return password
        return (
            "*"
            + hashlib.sha1(hashlib.sha1(password.encode(), usedforsecurity=False).digest(), usedforsecurity=False)
            .hexdigest()
            .upper()
        )

    def set_password(self, user: str, password: str, valid_until: datetime | None, record: str) -> None:
        with self.connect() as conn:
            if not self._ours(conn, user):
                raise ConnectorError(
                    ErrorCode.NOT_FOUND, f"database user {user} of this grant does not exist", retryable=False
                )
            self._write_record(conn, user, record)
            self._run(conn, f"ALTER USER %s@'%%' {self._identified()} ACCOUNT UNLOCK", (user, self._secret(password)))

    def grant(self, user: str, privileges: Privileges) -> list[str]:
        on = privileges.on
        with self.connect() as conn:
            if not self._ours(conn, user):
                raise not_ours(user, self.marker)
            if privileges.role:
                role = self._role(privileges.role)
                self._run(conn, f"GRANT {role} TO %s@'%%'", (user,))
                # Active at login without SET ROLE: MariaDB takes one default role, MySQL a list.
                verb = "FOR" if self.mariadb else "TO"
                self._run(conn, f"SET DEFAULT ROLE {role} {verb} %s@'%%'", (user,))
                return [f"role {privileges.role}"]
            assert privileges.level is not None
            where = f"{mysql_ident(on.database)}.{mysql_ident(on.table) if on.table else '*'}"
            self._run(conn, f"GRANT {PRIVILEGES[privileges.level]} ON {where} TO %s@'%%'", (user,))
        return [f"{PRIVILEGES[privileges.level]} on {on.path()}"]

    def _sessions(self, conn: pymysql.connections.Connection[Any], user: str) -> list[int]:
        rows = self._all(
            conn, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID()", (user,)
        )
        return [int(r[0]) for r in rows]

    def _kill(self, conn: pymysql.connections.Connection[Any], session: int) -> bool:
        try:
            self._run(conn, f"KILL CONNECTION {int(session)}")
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            if code == 1094:  # unknown thread: it ended meanwhile
                return False
            if code != 1095:  # not its owner: RDS MySQL without CONNECTION_ADMIN
                raise
            self._run(conn, "CALL mysql.rds_kill(%s)", (int(session),))
        return True

    def revoke(
        self, user: str, privileges: Privileges | None, *, cleanup: bool, deactivated_record: str
    ) -> RevokeOutcome:
        out = RevokeOutcome(user=user, existed=False)
        with self.connect() as conn:
            self._ensure_ledger(conn)
            ours = self._ours(conn, user)
            if ours is False:
                raise not_ours(user, self.marker)
            if ours:
                out.existed = True
                self._run(conn, "ALTER USER %s@'%%' ACCOUNT LOCK", (user,))
                out.steps.append("locked")
                out.sessions_ended = sum(1 for s in self._sessions(conn, user) if self._kill(conn, s))
                out.steps.append("sessions_ended")
                self._run(conn, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@'%%'", (user,))
                out.steps.append("privileges_revoked")
                try:
                    self._run(conn, "DROP USER IF EXISTS %s@'%%'", (user,))
                except pymysql.err.MySQLError as exc:
                    if not exc.args or exc.args[0] != 4006:  # MySQL 8: the user is the DEFINER of stored objects
                        raise
                    self._run(conn, "ALTER USER %s@'%%' IDENTIFIED BY %s ACCOUNT LOCK", (user, _unusable()))
                    self._write_record(conn, user, deactivated_record)
                    out.deactivated, out.reason = True, "it is the DEFINER of views or routines"
                    out.steps.append("deactivated")
                    return out
                out.dropped = True
                out.steps.append("dropped")
            self._forget_record(conn, user)
        return out

    def _forget_record(self, conn: pymysql.connections.Connection[Any], user: str) -> None:
        self._run(
            conn,
            f"DELETE FROM {LEDGER} WHERE user_name = %s",  # noqa: S608 - fixed names
            (user,),
        )

    # -- the records --------------------------------------------------------------------------------------
    def managed_users(self) -> Iterator[ManagedUser]:
        with self.connect() as conn:
            self._ensure_ledger(conn)
            records = dict(
                self._all(
                    conn,
                    f"SELECT user_name, record FROM {LEDGER}",  # noqa: S608 - fixed names
                )
            )
            members = {u for u, _ in self._members(conn)}
        for name in sorted(set(records) | members):
            record = records.get(name)
            readable = record if isinstance(record, str) and record.startswith(RECORD_PREFIX) else None
            yield ManagedUser(str(name), readable, name in members)

    def record_of(self, user: str) -> ManagedUser | None:
        for found in self.managed_users():
            if found.name == user:
                return found
        return None


def _rotation(days: int | None) -> str:
    """credential_rotation_days: past it the password only lets the user replace it (MySQL and MariaDB)."""
    return "" if days is None else f" PASSWORD EXPIRE INTERVAL {int(days)} DAY"


def _backticked(text: str) -> list[str]:
    parts = text.split("`")
    return [check_identifier(parts[i], "role") for i in range(1, len(parts), 2)]


def _unusable() -> str:
    import secrets

    return secrets.token_urlsafe(32)
