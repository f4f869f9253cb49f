"""Drift on IAM grants: each role's records against the inline policies they name, reads only.

- a record whose policy is missing (record without effect);
- a record past its expiry whose policy is still there (effect past expiry);
- in a policy the connector made, a statement it did not write: another Sid, another effect, a NotAction or
  NotResource, or an action outside its fixed lists (foreign access: someone widened a connector-made policy).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from connector.aws.iam_roles import role_tags
from connector.integrations import ledger
from connector.integrations.base import InventoryItem
from connector.integrations.capabilities import (
    EFFECT_PAST_EXPIRY,
    FOREIGN_ACCESS,
    RECORD_WITHOUT_EFFECT,
    DriftScope,
    drift_item,
)
from connector.integrations.iam_access import roles
from connector.integrations.iam_access.policy import ACTIONS, policy_name_for

KIND = "iam_resource_access"


def _known() -> dict[str, set[str]]:
    """Every Sid build_document can write, and the actions it may carry."""
    out: dict[str, set[str]] = {}
    for (service, part), levels in ACTIONS.items():
        for level, actions in levels.items():
            sid = re.sub(r"[^A-Za-z0-9]", "", f"{service.title()}{part.title()}{level.title()}")
            out[sid] = {a.lower() for a in actions}
    return out


def foreign_statements(document: Mapping[str, Any]) -> list[str]:
    known = _known()
    found = document.get("Statement", [])
    out = []
    for statement in found if isinstance(found, list) else [found]:
        if not isinstance(statement, Mapping):
            out.append("(not a statement)")
            continue
        sid = str(statement.get("Sid", ""))
        raw = statement.get("Action", [])
        actions = {str(a).lower() for a in (raw if isinstance(raw, list) else [raw])}
        odd = statement.get("Effect") != "Allow" or "NotAction" in statement or "NotResource" in statement
        if sid not in known or odd or actions - known[sid]:
            out.append(sid or "(no Sid)")
    return out


def drift_in(iam: Any, scope: DriftScope) -> Iterator[InventoryItem]:
    account = scope.account_id
    for role in roles.all_role_names(iam):
        tags = role_tags(iam, role)
        for key, value in sorted(tags.items()):
            if not key.startswith(ledger.GRANT_PREFIX):
                continue
            record = ledger.decode(value)
            name = policy_name_for(key)
            where = f"{account}/{role}"
            try:
                raw = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            except iam.exceptions.NoSuchEntityException:
                yield drift_item(
                    KIND, RECORD_WITHOUT_EFFECT, where, account_id=account, grant_key=key,
                    expires_epoch=record.expires_epoch,
                    details=f"the record says role {role} holds policy {name}, but the policy is missing",
                    what_to_do="revoke the grant so its record goes too, or grant it again if it should still hold",
                )  # fmt: skip
                continue
            document = json.loads(raw) if isinstance(raw, str) else raw
            if record.expired(scope.now):
                yield drift_item(
                    KIND, EFFECT_PAST_EXPIRY, where, account_id=account, grant_key=key,
                    expires_epoch=record.expires_epoch,
                    details=f"policy {name} is still on role {role} after its record expired"
                    + (f" ({record.problem})" if record.problem else ""),
                    what_to_do="check that the connector's expiry sweep runs for this integration "
                    "(connector_expiry_integration_failing), or revoke the grant",
                )  # fmt: skip
            foreign = foreign_statements(document if isinstance(document, Mapping) else {})
            if foreign:
                yield drift_item(
                    KIND, FOREIGN_ACCESS, f"{where}/{name}", account_id=account, grant_key=key,
                    details=f"statements {foreign[:10]} in connector-made policy {name} were not written by the connector",
                    what_to_do="move access that should last into a policy of your own: the connector deletes this "
                    "policy when the grant ends",
                )  # fmt: skip
