"""`connector doctor`'s database checks: one line per database tagged for this connector, with the fix."""

from __future__ import annotations

import socket

from connector import doctor
from connector.integrations.aws_organization.settings import parse_settings
from connector.integrations.endpoints import EndpointMap
from connector.sandbox import Sandbox
from tests.databases_aws.conftest import DB_TYPES, settings


def test_doctor_checks_tags_secret_and_reachability(sandbox: Sandbox) -> None:
    info = {d.identifier: d for d in sandbox.seed_info.databases}
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        endpoints = EndpointMap.parse(f"{info['orders'].address}:{info['orders'].port}=127.0.0.1:{port}")
        org = parse_settings(settings(sandbox, resource_types=list(DB_TYPES)))
        checks = {c.id: c for c in doctor.aws_checks(org, sandbox.seed_info.connector_id, 10, endpoints)}
    finally:
        listener.close()
    db = {k.rsplit("/", 1)[-1]: c for k, c in checks.items() if k.startswith("database:")}
    orders = db["orders"]
    assert orders.status == "pass" and f"reachable at 127.0.0.1:{port}" in orders.message
    assert "secret readable" in orders.message
    assert db["secret-untagged"].status == "fail" and "apono-connector-id" in db["secret-untagged"].fix
    assert db["no-auth-tag"].status == "fail" and "auth_type" in db["no-auth-tag"].fix
    # Nothing listens where the Aurora cluster's endpoint leads (no mapping): a network failure with its fix.
    assert db["aurora-app"].status == "fail" and "CONNECTOR_DATABASE_ENDPOINTS" in db["aurora-app"].fix
    assert "billing" not in db  # not tagged for this connector
