"""Database discovery in the organisation sync, against moto's RDS, Redshift and Secrets Manager over HTTP."""

from __future__ import annotations

import json

from connector.sandbox import Sandbox
from tests.databases_aws.conftest import LOGIN, sync


def _by_name(items: list, type_: str) -> dict:
    return {i.name: i for i in items if i.type == type_}


def _errors(items: list) -> dict[str, dict]:
    return {
        i.id.rsplit("database:", 1)[-1]: dict(i.attributes)
        for i in items
        if i.type == "error" and i.attributes["stage"] == "database"
    }


def test_discovers_instances_clusters_and_redshift_with_their_attributes(sandbox: Sandbox) -> None:
    outcome, items = sync(sandbox)
    assert outcome.outcome == "succeeded", outcome.error
    info = {d.identifier: d for d in sandbox.seed_info.databases}
    instances = _by_name(items, "rds.instance")
    assert set(instances) == {
        "orders",
        "billing",
        "no-auth-tag",
        "no-secret-tag",
        "bad-auth",
        "secret-untagged",
        "iam-off",
        "iam-on",
        "aurora-app-1",
    }
    orders = instances["orders"].attributes
    assert orders["engine"] == "postgres" and orders["family"] == "postgresql"
    assert (orders["address"], orders["port"]) == (info["orders"].address, 15432)
    assert orders["database"] == "orders" and orders["managed"] is True and orders["auth_type"] == "user-password"
    assert orders["secret_arn"] == info["orders"].secret_arn and orders["resource_id"].startswith("db-")
    assert instances["billing"].attributes["managed"] is False and instances["billing"].attributes["secret_arn"] == ""
    assert instances["iam-on"].attributes["iam_auth"] is True and instances["iam-on"].region == "eu-west-1"
    cluster = _by_name(items, "rds.cluster")["aurora-app"]
    assert cluster.attributes["resource_id"].startswith("cluster-") and cluster.attributes["managed"] is True
    member = instances["aurora-app-1"]
    assert member.parent_id == cluster.id and member.attributes["cluster_id"] == "aurora-app"
    assert member.attributes["managed"] is False  # the cluster carries the tags, not its writer
    warehouse = _by_name(items, "redshift.cluster")["warehouse"].attributes
    assert warehouse["engine"] == "redshift" and warehouse["port"] == 15439 and warehouse["database"] == "dev"
    assert outcome.result["items"]["rds.instance"] == 9


def test_every_tag_or_secret_problem_is_an_error_item_naming_the_fix(sandbox: Sandbox) -> None:
    _, items = sync(sandbox)
    errors = _errors(items)
    assert set(errors) == {
        "no-auth-tag", "no-secret-tag", "bad-auth", "secret-untagged", "iam-off", "iam-on", "warehouse"
    }  # fmt: skip
    assert (
        errors["no-auth-tag"]["code"] == "TagMissing"
        and "auth_type = iam-auth or user-password" in errors["no-auth-tag"]["hint"]
    )
    assert errors["no-secret-tag"]["code"] == "TagMissing" and "apono-secret" in errors["no-secret-tag"]["hint"]
    assert errors["bad-auth"]["code"] == "TagInvalid"
    assert errors["secret-untagged"]["code"] == "SecretAccessDenied"
    assert f"apono-connector-id = {sandbox.seed_info.connector_id}" in errors["secret-untagged"]["hint"]
    assert (
        errors["iam-off"]["code"] == "IamAuthDisabled"
        and "--enable-iam-database-authentication" in errors["iam-off"]["hint"]
    )
    # Tagged right, but nothing reaches moto's endpoint addresses (not mapped): the network, with its fix.
    for unreachable in ("iam-on", "warehouse"):
        assert errors[unreachable]["code"] == "UNAVAILABLE", errors[unreachable]
        assert "CONNECTOR_DATABASE_ENDPOINTS" in errors[unreachable]["hint"]
    for error in errors.values():
        assert error["stage"] == "database" and error["resource"].startswith(("arn:aws:rds:", "arn:aws:redshift:"))
    # No error item, log or result holds the secret's password.
    assert LOGIN[1] not in json.dumps([i.attributes for i in items])


def test_a_secret_that_is_missing_or_malformed_is_an_error_item(sandbox: Sandbox) -> None:
    from tests.sandbox_env import in_account

    orders = next(d for d in sandbox.seed_info.databases if d.identifier == "orders")
    sm = in_account(sandbox, "secretsmanager", orders.account, orders.region)
    sm.put_secret_value(SecretId=orders.secret_arn, SecretString='{"username": "apono_connector"}')
    try:
        _, items = sync(sandbox, regions=[orders.region], resource_types=("rds_instance",))
        error = _errors(items)["orders"]
        assert error["code"] == "SecretMalformed" and '"username"' in error["hint"]
    finally:
        sm.put_secret_value(
            SecretId=orders.secret_arn, SecretString=json.dumps({"username": LOGIN[0], "password": LOGIN[1]})
        )
    _, items = sync(sandbox, regions=[orders.region], resource_types=("rds_instance",))
    assert "orders" not in _errors(items)


def test_database_discovery_is_opt_in(sandbox: Sandbox) -> None:
    outcome, items = sync(sandbox, resource_types=())
    assert outcome.outcome == "succeeded"
    assert not [i for i in items if i.type.startswith(("rds.", "redshift.")) or "database:" in i.id]
    assert {i.type for i in items} >= {"aws.account", "eks.cluster"}


def test_a_grant_re_reads_one_database_from_aws(sandbox: Sandbox) -> None:
    """describe_one: what a grant on a discovered database trusts (never the job's host or secret)."""
    import pytest

    from connector.integrations.aws_organization.database_discovery import describe_one
    from tests.sandbox_env import in_account

    info = {d.identifier: d for d in sandbox.seed_info.databases}
    for name, kind, service in (
        ("orders", "rds_instance", "rds"),
        ("aurora-app", "rds_cluster", "rds"),
        ("warehouse", "redshift_cluster", "redshift"),
    ):
        d = info[name]
        found = describe_one(in_account(sandbox, service, d.account, d.region), kind, name, d.account, d.region)
        assert found is not None and (found.arn, found.address, found.port) == (d.arn, d.address, d.port)
        assert found.managed_by(sandbox.seed_info.connector_id) and found.tag_problem() is None
        assert (
            describe_one(in_account(sandbox, service, d.account, d.region), kind, "gone", d.account, d.region) is None
        )
    with pytest.raises(ValueError, match="not an RDS or Redshift identifier"):
        describe_one(None, "rds_instance", "x'; DROP", "210000000002", "us-east-1")


def test_a_managed_database_is_inventoried_through_the_endpoint_map(sandbox: Sandbox) -> None:
    """orders and aurora-app lead (CONNECTOR_DATABASE_ENDPOINTS) to the local PostgreSQL: their databases,
    schemas, tables and roles are in the inventory, named by the endpoint AWS reports, in their account."""
    from tests.databases_aws.conftest import TABLES

    _, items = sync(sandbox)
    info = {d.identifier: d for d in sandbox.seed_info.databases}
    orders = info["orders"]
    address = f"{orders.address}:{orders.port}"
    tables = {i.id for i in items if i.type == "postgresql.table" and i.id.startswith(address)}
    assert tables == {f"{address}/orders/sales/t{n}" for n in range(TABLES)} | {f"{address}/orders/public/payroll"}
    databases = {i.id: i for i in items if i.type == "postgresql.database" and i.id.startswith(address)}
    assert f"{address}/orders" in databases
    assert databases[f"{address}/orders"].parent_id == orders.arn
    assert databases[f"{address}/orders"].account_id == orders.account
    roles = {i.name: i for i in items if i.type == "postgresql.role" and i.id.startswith(address)}
    assert "apono_connector" in roles
    aurora = info["aurora-app"]
    assert any(i.id.startswith(f"{aurora.address}:{aurora.port}/orders/sales/") for i in items)
    # No address of the local server leaks into what the control plane sees as the database's name.
    assert not [i for i in items if "127.0.0.1" in i.id]


def test_a_database_made_after_the_seed_is_found_on_the_next_sync(sandbox: Sandbox) -> None:
    """tests/sandbox_env.tagged_database: a Redshift cluster tagged for the connector, made by a test."""
    from connector.sandbox import SeedDatabase
    from tests.sandbox_env import endpoint_map_of, in_account, tagged_database

    made = tagged_database(
        sandbox,
        SeedDatabase("late-warehouse", kind="redshift_cluster", engine="redshift", port=5439, db_name="dev",
                     credentials=LOGIN, account_index=2, connect_to=("127.0.0.1", 1)),
    )  # fmt: skip
    try:
        assert endpoint_map_of([made]).resolve(made.address, made.port) == ("127.0.0.1", 1)
        _, items = sync(sandbox, regions=[made.region], resource_types=("redshift_cluster",))
        found = _by_name(items, "redshift.cluster")["late-warehouse"]
        assert found.account_id == made.account and found.attributes["managed"] is True
        assert found.attributes["secret_arn"] == made.secret_arn
    finally:  # the other tests of this package see the seed as it was
        in_account(sandbox, "redshift", made.account, made.region).delete_cluster(
            ClusterIdentifier="late-warehouse", SkipFinalClusterSnapshot=True
        )


def test_a_surprise_in_one_database_is_its_error_item_and_the_others_go_on(sandbox: Sandbox) -> None:
    from collections.abc import Iterator

    from connector.integrations.aws_organization.database_scope import DatabaseScope
    from tests.sandbox_env import in_account

    orders = next(d for d in sandbox.seed_info.databases if d.identifier == "orders")
    seen: list[str] = []

    def contents(db: object, ready: object) -> Iterator[object]:
        seen.append(db.identifier)  # type: ignore[attr-defined]
        if db.identifier == "orders":  # type: ignore[attr-defined]
            raise RuntimeError(f"boom {LOGIN[1]}")
        return iter(())

    scope = DatabaseScope(
        sandbox.seed_info.connector_id,
        lambda service, region: in_account(sandbox, service, orders.account, region),
        lambda host, port: (host, port),
        frozenset({"rds_instance"}),
        contents,  # type: ignore[arg-type]
    )
    items = list(scope.items(orders.account, orders.region))
    error = next(i for i in items if i.type == "error" and i.id.endswith("database:orders"))
    assert error.attributes["code"] == "INTERNAL" and "RuntimeError" in error.attributes["message"]
    assert LOGIN[1] not in json.dumps(error.attributes)  # the exception's text is never repeated
    assert len(seen) > 1  # the databases after it were still listed
