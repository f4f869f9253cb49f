"""A tagged RDS MariaDB instance whose endpoint leads to a local MariaDB: discovered and inventoried through the
MySQL engine (databases, tables, roles), named by the endpoint AWS reports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.sandbox import Sandbox, SeedDatabase
from tests.databases.servers import MariaDbServer
from tests.databases_aws.conftest import LOGIN, sync
from tests.sandbox_env import endpoint_map_of, in_account, tagged_database


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDbServer]:
    server = MariaDbServer.start()
    try:
        with server.admin() as conn, conn.cursor() as cur:
            for statement in (
                f"CREATE USER '{LOGIN[0]}'@'%' IDENTIFIED BY '{LOGIN[1]}'",
                f"GRANT SELECT, SHOW DATABASES ON *.* TO '{LOGIN[0]}'@'%'",
                "CREATE DATABASE shop",
                "CREATE TABLE shop.orders (id int)",
                "CREATE TABLE shop.refunds (id int)",
            ):
                cur.execute(statement)
        yield server
    finally:
        server.stop()


def test_a_tagged_mariadb_instance_is_inventoried(sandbox: Sandbox, mariadb: MariaDbServer) -> None:
    made = tagged_database(
        sandbox,
        SeedDatabase("shop-db", engine="mariadb", port=3306, db_name="shop", credentials=LOGIN, account_index=2,
                     connect_to=(mariadb.host, mariadb.port)),
    )  # fmt: skip
    try:
        endpoints = endpoint_map_of([made])
        _, items = sync(
            sandbox, regions=[made.region], resource_types=("rds_instance",), database_ssl_mode="prefer",
            endpoints=endpoints,
        )  # fmt: skip
        address = f"{made.address}:{made.port}"
        tables = {i.id for i in items if i.type == "mysql.table"}
        assert {f"{address}/shop/orders", f"{address}/shop/refunds"} <= tables
        assert all(i.account_id == made.account for i in items if i.type.startswith("mysql."))
        assert any(i.type == "mysql.role" and i.name == LOGIN[0] for i in items)
    finally:
        in_account(sandbox, "rds", made.account, made.region).delete_db_instance(
            DBInstanceIdentifier="shop-db", SkipFinalSnapshot=True
        )
