"""Hostile names in every field that reaches SQL are refused before any statement, with a typed error that
names the field; nothing is created. Names that are odd but legal (spaces, unicode letters) are quoted by
the driver and work."""

from __future__ import annotations

import pytest

from connector.integrations.databases.identifiers import check_identifier, mysql_ident
from connector.sandbox import Sandbox
from tests.databases.conftest import dispatcher, grant_job, my_settings, pg_settings, requester, run
from tests.databases.servers import MariaDbServer, PostgresServer

HOSTILE = [
    'orders"; DROP TABLE sales.orders; --',
    "orders'",
    "orders`",
    "a;b",
    "nul\x00byte",
    "x" * 65,
    "zero\u200bwidth",
    "bidi\u202eoverride",
    " leading",
    "back\\slash",
    "line\nbreak",
    "",
    "e\u0301",  # not NFC
]


@pytest.mark.parametrize("field", ["database", "schema", "table", "role"])
def test_postgresql_refuses_hostile_names_in_every_field(
    sandbox: Sandbox, pg_server: PostgresServer, field: str
) -> None:
    d, who = dispatcher(), requester()
    with pg_server.admin() as admin:
        before = admin.execute("SELECT count(*) FROM pg_roles").fetchone()
    for name in HOSTILE:
        target = {"database": "app", "schema": "sales", "table": "orders", "level": "read-only"}
        if field == "role":
            target.pop("level")
        if name == "":
            continue  # an empty field means "not given" (the integration's database, the whole database)
        target[field] = name
        outcome = run(d, grant_job("postgresql", pg_settings(pg_server), "g-hostile", target, key=who.public))
        assert outcome.outcome == "failed" and outcome.error is not None, (field, name)
        assert outcome.error.code == "INVALID_JOB" and f"target.{field}" in outcome.error.message, outcome.error
        assert "\x00" not in outcome.error.message and "\u202e" not in outcome.error.message
    with pg_server.admin() as admin:
        assert admin.execute("SELECT count(*) FROM pg_roles").fetchone() == before


def test_mysql_refuses_hostile_names(sandbox: Sandbox, mariadb_server: MariaDbServer) -> None:
    d, who = dispatcher(), requester()
    for name in HOSTILE[:10]:
        outcome = run(
            d,
            grant_job(
                "mysql",
                my_settings(mariadb_server),
                "m-hostile",
                {"database": "shop", "table": name, "level": "read-only"},
                key=who.public,
            ),
        )
        assert (
            outcome.error is not None
            and outcome.error.code == "INVALID_JOB"
            and "target.table" in outcome.error.message
        )


def test_hostile_settings_are_invalid_settings(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    d, who = dispatcher(), requester()
    for setting, value in (
        ("database", "app;drop"),
        ("marker_role", 'm"x'),
        ("hostname", "db.example.com;x"),
        ("secret", "a b"),
    ):
        outcome = run(
            d,
            grant_job(
                "postgresql", pg_settings(pg_server, **{setting: value}), "g-s", {"level": "read-only"}, key=who.public
            ),
        )
        assert outcome.error is not None and outcome.error.code == "INVALID_SETTINGS", (setting, outcome.error)
        assert setting in outcome.error.message or (setting == "hostname" and "host" in outcome.error.message)


def test_legal_odd_names_are_quoted_by_the_driver(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    with pg_server.admin("app") as admin:
        admin.execute(
            'SET ROLE connector; CREATE SCHEMA IF NOT EXISTS "Ünïcode Schema"; CREATE TABLE IF NOT EXISTS "Ünïcode Schema"."Order Items"(i int)'
        )
    d, who = dispatcher(), requester()
    target = {"database": "app", "schema": "Ünïcode Schema", "table": "Order Items", "level": "read-only"}
    outcome = run(d, grant_job("postgresql", pg_settings(pg_server), "g-odd", target, key=who.public))
    assert outcome.outcome == "succeeded", outcome
    from tests.databases.conftest import pg_login, revoke_job

    with pg_login(who.login(outcome), pg_server) as session:
        assert session.execute('SELECT count(*) FROM "Ünïcode Schema"."Order Items"').fetchone() == (0,)
    assert run(d, revoke_job("postgresql", pg_settings(pg_server), "g-odd", target)).result["dropped"]


def test_mysql_quoting_never_sees_a_backtick() -> None:
    assert mysql_ident("orders") == "`orders`"
    with pytest.raises(Exception, match="contains '`'"):
        mysql_ident("a`b")
    assert check_identifier("Straße", "target.table") == "Straße"
