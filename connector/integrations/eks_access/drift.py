"""Drift on EKS access entries: what the records on an entry say against the associations it really has.

On every entry of every API-mode cluster in the account's regions, reads only:
- an association the connector owns (tag access-connector/policy/<P>=owned) that a live grant needs but that is
  missing (record without effect);
- a grant record past its expiry while the association it needs is still there (effect past expiry);
- on an entry the connector created (access-connector/managed-by), an association nobody recorded as the
  connector's (foreign access: someone added access to a thing the connector manages and will delete).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from connector.integrations.base import InventoryItem
from connector.integrations.capabilities import (
    EFFECT_PAST_EXPIRY,
    FOREIGN_ACCESS,
    RECORD_WITHOUT_EFFECT,
    DriftScope,
    drift_item,
)
from connector.integrations.eks_access import entries

KIND = "eks_cluster"


def drift_in(eks: Any, scope: DriftScope, region: str) -> Iterator[InventoryItem]:
    account = scope.account_id
    clusters = [n for page in eks.get_paginator("list_clusters").paginate() for n in page.get("clusters", [])]
    for cluster in sorted(clusters):
        try:
            principals = [
                p
                for page in eks.get_paginator("list_access_entries").paginate(clusterName=cluster)
                for p in page.get("accessEntries", [])
            ]
        except ClientError:  # CONFIG_MAP clusters have no access entries
            continue
        for principal in principals:
            entry = entries.describe_entry(eks, cluster, principal)
            tags: dict[str, str] = dict((entry or {}).get("tags") or {})
            records = entries.live_grants(tags)
            owned = {k.removeprefix(entries.POLICY_PREFIX) for k in tags if k.startswith(entries.POLICY_PREFIX)}
            if not records and not owned and tags.get(entries.MANAGED_BY_KEY) != entries.MANAGED_BY_VALUE:
                continue  # nothing of the connector's here
            have = entries.associations(eks, cluster, principal)
            where = f"{account}/{region}/{cluster}/{principal}"
            for key, record in sorted(records.items()):
                needed = set(entries.scopes_of(record))
                if record.expired(scope.now):
                    if needed & set(have):
                        yield drift_item(
                            KIND, EFFECT_PAST_EXPIRY, where, account_id=account, region=region, grant_key=key,
                            expires_epoch=record.expires_epoch,
                            details=f"associations {sorted(needed & set(have))} are still there after the grant's "
                            "record expired" + (f" ({record.problem})" if record.problem else ""),
                            what_to_do="check that the connector's expiry sweep runs for this integration "
                            "(connector_expiry_integration_failing), or revoke the grant",
                        )  # fmt: skip
                    continue
                missing = sorted(needed - set(have))
                if missing:
                    yield drift_item(
                        KIND, RECORD_WITHOUT_EFFECT, where, account_id=account, region=region, grant_key=key,
                        expires_epoch=record.expires_epoch,
                        details=f"the record grants {missing} but the entry has no such association",
                        what_to_do="grant again (re-delivery restores it) or revoke the grant",
                    )  # fmt: skip
            if tags.get(entries.MANAGED_BY_KEY) == entries.MANAGED_BY_VALUE:
                foreign = sorted(set(have) - owned)
                if foreign:
                    yield drift_item(
                        KIND, FOREIGN_ACCESS, where, account_id=account, region=region,
                        details=f"associations {foreign} on this connector-made entry were not made by the connector",
                        what_to_do="move lasting access to an access entry of your own: the connector keeps this "
                        "entry while they remain, but its grants' identity (groups, username) applies to them",
                    )  # fmt: skip
