"""`connector doctor --database FILE` against the real servers: the login works and has what grants need; a
login without CREATEROLE / CREATE USER fails with the statement that fixes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connector.doctor import main
from connector.sandbox import Sandbox
from tests.databases.conftest import REGION, my_settings, pg_settings
from tests.databases.servers import MariaDbServer, PostgresServer


def _doctor(tmp_path: Path, capsys: pytest.CaptureFixture[str], *databases: dict[str, Any]) -> list[dict[str, Any]]:
    files = []
    for n, database in enumerate(databases):
        path = tmp_path / f"db{n}.json"
        path.write_text(json.dumps(database))
        files += ["--database", str(path)]
    main([*files, "--json"], environ={"CONNECTOR_ID": "c-db"})
    checks: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["checks"]
    return [c for c in checks if c["id"].startswith("database")]


def test_doctor_checks_each_database(
    sandbox: Sandbox,
    pg_server: PostgresServer,
    mariadb_server: MariaDbServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pg_server.admin() as admin:
        admin.execute("CREATE ROLE weak LOGIN PASSWORD 'weak-Pw-1'")
    sm = sandbox.client("secretsmanager", REGION)
    sm.create_secret(Name="db/weak", SecretString=json.dumps({"username": "weak", "password": "weak-Pw-1"}))
    checks = _doctor(
        tmp_path, capsys,
        {"type": "postgresql", "settings": pg_settings(pg_server)},
        {"type": "mysql", "settings": my_settings(mariadb_server)},
        {"type": "postgresql", "settings": pg_settings(pg_server, secret="db/weak")},
        {"type": "postgresql", "settings": pg_settings(pg_server, secret="db/none")},
    )  # fmt: skip
    by_status = [(c["status"], c["id"].rsplit(":", 1)[-1] if c["status"] != "pass" else "") for c in checks]
    assert by_status[0] == ("pass", "") and by_status[1] == ("pass", "")  # the connectors' own logins
    assert ("fail", "createrole") in by_status and ("warn", "signal_backend") in by_status  # the weak login
    missing = [c for c in checks if "db/none" in c["message"]]
    assert missing and missing[0]["status"] == "fail"
    assert all("weak-Pw-1" not in json.dumps(c) for c in checks)
