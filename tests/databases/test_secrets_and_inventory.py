"""The connector's own login is resolved where it runs (Secrets Manager in the sandbox, a Kubernetes Secret
through the reader), cached briefly, and never repeated; a missing or wrong secret is a clear error naming the
fix. Inventory of a real server: databases, schemas, tables, roles; an unreachable server is an `error` item."""

from __future__ import annotations

import json
from typing import Any

from connector.integrations.base import JobContext, Services
from connector.integrations.databases import DatabaseSync
from connector.integrations.databases.integration import MySqlIntegration, PostgresIntegration
from connector.integrations.databases.secrets import SecretResolver
from connector.sandbox import Sandbox
from tests.databases.conftest import (
    CONNECTOR_ID,
    PG_CONNECTOR_PASSWORD,
    REGION,
    dispatcher,
    grant_job,
    my_settings,
    pg_settings,
    requester,
    run,
)
from tests.databases.servers import MariaDbServer, PostgresServer, free_port

TARGET = {"database": "app", "schema": "sales", "level": "read-only"}


def _grant_with(sandbox: Sandbox, pg_server: PostgresServer, secret: str) -> Any:
    return run(
        dispatcher(),
        grant_job("postgresql", pg_settings(pg_server, secret=secret), "s-1", TARGET, key=requester().public),
    )


def test_missing_secret_names_the_secret_and_the_fix(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    outcome = _grant_with(sandbox, pg_server, "db/missing")
    assert outcome.error is not None and outcome.error.code == "NOT_FOUND"
    assert "db/missing" in outcome.error.message and "apono-secret" in outcome.error.message


def test_malformed_secrets_are_refused_without_repeating_them(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    sm = sandbox.client("secretsmanager", REGION)
    sm.create_secret(Name="db/not-json", SecretString="hunter2-not-json")
    sm.create_secret(Name="db/no-password", SecretString=json.dumps({"username": "connector", "pass": "hunter3"}))
    sm.create_secret(
        Name="db/wrong-password", SecretString=json.dumps({"username": "connector", "password": "hunter4-wrong"})
    )
    sm.create_secret(
        Name="db/other-host",
        SecretString=json.dumps(
            {"username": "connector", "password": PG_CONNECTOR_PASSWORD, "host": "db.elsewhere.example"}
        ),
    )
    expected = {
        "db/not-json": ("INVALID_SETTINGS", "not JSON"),
        "db/no-password": ("INVALID_SETTINGS", "password"),
        "db/wrong-password": ("ACCESS_DENIED", "refused the connector's login"),
        "db/other-host": ("PRECONDITION_FAILED", "db.elsewhere.example"),
    }
    for secret, (code, words) in expected.items():
        outcome = _grant_with(sandbox, pg_server, secret)
        assert outcome.error is not None and outcome.error.code == code, (secret, outcome.error)
        assert (words in outcome.error.message and secret in outcome.error.message) or code == "ACCESS_DENIED"
        for leaked in ("hunter2", "hunter3", "hunter4", PG_CONNECTOR_PASSWORD):
            assert leaked not in outcome.error.message


def test_secrets_are_cached_briefly_and_forgotten_on_refusal(sandbox: Sandbox) -> None:
    calls: list[str] = []
    sm = sandbox.client("secretsmanager", REGION)

    class Counting:
        def get_secret_value(self, **kwargs: Any) -> Any:
            calls.append(kwargs["SecretId"])
            return sm.get_secret_value(**kwargs)

    resolver = SecretResolver(ttl=60)
    first = resolver.resolve("db/pg-connector", region=REGION, secretsmanager=lambda region: Counting())
    second = resolver.resolve("db/pg-connector", region=REGION, secretsmanager=lambda region: Counting())
    assert first == second and calls == ["db/pg-connector"]
    assert PG_CONNECTOR_PASSWORD not in repr(first)
    resolver.forget("db/pg-connector")
    resolver.resolve("db/pg-connector", region=REGION, secretsmanager=lambda region: Counting())
    assert len(calls) == 2


def test_kubernetes_secret_reference() -> None:
    def reader(namespace: str, name: str) -> dict[str, bytes]:
        assert (namespace, name) == ("databases", "pg-login")
        return {"username": b"connector", "password": b"k8s-Pw-1"}

    creds = SecretResolver(kube_reader=reader).resolve("k8s:databases/pg-login", region="", secretsmanager=None)
    assert (creds.username, creds.password) == ("connector", "k8s-Pw-1")


def _ctx() -> tuple[JobContext, list[Any]]:
    items: list[Any] = []
    ctx = JobContext(job_id="sync", attempt=1, connector_id=CONNECTOR_ID, integration_id="db-1", emit=items.append)
    return ctx, items


def test_inventory_of_postgresql_and_mariadb(
    sandbox: Sandbox, pg_server: PostgresServer, mariadb_server: MariaDbServer
) -> None:
    services = Services(connector_id=CONNECTOR_ID)
    ctx, items = _ctx()
    result = DatabaseSync(PostgresIntegration("db-1", pg_settings(pg_server), services)).sync(None, ctx)  # type: ignore[arg-type]
    ids = {i.id.split("/", 1)[1] for i in items}
    assert {"app", "app/sales", "app/sales/orders", "app/public/payroll", "role/reporting"} <= ids
    assert not any(i.id.endswith("role/access_connector_managed") for i in items)
    assert result["items"]["postgresql.table"] >= 3
    ctx, items = _ctx()
    DatabaseSync(MySqlIntegration("db-2", my_settings(mariadb_server), services)).sync(None, ctx)  # type: ignore[arg-type]
    ids = {i.id.split("/", 1)[1] for i in items}
    assert {"shop", "shop/orders", "hr/people", "role/reader"} <= ids
    assert not any("access_connector" in i.id for i in items)


def test_unreachable_database_is_an_error_item_with_the_fix(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    ctx, items = _ctx()
    settings = pg_settings(pg_server, port=free_port())
    DatabaseSync(PostgresIntegration("db-3", settings, Services(connector_id=CONNECTOR_ID))).sync(None, ctx)  # type: ignore[arg-type]
    assert [i.type for i in items] == ["error"]
    assert items[0].attributes["error_code"] == "UNAVAILABLE" and "network" in items[0].attributes["error"]


def test_inventory_is_bounded(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    ctx, items = _ctx()
    settings = pg_settings(pg_server, max_inventory_items=2)
    DatabaseSync(PostgresIntegration("db-4", settings, Services(connector_id=CONNECTOR_ID))).sync(None, ctx)  # type: ignore[arg-type]
    assert items[-1].type == "error" and items[-1].attributes["error_code"] == "TRUNCATED"


def test_kubernetes_secret_through_the_api_server(sandbox: Sandbox, pg_server: PostgresServer) -> None:
    """The real kubernetes client against the fake API server (our fake of that boundary), then a real login."""
    import base64

    from connector.integrations.databases.secrets import kube_secret_reader
    from connector.k8s.client import token_client
    from tests.k8s.fake_apiserver import FakeApiServer

    with FakeApiServer() as api:
        api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "databases"}})
        data = {"username": "connector", "password": PG_CONNECTOR_PASSWORD}
        api.seed(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "pg-login", "namespace": "databases"},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
        )
        reader = kube_secret_reader(token_client(api.url, None, None))
        services = Services(connector_id=CONNECTOR_ID, extra={"database_secrets": SecretResolver(kube_reader=reader)})
        integration = PostgresIntegration("k8s-1", pg_settings(pg_server, secret="k8s:databases/pg-login"), services)
        assert integration.engine().check()["user"] == "connector"
        missing = PostgresIntegration("k8s-2", pg_settings(pg_server, secret="k8s:databases/nope"), services)
        try:
            missing.engine().check()
        except Exception as exc:
            assert getattr(exc, "code", "") == "NOT_FOUND" and "databases/nope" in str(exc)
        else:
            raise AssertionError("a missing Kubernetes Secret resolved")


def test_iam_auth_login_is_a_token_for_the_real_endpoint(sandbox: Sandbox) -> None:
    """iam-auth: the connector's password is an RDS IAM token (a local SigV4 presign) for the instance's real
    address, even when the address dialled is a local mapping. That a server accepts it is not shown here."""
    from connector.integrations.databases.connect import open_engine
    from connector.integrations.databases.settings import DatabaseSettings
    from connector.logging import redact_text

    settings = DatabaseSettings.parse(
        "postgresql",
        {
            "host": "db1.abc.eu-west-1.rds.amazonaws.com",
            "auth_type": "iam-auth",
            "username": "apono_connector",
            "region": REGION,
        },
    )

    class Mapping:
        def resolve(self, host: str, port: int) -> tuple[str, int]:
            return ("127.0.0.1", 6543)

    engine = open_engine(
        settings, resolver=SecretResolver(), secretsmanager=None, rds=lambda region: sandbox.client("rds", region),
        endpoints=Mapping(),
    )  # fmt: skip
    creds = engine._credentials()  # type: ignore[attr-defined]
    assert creds.username == "apono_connector"
    assert creds.password.startswith("db1.abc.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=apono_connector")
    assert "X-Amz-Signature=" in creds.password and redact_text(creds.password) != creds.password
    info = engine.conninfo("postgres", creds)  # type: ignore[attr-defined]
    assert (info["host"], info["hostaddr"], info["port"]) == ("db1.abc.eu-west-1.rds.amazonaws.com", "127.0.0.1", 6543)
