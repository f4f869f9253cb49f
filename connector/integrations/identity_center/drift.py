"""Drift on Identity Center grants: the records on each permission set against the account assignments.

Per account (reads only): a live record whose assignment is missing (record without effect), and an expired
record of an assignment the connector owns that is still there (effect past expiry). The permission sets'
tags are organisation-wide, so they are read once a minute, not once per account.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from connector.errors import ConnectorError
from connector.integrations.base import InventoryItem
from connector.integrations.capabilities import EFFECT_PAST_EXPIRY, RECORD_WITHOUT_EFFECT, DriftScope, drift_item
from connector.integrations.identity_center import assignments

KIND = "identity_center_assignment"
TAGS_TTL = 60.0


class RecordsCache:
    """(permission set ARN, key, record) of every readable record, read at most once per TTL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._found: tuple[str, list[tuple[str, str, assignments.IcRecord]]] = ("", [])

    def get(self, sso: Any) -> tuple[str, list[tuple[str, str, assignments.IcRecord]]]:
        with self._lock:
            if time.monotonic() - self._at > TAGS_TTL:
                instance = assignments.instance_arn(sso)
                found = []
                for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=instance):
                    for ps_arn in page.get("PermissionSets", []):
                        live, _ = assignments.records_on(assignments.permission_set_tags(sso, instance, ps_arn))
                        found += [(str(ps_arn), key, record) for key, record in sorted(live.items())]
                self._found, self._at = (instance, found), time.monotonic()
            return self._found


def drift_in(sso: Any, cache: RecordsCache, scope: DriftScope) -> Iterator[InventoryItem]:
    try:
        instance, records = cache.get(sso)
    except ConnectorError:  # Identity Center is not enabled: nothing of the connector's to compare
        return
    for ps_arn, key, record in records:
        if record.account_id != scope.account_id:
            continue
        where = f"{ps_arn}/{record.account_id}/{record.principal_type}:{record.principal_id}"
        exists = assignments.assignment_exists(
            sso, instance, ps_arn, record.account_id, record.principal_type, record.principal_id
        )
        if record.expired(scope.now):
            if exists and record.owned:
                yield drift_item(
                    KIND, EFFECT_PAST_EXPIRY, where, account_id=scope.account_id, grant_key=key,
                    expires_epoch=record.expires_epoch,
                    details="the assignment the connector made is still there after its record expired"
                    + (f" ({record.problem})" if record.problem else ""),
                    what_to_do="check that the connector's expiry sweep runs for this integration "
                    "(connector_expiry_integration_failing), or revoke the grant",
                )  # fmt: skip
        elif not exists:
            yield drift_item(
                KIND, RECORD_WITHOUT_EFFECT, where, account_id=scope.account_id, grant_key=key,
                expires_epoch=record.expires_epoch,
                details="the record says this principal is assigned the permission set in this account, but the "
                "assignment is missing",
                what_to_do="grant again (re-delivery makes the assignment) or revoke the grant",
            )  # fmt: skip
