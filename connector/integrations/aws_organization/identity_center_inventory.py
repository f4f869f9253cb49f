"""IAM Identity Center: instance, permission sets (managed / inline policies), users, groups, and the
account assignments per account. Read through the management account, in the SSO region.

What it costs follows what is provisioned: an assignment can only exist where its permission set is
provisioned, so the accounts of each set come first (ListAccountsForProvisionedPermissionSet, one paginated
call per set) and ListAccountAssignments runs only for the (account, set) pairs found there, not for every
account x set (1,000 accounts x 20 sets was 20,000 calls, ~17 min at Identity Center's rate).

Identity Center's APIs share one quota of about 20 calls/s per instance ("Quotas and limits in IAM Identity
Center"): every sso-admin request of this process to a region, retries included, is paced to
CALLS_PER_SECOND (a botocore before-send hook on the client), so a sync does not spend its calls on
ThrottlingExceptions nor starve the grants that share the quota.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from connector.aws.errors import error_code
from connector.integrations.base import ContextThreadPool, InventoryItem


@dataclass
class IdentityCenter:
    instance_arn: str
    identity_store_id: str
    permission_sets: list[str] = field(default_factory=list)
    provisioned: dict[str, list[str]] = field(default_factory=dict)  # account -> sets provisioned there


CALLS_PER_SECOND = 20.0  # the documented shared quota
WORKERS = 4  # calls in flight to keep 20/s busy at 0.1-0.2 s per call
PACER_BURST = 10


class Pacer:
    """A token bucket (thread-safe): `rate` calls/s, up to `burst` at once after a pause. The burst lets a caller
    that fell behind (a busy process) catch up; it is half of what Identity Center's bucket allows."""

    def __init__(self, rate: float, burst: int = PACER_BURST) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._last = time.monotonic()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - 1.0
            self._last = now
            delay = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if delay > 0:
            time.sleep(delay)


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def paced(sso: Any) -> Any:
    """`sso` with this process's pacing of its region's sso-admin calls (idempotent: one hook per emitter)."""
    region = str(sso.meta.region_name or "")
    with _pacers_lock:
        pacer = _pacers.setdefault(region, Pacer(CALLS_PER_SECOND))

    def before_send(**_: Any) -> None:
        pacer.wait()  # returns None: the request goes on

    sso.meta.events.register("before-send.sso-admin", before_send, unique_id=f"connector-sso-pacing-{region}")
    return sso


def discover(sso: Any) -> IdentityCenter | None:
    for page in sso.get_paginator("list_instances").paginate():
        for instance in page.get("Instances", []):
            return IdentityCenter(instance["InstanceArn"], instance["IdentityStoreId"])
    return None


def directory_items(sso: Any, store: Any, ic: IdentityCenter) -> Iterator[InventoryItem]:
    yield InventoryItem(
        type="sso.instance",
        id=ic.instance_arn,
        name=ic.identity_store_id,
        attributes={"identity_store_id": ic.identity_store_id},
    )
    load_permission_sets(sso, ic)
    with ContextThreadPool(max_workers=WORKERS, thread_name_prefix="sso-sets") as pool:  # paced all the same
        yield from pool.map(lambda ps_arn: _permission_set(sso, ic.instance_arn, ps_arn), ic.permission_sets)
    for page in store.get_paginator("list_users").paginate(IdentityStoreId=ic.identity_store_id):
        for user in page.get("Users", []):
            yield InventoryItem(
                type="sso.user",
                id=user["UserId"],
                name=user.get("UserName", ""),
                attributes={
                    "display_name": user.get("DisplayName", ""),
                    "emails": [e.get("Value", "") for e in user.get("Emails", []) if e.get("Primary", True)],
                },
            )
    for page in store.get_paginator("list_groups").paginate(IdentityStoreId=ic.identity_store_id):
        for group in page.get("Groups", []):
            yield InventoryItem(
                type="sso.group",
                id=group["GroupId"],
                name=group.get("DisplayName", ""),
                attributes={"description": group.get("Description", "")},
            )


def _permission_set(sso: Any, instance_arn: str, ps_arn: str) -> InventoryItem:
    ps = sso.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=ps_arn)["PermissionSet"]
    managed = [
        p.get("Name", p.get("Arn", ""))
        for page in sso.get_paginator("list_managed_policies_in_permission_set").paginate(
            InstanceArn=instance_arn, PermissionSetArn=ps_arn
        )
        for p in page.get("AttachedManagedPolicies", [])
    ]
    try:
        inline = sso.get_inline_policy_for_permission_set(InstanceArn=instance_arn, PermissionSetArn=ps_arn)
        has_inline = bool(inline.get("InlinePolicy"))
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        has_inline = False
    return InventoryItem(
        type="sso.permission_set",
        id=ps_arn,
        name=ps.get("Name", ""),
        attributes={
            "description": ps.get("Description", ""),
            "session_duration": ps.get("SessionDuration", ""),
            "managed_policies": managed,
            "has_inline_policy": has_inline,
        },
    )


def load_permission_sets(sso: Any, ic: IdentityCenter) -> None:
    """Permission set ARNs only (an account-scoped sync lists assignments without the directory)."""
    for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=ic.instance_arn):
        ic.permission_sets.extend(page.get("PermissionSets", []))


def load_provisioning(sso: Any, ic: IdentityCenter) -> None:
    """The accounts each permission set is provisioned to (one paginated call per set, WORKERS at a time)."""

    def accounts_of(ps_arn: str) -> list[str]:
        pages = sso.get_paginator("list_accounts_for_provisioned_permission_set").paginate(
            InstanceArn=ic.instance_arn, PermissionSetArn=ps_arn
        )
        return [account_id for page in pages for account_id in page.get("AccountIds", [])]

    with ContextThreadPool(max_workers=WORKERS, thread_name_prefix="sso-provisioned") as pool:
        for ps_arn, accounts in zip(ic.permission_sets, pool.map(accounts_of, ic.permission_sets), strict=True):
            for account_id in accounts:
                ic.provisioned.setdefault(account_id, []).append(ps_arn)


def assignment_items(sso: Any, ic: IdentityCenter, account_id: str) -> Iterator[InventoryItem]:
    """Existing assignments in one account: who already holds which permission set there (only the sets
    provisioned to it: see load_provisioning)."""
    for ps_arn in ic.provisioned.get(account_id, ()):
        paginator = sso.get_paginator("list_account_assignments")
        for page in paginator.paginate(InstanceArn=ic.instance_arn, AccountId=account_id, PermissionSetArn=ps_arn):
            for a in page.get("AccountAssignments", []):
                yield InventoryItem(
                    type="sso.assignment",
                    id=f"{account_id}/{ps_arn.rsplit('/', 1)[-1]}/{a['PrincipalType']}/{a['PrincipalId']}",
                    account_id=account_id,
                    parent_id=ps_arn,
                    attributes={
                        "permission_set_arn": ps_arn,
                        "principal_type": a["PrincipalType"],
                        "principal_id": a["PrincipalId"],
                    },
                )


class AssignmentPrefetch:
    """The assignments of every account some permission set is provisioned to (or of `accounts` among them),
    fetched from the start on WORKERS threads at Identity Center's pace: not tied to the org walk's order nor to
    the sync's workers (at 20 calls/s it is the longest part of a large sync). Handed out per account once the
    walk has kept it; what is never asked for is dropped."""

    def __init__(
        self,
        sso: Any,
        ic: IdentityCenter,
        accounts: Iterable[str] | None,
        check: Callable[[], None],
        region: str,
    ) -> None:
        self.region = region
        wanted = sorted(ic.provisioned) if accounts is None else sorted(set(accounts) & set(ic.provisioned))
        self._pool = ContextThreadPool(max_workers=WORKERS, thread_name_prefix="sso-assignments")

        def fetch(account_id: str) -> list[InventoryItem]:
            check()
            return list(assignment_items(sso, ic, account_id))

        self._futures: dict[str, Future[list[InventoryItem]]] = {a: self._pool.submit(fetch, a) for a in wanted}

    def has(self, account_id: str) -> bool:
        return account_id in self._futures

    def items(self, account_id: str) -> list[InventoryItem]:
        """Waits for the account's assignments; raises what fetching them raised."""
        return self._futures[account_id].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
