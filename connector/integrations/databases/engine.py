"""What every database engine offers the integration (postgresql.py, mysql.py, redshift.py), and the plain
values passed between them. The engines do the SQL; the integration and the kind decide what to do.

An engine only ever changes users it made: users named `ac_<hash of the grant id>` that are members of the
connector's marker role (a role with no privileges of its own, made by the connector). A user of that name
that is not a member is someone else's, and is refused (CONFLICT), never altered.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.base import InventoryItem
from connector.integrations.databases.identifiers import AccessLevel
from connector.integrations.effect import Level

C = TypeVar("C")
RECORD_PREFIX = "access-connector:"  # the start of every grant record the connector writes
# Where MySQL / MariaDB (a database) and Redshift (a schema) keep the grant records: never granted to anyone,
# or a user could move its own expiry.
RECORDS_NAME = "access_connector"


@dataclass(frozen=True)
class DbObject:
    """What a grant is on: a database, a schema in it, or a table in that schema (MySQL: database, table)."""

    database: str
    schema: str = ""
    table: str = ""

    @property
    def scope(self) -> str:
        return "table" if self.table else "schema" if self.schema else "database"

    def path(self) -> str:
        return "/".join(p for p in (self.database, self.schema, self.table) if p)


@dataclass(frozen=True)
class Privileges:
    """One grant's privileges: a level on an object, or an existing role (then `level` is None)."""

    on: DbObject
    level: AccessLevel | None = None
    role: str = ""


@dataclass(frozen=True)
class NewUser:
    name: str
    password: str | None  # None: made for IAM authentication
    valid_until: datetime | None  # PostgreSQL VALID UNTIL (second line of defence); None: no end
    record: str  # the grant record (connector.integrations.ledger JSON form, RECORD_PREFIX first)
    rotate_days: int | None = None  # credential_rotation_days: the password must be replaced within this


@dataclass(frozen=True)
class ManagedUser:
    """A user the connector made, as found in the database, with its grant record (None: none found)."""

    name: str
    record: str | None
    can_login: bool


@dataclass(frozen=True)
class RoleLevel:
    level: Level
    reasons: tuple[str, ...] = ()


@dataclass
class RevokeOutcome:
    user: str
    existed: bool
    dropped: bool = False
    deactivated: bool = False  # it could not be dropped (owns objects, privileges elsewhere): it cannot log in
    sessions_ended: int = 0
    reason: str = ""
    steps: list[str] = field(default_factory=list)


class Engine(Protocol):
    """One database server, reached with the connector's own login."""

    name: str  # postgresql | mysql | redshift
    user_name_max: int

    def check(self) -> dict[str, object]: ...  # connect and report who we are and what we may do

    def inventory(self, check: Callable[[], None], limit: int) -> Iterator[InventoryItem]: ...

    def resolve(self, privileges: Privileges) -> tuple[RoleLevel, tuple[str, ...]]: ...  # level, objects it reaches

    def create_user(self, user: NewUser, iam: bool) -> bool: ...  # True: made now; False: it was there (ours)

    def grant(self, user: str, privileges: Privileges) -> list[str]: ...

    def set_password(self, user: str, password: str, valid_until: datetime | None, record: str) -> None: ...

    def revoke(
        self, user: str, privileges: Privileges | None, *, cleanup: bool, deactivated_record: str
    ) -> RevokeOutcome: ...

    def managed_users(self) -> Iterator[ManagedUser]: ...

    def record_of(self, user: str) -> ManagedUser | None: ...


def not_ours(user: str, marker: str) -> ConnectorError:
    return ConnectorError(
        ErrorCode.CONFLICT,
        f"database user {user} exists but is not a member of the connector's marker role {marker}: it was not "
        "made by this connector, so it is left alone",
        retryable=False,
    )


class IdleConnections(Generic[C]):
    """A few of the connector's own connections kept open between calls (per database), so one grant costs
    one login, not one per step. A connection is used by one caller at a time (taken out while in use),
    dropped after any error, and not reused after `max_idle` seconds (servers and proxies end idle sessions)."""

    def __init__(
        self, usable: Callable[[C], bool], close: Callable[[C], None], per_key: int = 2, max_idle: float = 30.0
    ):
        self._usable = usable
        self._close = close
        self._per_key = per_key
        self._max_idle = max_idle
        self._idle: dict[str, list[tuple[float, C]]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> C | None:
        now = time.monotonic()
        stale: list[C] = []
        found: C | None = None
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                since, conn = idle.pop()
                if now - since <= self._max_idle and self._usable(conn):
                    found = conn
                    break
                stale.append(conn)
        for conn in stale:
            self._quietly_close(conn)
        return found

    def give(self, key: str, conn: C) -> None:
        if not self._usable(conn):
            self._quietly_close(conn)
            return
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._per_key:
                idle.append((time.monotonic(), conn))
                return
        self._quietly_close(conn)

    def _quietly_close(self, conn: C) -> None:
        with contextlib.suppress(Exception):
            self._close(conn)
