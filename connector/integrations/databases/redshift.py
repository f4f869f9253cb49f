"""Amazon Redshift through psycopg: Redshift speaks the PostgreSQL wire protocol, and psycopg (libpq) is
already the PostgreSQL driver, so no second driver (redshift_connector) is needed for password logins.

Redshift differs from PostgreSQL where this module overrides it:
- users: `CREATE USER u PASSWORD 'md5...' VALID UNTIL '...'` (Redshift takes an MD5 or SHA-256 hash, or
  plain text; here the MD5 form, md5(password + user), so the plain password never reaches the server);
- the marker is a GROUP (`CREATE GROUP`, `ALTER GROUP g ADD USER u`), members read from pg_group;
- no COMMENT ON USER: the records live in the connector's own table `access_connector.grants`;
- sessions are listed in stv_sessions (pg_stat_activity lacks them), ended with pg_terminate_backend(pid);
- no pg_shdepend ownership query: ownership is read from pg_class / pg_namespace in the grant's database;
- no sequences (no GRANT ... ON ALL SEQUENCES), users and groups from pg_user / pg_group (no pg_roles), and no
  grants of existing roles or groups (refused: their privileges are not judged here).
What the tests prove of it runs on PostgreSQL (where CREATE GROUP, ALTER GROUP and the md5 form exist too);
the Redshift-only catalogue (stv_sessions, pg_user_info) is not exercised by them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import InventoryItem
from connector.integrations.databases.engine import (
    RECORD_PREFIX,
    RECORDS_NAME,
    ManagedUser,
    NewUser,
    Privileges,
    RevokeOutcome,
    RoleLevel,
    not_ours,
)
from connector.integrations.databases.identifiers import REDSHIFT_MAX
from connector.integrations.databases.postgresql import PostgresEngine

LEDGER_SCHEMA = RECORDS_NAME
LEDGER_TABLE = "grants"


class RedshiftEngine(PostgresEngine):
    name = "redshift"
    user_name_max = REDSHIFT_MAX
    item_prefix = "redshift"
    has_sequences = False  # Redshift has no sequences (IDENTITY columns instead)

    def check(self) -> dict[str, object]:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT usename, usesuper, usecreatedb FROM pg_user WHERE usename = current_user"
            ).fetchone()
        assert row is not None
        # CREATEUSER makes a Redshift user a superuser (usesuper): what the product documents ask for.
        return {"user": row[0], "superuser": bool(row[1]), "createdb": bool(row[2])}

    def _roles(self, conn: psycopg.Connection[Any], address: str) -> Iterator[InventoryItem]:
        members = self._members(conn)
        for name, superuser in conn.execute("SELECT usename, usesuper FROM pg_user ORDER BY 1").fetchall():
            if name not in members:
                yield InventoryItem(
                    type="redshift.role", id=f"{address}/role/{name}", name=name,
                    attributes={"login": True, "superuser": bool(superuser), "group": False},
                )  # fmt: skip
        for (group,) in conn.execute(
            "SELECT groname FROM pg_group WHERE groname <> %s ORDER BY 1", (self.marker,)
        ).fetchall():
            yield InventoryItem(
                type="redshift.role",
                id=f"{address}/role/{group}",
                name=group,
                attributes={"login": False, "group": True},
            )

    def resolve(self, privileges: Privileges) -> tuple[RoleLevel, tuple[str, ...]]:
        if privileges.role:
            raise ConnectorError(
                ErrorCode.INVALID_JOB,
                "target.role: existing roles and groups are not granted on Redshift by this connector; give a level",
                retryable=False,
            )
        return super().resolve(privileges)

    def _verifier(self, conn: psycopg.Connection[Any], user: str, password: str) -> str:
        return "md5" + hashlib.md5((password + user).encode(), usedforsecurity=False).hexdigest()

    def _ensure_marker(self, conn: psycopg.Connection[Any]) -> None:
        if conn.execute("SELECT 1 FROM pg_group WHERE groname = %s", (self.marker,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE GROUP {}").format(sql.Identifier(self.marker)))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(LEDGER_SCHEMA)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (user_name VARCHAR(128) PRIMARY KEY, record VARCHAR(4096))"
            ).format(sql.Identifier(LEDGER_SCHEMA), sql.Identifier(LEDGER_TABLE))
        )

    def _ledger(self) -> sql.Composable:
        return sql.SQL("{}.{}").format(sql.Identifier(LEDGER_SCHEMA), sql.Identifier(LEDGER_TABLE))

    def _write_record(self, conn: psycopg.Connection[Any], user: str, record: str) -> None:
        conn.execute(sql.SQL("DELETE FROM {} WHERE user_name = %s").format(self._ledger()), (user,))
        conn.execute(
            sql.SQL("INSERT INTO {} (user_name, record) VALUES (%s, %s)").format(self._ledger()), (user, record)
        )

    def _members(self, conn: psycopg.Connection[Any]) -> set[str]:
        rows = conn.execute(
            "SELECT u.usename FROM pg_user u, pg_group g WHERE g.groname = %s AND u.usesysid = ANY(g.grolist)",
            (self.marker,),
        ).fetchall()
        return {r[0] for r in rows}

    def _ours(self, conn: psycopg.Connection[Any], user: str) -> bool | None:
        if conn.execute("SELECT 1 FROM pg_user WHERE usename = %s", (user,)).fetchone() is None:
            return None
        return user in self._members(conn)

    def create_user(self, user: NewUser, iam: bool) -> bool:
        if iam or user.password is None:
            raise ConnectorError(ErrorCode.INVALID_SETTINGS, "redshift users are made with a password", retryable=False)
        name = sql.Identifier(user.name)
        with self.connect() as conn:
            self._ensure_marker(conn)
            ours = self._ours(conn, user.name)
            if ours is False:
                raise not_ours(user.name, self.marker)
            self._write_record(conn, user.name, user.record)  # the record before the user
            until = self._valid_until(user.valid_until)
            password = sql.Literal(self._verifier(conn, user.name, user.password))
            if ours is None:
                conn.execute(sql.SQL("CREATE USER {} PASSWORD {} VALID UNTIL {}").format(name, password, until))
                conn.execute(sql.SQL("ALTER GROUP {} ADD USER {}").format(sql.Identifier(self.marker), name))
            else:
                conn.execute(sql.SQL("ALTER USER {} PASSWORD {} VALID UNTIL {}").format(name, password, until))
        return ours is None

    def set_password(self, user: str, password: str, valid_until: datetime | None, record: str) -> None:
        with self.connect() as conn:
            if not self._ours(conn, user):
                raise ConnectorError(
                    ErrorCode.NOT_FOUND, f"database user {user} of this grant does not exist", retryable=False
                )
            self._write_record(conn, user, record)
            conn.execute(
                sql.SQL("ALTER USER {} PASSWORD {} VALID UNTIL {}").format(
                    sql.Identifier(user),
                    sql.Literal(self._verifier(conn, user, password)),
                    self._valid_until(valid_until),
                )
            )

    def _terminate(self, conn: psycopg.Connection[Any], user: str) -> int:
        try:
            rows = conn.execute(
                "SELECT pg_terminate_backend(process) FROM stv_sessions WHERE trim(user_name) = %s", (user,)
            ).fetchall()
        except psycopg.errors.UndefinedTable:  # PostgreSQL (the tests): its own catalogue
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
                (user,),
            ).fetchall()
        return sum(1 for r in rows if r[0])

    def _owned(self, conn: psycopg.Connection[Any], user: str) -> int:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_user u ON u.usesysid = c.relowner WHERE u.usename = %s)"
            " + (SELECT count(*) FROM pg_namespace n JOIN pg_user u ON u.usesysid = n.nspowner WHERE u.usename = %s)",
            (user, user),
        ).fetchone()
        return int(row[0]) if row else 0

    def revoke(self, user: str, privileges: Any, *, cleanup: bool, deactivated_record: str) -> RevokeOutcome:
        out = RevokeOutcome(user=user, existed=False)
        with self.connect() as conn:
            self._ensure_marker(conn)
            ours = self._ours(conn, user)
            if ours is False:
                raise not_ours(user, self.marker)
            if ours is None:
                conn.execute(sql.SQL("DELETE FROM {} WHERE user_name = %s").format(self._ledger()), (user,))
                return out
            out.existed = True
            who = sql.Identifier(user)
            # Redshift has no NOLOGIN: a login that expired in 1970 and a password no one knows.
            unusable = sql.Literal(self._verifier(conn, user, _unusable()))
            conn.execute(sql.SQL("ALTER USER {} PASSWORD {} VALID UNTIL '1970-01-02'").format(who, unusable))
            out.steps.append("nologin")
            out.sessions_ended = self._terminate(conn, user)
            out.steps.append("sessions_ended")
        if privileges is not None:
            with self.connect(privileges.on.database) as conn, conn.transaction():
                self._ungrant(conn, user, privileges)
                out.steps.append("privileges_revoked")
        with self.connect() as conn:
            owned = self._owned(conn, user)
            if owned:
                self._write_record(conn, user, deactivated_record)
                out.deactivated, out.reason = True, f"owns {owned} objects"
                out.steps.append("deactivated")
                return out
            conn.execute(sql.SQL("ALTER GROUP {} DROP USER {}").format(sql.Identifier(self.marker), who))
            conn.execute(sql.SQL("DROP USER IF EXISTS {}").format(who))
            conn.execute(sql.SQL("DELETE FROM {} WHERE user_name = %s").format(self._ledger()), (user,))
            out.dropped = True
            out.steps.append("dropped")
        return out

    def managed_users(self) -> Iterator[ManagedUser]:
        with self.connect() as conn:
            self._ensure_marker(conn)
            records = dict(conn.execute(sql.SQL("SELECT user_name, record FROM {}").format(self._ledger())).fetchall())
            members = self._members(conn)
        for name in sorted(set(records) | members):
            record = records.get(name)
            readable = record if isinstance(record, str) and record.startswith(RECORD_PREFIX) else None
            yield ManagedUser(name, readable, name in members)

    def record_of(self, user: str) -> ManagedUser | None:
        for found in self.managed_users():
            if found.name == user:
                return found
        return None


def _unusable() -> str:
    import secrets

    return secrets.token_urlsafe(32)
