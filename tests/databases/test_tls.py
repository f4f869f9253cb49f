"""ssl_mode means what libpq means, for both drivers: verify-full checks the server's certificate against the
given CA and host name; `require` on a server without TLS is refused, never quietly downgraded."""

from __future__ import annotations

from pathlib import Path

from connector.integrations.base import Services
from connector.integrations.databases.integration import MySqlIntegration, PostgresIntegration
from connector.sandbox import Sandbox
from tests.certs import TestCA
from tests.databases.conftest import CONNECTOR_ID, my_settings, pg_settings
from tests.databases.servers import MariaDbServer, PostgresServer


def _check(integration: PostgresIntegration | MySqlIntegration) -> dict[str, object]:
    return integration.engine().check()


def test_postgresql_verify_full_needs_the_right_ca(sandbox: Sandbox, pg_server: PostgresServer, tmp_path: Path) -> None:
    services = Services(connector_id=CONNECTOR_ID)
    assert _check(PostgresIntegration("t-1", pg_settings(pg_server), services))["user"] == "connector"
    other = TestCA(tmp_path, "other")
    wrong = PostgresIntegration("t-2", pg_settings(pg_server, ssl_ca_file=str(other.path)), services)
    try:
        _check(wrong)
    except Exception as exc:
        assert getattr(exc, "code", "") == "UNAVAILABLE" and "ssl_mode" in str(exc)
    else:
        raise AssertionError("a certificate from another CA was accepted")
    plain = PostgresIntegration("t-3", pg_settings(pg_server, ssl_mode="disable", ssl_ca_file=""), services)
    assert _check(plain)["user"] == "connector"


def test_mysql_require_refuses_a_server_without_tls(sandbox: Sandbox, mariadb_server: MariaDbServer) -> None:
    services = Services(connector_id=CONNECTOR_ID)
    strict = MySqlIntegration("t-4", my_settings(mariadb_server, ssl_mode="require"), services)
    try:
        _check(strict)
    except Exception as exc:
        assert getattr(exc, "code", "") == "PRECONDITION_FAILED" and "does not offer TLS" in str(exc)
    else:
        raise AssertionError("ssl_mode require connected without TLS")
    assert _check(MySqlIntegration("t-5", my_settings(mariadb_server, ssl_mode="prefer"), services))["mariadb"] is True
