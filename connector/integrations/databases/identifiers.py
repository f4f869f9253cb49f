"""Names that reach SQL: validated strictly here, then quoted by the driver's own composition.

Every database, schema, table and role name a job or a setting carries is checked before it is used: no NUL,
no control or format characters (zero-width joiners, bidirectional overrides), no quotes, backticks,
backslashes or semicolons, not blank, no leading or trailing space, and within the engine's length limit.
What passes is then quoted by the driver (psycopg's `sql.Identifier`) or, for MySQL, by `mysql_ident`, which
doubles nothing because nothing it quotes can hold a backtick. A refused name is a non-retryable INVALID_JOB
(or INVALID_SETTINGS) naming the field; the value itself is shown only escaped and cut short.

The users the connector makes are named from the grant id (`user_name_for`): deterministic, so a re-delivery
finds the user it made; hashed, so nothing in a grant id reaches a name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from enum import StrEnum

from connector.errors import InvalidJob, InvalidSettings

PG_MAX = 63  # NAMEDATALEN - 1 (bytes)
MYSQL_MAX = 64  # database, table and role names (characters)
MYSQL_USER_MAX = 32  # MySQL 8 user names (MariaDB allows 80)
REDSHIFT_MAX = 127  # Redshift identifiers (bytes)
USER_PREFIX = "ac_"
_FORBIDDEN = set("\"'`\\;")


class AccessLevel(StrEnum):
    """What a grant gives on its object (the seed's levels)."""

    READ_ONLY = "read-only"
    READ_WRITE = "read-write"
    ADMIN = "admin"


def refusal(field: str, problem: str, *, setting: bool) -> InvalidJob | InvalidSettings:
    return InvalidSettings(field, problem) if setting else InvalidJob(f"{field}: {problem}")


def shown(value: str) -> str:
    """A refused value as an error may show it: escaped (no control characters reach a log) and cut short."""
    return ascii(value[:40]) + ("..." if len(value) > 40 else "")


def check_identifier(value: object, field: str, *, max_bytes: int = PG_MAX, setting: bool = False) -> str:
    """`value` as a safe identifier, or a typed error naming `field`."""
    if not isinstance(value, str):
        raise refusal(field, "must be a string", setting=setting)
    if not value or not value.strip():
        raise refusal(field, "must not be empty", setting=setting)
    if value != value.strip():
        raise refusal(field, f"{shown(value)} has leading or trailing spaces", setting=setting)
    if unicodedata.normalize("NFC", value) != value:
        raise refusal(field, f"{shown(value)} is not in Unicode normal form C", setting=setting)
    for ch in value:
        if ch in _FORBIDDEN:
            raise refusal(field, f"{shown(value)} contains {ch!r}, which no name may hold", setting=setting)
        category = unicodedata.category(ch)
        if category[0] == "C" or category in ("Zl", "Zp"):  # control, format (zero-width, bidi), unassigned
            raise refusal(field, f"{shown(value)} contains the invisible character U+{ord(ch):04X}", setting=setting)
    if len(value.encode()) > max_bytes:
        raise refusal(field, f"{shown(value)} is longer than {max_bytes} bytes", setting=setting)
    return value


def mysql_ident(name: str) -> str:
    """A MySQL/MariaDB identifier in backticks. PyMySQL has no identifier composer, so names are checked here
    again (the caller already validated them) and never hold a backtick to double."""
    check_identifier(name, "identifier", max_bytes=MYSQL_MAX * 4)
    return f"`{name}`"


_GRANT_SAFE = re.compile(r"^[a-z0-9_]+$")


def user_name_for(grant_id: str, *, max_length: int) -> str:
    """The database user of one grant: `ac_` + 24 hex digits of SHA-256(grant id) (27 characters, within
    MySQL's 32 and PostgreSQL's 63)."""
    digest = hashlib.sha256(grant_id.encode()).hexdigest()[:24]
    name = USER_PREFIX + digest
    assert len(name) <= max_length and _GRANT_SAFE.match(name)
    return name
