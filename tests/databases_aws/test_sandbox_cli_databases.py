"""`connector sandbox serve --database NAME=HOST:PORT`: a tagged PostgreSQL RDS instance leading to a local server."""

from __future__ import annotations

import pytest

from connector.sandbox import cli


def test_database_options_become_tagged_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.LOGIN_ENV, "apono_connector:local-Passw0rd")
    (db,) = cli._databases(["orders=127.0.0.1:5432"])
    assert (db.identifier, db.connect_to, db.credentials) == (
        "orders",
        ("127.0.0.1", 5432),
        ("apono_connector", "local-Passw0rd"),
    )
    assert db.tagged and db.auth_type == "user-password" and db.engine == "postgres"
    with pytest.raises(ValueError, match="expected NAME=HOST:PORT"):
        cli._databases(["orders"])
    monkeypatch.delenv(cli.LOGIN_ENV)
    with pytest.raises(ValueError, match="SANDBOX_DATABASE_LOGIN"):
        cli._databases(["orders=127.0.0.1:5432"])
    assert cli._databases([]) == ()
