"""Just-in-time IAM Identity Center access: account assignments, idempotent and crash-safe.

Calls go through the management-account session in the SSO region. Assignments are asynchronous: create
and delete return a request id that is polled (IN_PROGRESS | FAILED | SUCCEEDED; botocore has no waiter)
until it settles or the job's remaining time runs out. A ConflictException (typically a grant racing an
earlier revoke of the same assignment) is retried with jittered exponential backoff.

The record of a live grant: account assignments cannot carry tags, so the connector tags the *permission
set* it assigns, one tag per live grant, written before the assignment is created:
  access-connector/grant/<grant key> = "exp=<epoch|never> acct=<account> <USER|GROUP>=<principal id> own=<0|1>"
own=1: the connector created the assignment (or shares it with another live connector grant) and may
delete it when no other owning grant for the same (account, principal) remains; own=0: the assignment
existed before, set outside the connector, and is never deleted. A permission set holds at most 50 tags,
so at most ~50 live grants (minus the customer's own tags) per permission set: the grant is refused with a
clear message when the set is full. The expiry sweeper reads these tags to revoke expired grants.

Dry run: the reads that decide the plan still happen (ListInstances, permission set lookup, its tags, the
account's assignments); the writes (TagResource, CreateAccountAssignment / DeleteAccountAssignment,
UntagResource) are only listed in the result's `calls`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential

from connector.aws.calls import CallLog
from connector.aws.errors import error_code
from connector.aws.partitions import PARTITION, partition_of_arn
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import ledger, validation

PERMISSION_SET_ARN = re.compile(
    # AWS documents permissionSet/ssoins-.../ps-...; moto (and older consoles) show instance/ssoins-.../ps-...
    rf"^arn:({PARTITION}):sso:::(?:permissionSet|instance)/(ssoins-[a-z0-9-]+)/(ps-[a-z0-9-]+)$"
)
PERMISSION_SET_NAME = re.compile(r"^[\w+=,.@-]{1,32}$")
PRINCIPAL_ID = re.compile(
    r"^([0-9a-f]{10}-|)[A-Fa-f0-9]{8}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{4}-[A-Fa-f0-9]{12}$"
)
MAX_TAGS = ledger.MAX_TAGS_PER_RESOURCE  # tags per permission set
DEFAULT_TIMEOUT = 300.0  # the longest we wait for an assignment to settle when the job has no deadline
# Retry tuning for ConflictException (module-level so tests on a loaded machine can shorten it).
CONFLICT_ATTEMPTS = 8
CONFLICT_WAIT_MAX = 8.0
POLL_FIRST = 0.2
POLL_MAX = 5.0
# Identity Center accepts at most 15 outstanding CreateAccountAssignment calls (not raisable; "Quotas and limits
# in IAM Identity Center"): a creation counts from the call until its status settles. This process keeps at most
# that many in that window; more replicas share the quota, so a 16th outstanding one is ConflictException /
# throttling, which with_conflict_retry and botocore's retries absorb.
MAX_OUTSTANDING_CREATES = 15
_outstanding_creates = threading.BoundedSemaphore(MAX_OUTSTANDING_CREATES)


@contextmanager
def outstanding_create(remaining: float | None) -> Iterator[None]:
    """One of this process's MAX_OUTSTANDING_CREATES slots, waited for within the job's time budget."""
    if not _outstanding_creates.acquire(timeout=_budget(remaining)):
        raise ConnectorError(
            ErrorCode.TIMEOUT,
            f"{MAX_OUTSTANDING_CREATES} account assignments were still being created by this connector; the job "
            "will be retried",
        )
    try:
        yield
    finally:
        _outstanding_creates.release()


class IdentityCenterTarget(BaseModel):
    """The `target` of an Identity Center grant or revoke job. The job's principal is the identity-store
    user or group id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_type: Literal["identity_center_assignment"] = "identity_center_assignment"
    account_id: str = Field(pattern=r"^\d{12}$")
    permission_set: str
    principal_type: Literal["USER", "GROUP"]

    @field_validator("permission_set")
    @classmethod
    def _ps(cls, value: str) -> str:
        if not (PERMISSION_SET_ARN.match(value) or PERMISSION_SET_NAME.match(value)):
            raise ValueError(
                "must be a permission set ARN (arn:<partition>:sso:::permissionSet/ssoins-.../ps-...) or its name"
            )
        return value


def parse_target(raw: Mapping[str, Any]) -> IdentityCenterTarget:
    return validation.parse_target(IdentityCenterTarget, raw)


def validate_principal(principal: str) -> str:
    if not PRINCIPAL_ID.match(principal):
        raise InvalidJob(
            f"principal {principal[:100]!r} is not an Identity Center user or group id: use the identity-store "
            "UserId/GroupId (e.g. 906761a2c4-8c1d2f4e-...), not a user name or email"
        )
    return principal


# -- the record --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IcRecord:
    expires_epoch: int | None
    account_id: str
    principal_type: str
    principal_id: str
    owned: bool
    problem: str = ""  # the expiry could not be decoded: the record counts as expired
    revoking: bool = False  # a revoke has started: no longer a live owner of the assignment

    def same_assignment(self, other: IcRecord) -> bool:
        return (self.account_id, self.principal_type, self.principal_id) == (
            other.account_id,
            other.principal_type,
            other.principal_id,
        )

    def expired(self, now: int) -> bool:
        # A revoke that started and did not finish counts as due: the expiry loop finishes it.
        return self.revoking or ledger.Record(self.expires_epoch, {}, self.problem).expired(now)


def encode_record(record: IcRecord, expires_at: datetime | None) -> str:
    fields = [
        ("acct", record.account_id),
        (record.principal_type, record.principal_id),
        ("own", str(int(record.owned))),
    ]
    if record.revoking:
        fields.append(("rev", "1"))
    return ledger.encode(expires_at, fields, what="this grant's record on the permission set (one tag)")


def decode_record(value: str) -> IcRecord | str:
    """The record, or why it cannot be read as one (then the assignment it guards cannot be named)."""
    raw = ledger.decode(value)
    fields = raw.fields
    principal_type = "USER" if "USER" in fields else "GROUP" if "GROUP" in fields else ""
    account = str(fields.get("acct", ""))
    principal = str(fields.get(principal_type, "")) if principal_type else ""
    if not principal_type or not re.fullmatch(r"\d{12}", account) or not PRINCIPAL_ID.match(principal):
        return "the record names no account and principal"
    owned, revoking = fields.get("own") == "1", fields.get("rev") == "1"
    return IcRecord(raw.expires_epoch, account, principal_type, principal, owned, raw.problem, revoking)


# -- reads -------------------------------------------------------------------------------------------------
def instance_arn(sso: Any) -> str:
    for page in sso.get_paginator("list_instances").paginate():
        for instance in page.get("Instances", []):
            return str(instance["InstanceArn"])
    raise ConnectorError(
        ErrorCode.PRECONDITION_FAILED,
        "IAM Identity Center is not enabled in the SSO region of this integration (ListInstances is empty): "
        "enable it, or set sso_region to the region where it runs",
        retryable=False,
    )


def resolve_permission_set(sso: Any, instance: str, wanted: str, cache: dict[str, str] | None = None) -> str:
    """The permission set ARN for an ARN or a name (names are resolved once per integration and cached)."""
    if m := PERMISSION_SET_ARN.match(wanted):
        if instance.rsplit("/", 1)[-1] != m.group(2) or partition_of_arn(instance) != m.group(1):
            raise InvalidJob(f"permission set {wanted} belongs to another Identity Center instance than {instance}")
        return wanted
    if cache is not None and wanted in cache:
        return cache[wanted]
    for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=instance):
        for arn in page.get("PermissionSets", []):
            ps = sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)["PermissionSet"]
            if cache is not None:
                cache[str(ps.get("Name", ""))] = str(arn)
            if ps.get("Name") == wanted:
                return str(arn)
    raise ConnectorError(
        ErrorCode.NOT_FOUND, f"no permission set named {wanted!r} in Identity Center {instance}", retryable=False
    )


def permission_set_tags(sso: Any, instance: str, ps_arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for page in sso.get_paginator("list_tags_for_resource").paginate(InstanceArn=instance, ResourceArn=ps_arn):
        tags.update({t["Key"]: t.get("Value", "") for t in page.get("Tags", [])})
    return tags


def records_on(tags: Mapping[str, str]) -> tuple[dict[str, IcRecord], dict[str, str]]:
    """The connector's grant records among a permission set's tags: (key -> record, key -> why unreadable)
    — an unreadable one names no assignment, so it can only be reported."""
    live: dict[str, IcRecord] = {}
    unreadable: dict[str, str] = {}
    for key, value in tags.items():
        if key.startswith(ledger.GRANT_PREFIX):
            record = decode_record(value)
            if isinstance(record, IcRecord):
                live[key] = record
            else:
                unreadable[key] = record
    return live, unreadable


def live_records(tags: Mapping[str, str]) -> dict[str, IcRecord]:
    return records_on(tags)[0]


def assignment_exists(sso: Any, instance: str, ps_arn: str, account_id: str, ptype: str, pid: str) -> bool:
    paginator = sso.get_paginator("list_account_assignments")
    for page in paginator.paginate(InstanceArn=instance, AccountId=account_id, PermissionSetArn=ps_arn):
        for a in page.get("AccountAssignments", []):
            if a.get("PrincipalType") == ptype and a.get("PrincipalId") == pid:
                return True
    return False


# -- asynchronous operations -------------------------------------------------------------------------------
def _is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) == "ConflictException"


def _budget(remaining: float | None) -> float:
    return DEFAULT_TIMEOUT if remaining is None else max(1.0, min(DEFAULT_TIMEOUT, remaining))


def with_conflict_retry(call: Callable[[], Any], remaining: float | None) -> Any:
    """Run `call`, retrying ConflictException with jittered exponential backoff within the time budget."""
    retrying = Retrying(
        retry=retry_if_exception(_is_conflict),
        wait=wait_random_exponential(multiplier=0.25, max=CONFLICT_WAIT_MAX),
        stop=stop_after_attempt(CONFLICT_ATTEMPTS) | stop_after_delay(_budget(remaining)),
        reraise=True,
    )
    try:
        return retrying(call)
    except ClientError as exc:
        if _is_conflict(exc):
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"{exc.operation_name}: Identity Center kept reporting a conflicting operation on this assignment "
                f"after {CONFLICT_ATTEMPTS} tries; the job will be retried",
            ) from None
        raise


def wait_for_status(
    describe: Callable[[], Mapping[str, Any]],
    *,
    what: str,
    remaining: float | None,
    check: Callable[[], None],
) -> Mapping[str, Any]:
    """Poll an assignment operation until SUCCEEDED; FAILED raises with AWS's FailureReason."""
    deadline = time.monotonic() + _budget(remaining)
    delay = POLL_FIRST
    while True:
        status = describe()
        state = status.get("Status")
        if state == "SUCCEEDED":
            return status
        if state == "FAILED":
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"Identity Center could not {what}: {status.get('FailureReason', 'no reason given')} "
                f"(request {status.get('RequestId', '?')})",
                retryable=False,
            )
        check()
        if time.monotonic() + delay > deadline:
            raise ConnectorError(
                ErrorCode.TIMEOUT,
                f"Identity Center did not finish to {what} in time (request {status.get('RequestId', '?')} still "
                f"{state}); the job will be retried and picks it up idempotently",
            )
        time.sleep(delay)
        delay = min(POLL_MAX, delay * 2)


# -- grant / revoke ----------------------------------------------------------------------------------------
@dataclass
class Resolved:
    instance: str
    ps_arn: str


def resolve(sso: Any, target: IdentityCenterTarget, cache: dict[str, str] | None = None) -> Resolved:
    instance = instance_arn(sso)
    return Resolved(instance, resolve_permission_set(sso, instance, target.permission_set, cache))


def grant(
    sso: Any,
    *,
    grant_id: str,
    principal: str,
    target: IdentityCenterTarget,
    expires_at: datetime | None,
    dry_run: bool,
    remaining: Callable[[], float | None] = lambda: None,
    check: Callable[[], None] = lambda: None,
    cache: dict[str, str] | None = None,
) -> dict[str, Any]:
    validate_principal(principal)
    where = resolve(sso, target, cache)
    calls = CallLog(sso, dry_run)
    gkey = ledger.grant_key(grant_id)
    tags = permission_set_tags(sso, where.instance, where.ps_arn)
    records = live_records(tags)
    exists = assignment_exists(sso, where.instance, where.ps_arn, target.account_id, target.principal_type, principal)
    this = IcRecord(ledger.epoch_of(expires_at), target.account_id, target.principal_type, principal, True)
    if gkey in records:
        owned = records[gkey].owned  # a re-delivery: keep what the first delivery decided
    else:
        shared = any(r.owned and r.same_assignment(this) for k, r in records.items() if k != gkey)
        owned = not exists or shared  # an assignment made outside the connector is never ours to delete
    this = IcRecord(this.expires_epoch, this.account_id, this.principal_type, this.principal_id, owned)
    value = encode_record(this, expires_at)
    if tags.get(gkey) != value:
        if gkey not in tags and len(tags) >= MAX_TAGS:
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"permission set {where.ps_arn} already carries {len(tags)} tags, the AWS maximum; the connector "
                "records each live grant as one tag there. Remove unused tags or wait for live grants to expire.",
                retryable=False,
            )
        # The record goes first: a crash after it leaves a record the revoke and the sweeper can act on.
        calls(
            "tag_resource",
            InstanceArn=where.instance,
            ResourceArn=where.ps_arn,
            Tags=[{"Key": gkey, "Value": value}],
        )
    created = False
    if not exists:
        params: dict[str, Any] = {
            "InstanceArn": where.instance,
            "TargetId": target.account_id,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": where.ps_arn,
            "PrincipalType": target.principal_type,
            "PrincipalId": principal,
        }
        with outstanding_create(remaining()):  # from the call until its status settles
            response = with_conflict_retry(lambda: calls("create_account_assignment", **params), remaining())
            created = True
            if not dry_run:
                request_id = response["AccountAssignmentCreationStatus"]["RequestId"]
                wait_for_status(
                    lambda: sso.describe_account_assignment_creation_status(
                        InstanceArn=where.instance, AccountAssignmentCreationRequestId=request_id
                    )["AccountAssignmentCreationStatus"],
                    what=f"assign {where.ps_arn} to {target.principal_type} {principal} in {target.account_id}",
                    remaining=remaining(),
                    check=check,
                )
    return {
        "account_id": target.account_id,
        "permission_set_arn": where.ps_arn,
        "instance_arn": where.instance,
        "principal_type": target.principal_type,
        "principal": principal,
        "assignment_created": created,
        "assignment_owned": owned,
        "dry_run": dry_run,
        "calls": calls.calls,
    }


def revoke(
    sso: Any,
    *,
    grant_id: str,
    principal: str,
    target: IdentityCenterTarget,
    dry_run: bool,
    remaining: Callable[[], float | None] = lambda: None,
    check: Callable[[], None] = lambda: None,
    cache: dict[str, str] | None = None,
) -> dict[str, Any]:
    validate_principal(principal)
    where = resolve(sso, target, cache)
    calls = CallLog(sso, dry_run)
    gkey = ledger.grant_key(grant_id)
    records = live_records(permission_set_tags(sso, where.instance, where.ps_arn))
    mine = records.get(gkey)
    base = {
        "account_id": target.account_id,
        "permission_set_arn": where.ps_arn,
        "principal_type": target.principal_type,
        "principal": principal,
        "dry_run": dry_run,
    }
    if mine is None:
        # No record: the connector never made this assignment (or already revoked it). Never delete what
        # another owner set.
        return base | {"already_revoked": True, "assignment_deleted": False, "calls": []}
    if not mine.revoking and not dry_run:
        # Two revokes of grants sharing one assignment must not each keep it for the other: mark this record as
        # revoking, then read again, so each sees the other's mark and the last owner's revoke deletes it.
        when = None if mine.expires_epoch is None else datetime.fromtimestamp(mine.expires_epoch, UTC)
        marked = replace(mine, revoking=True)
        calls(
            "tag_resource",
            InstanceArn=where.instance,
            ResourceArn=where.ps_arn,
            Tags=[{"Key": gkey, "Value": encode_record(marked, when)}],
        )
        records = live_records(permission_set_tags(sso, where.instance, where.ps_arn))
        mine = records.get(gkey, marked)
    others = [r for k, r in records.items() if k != gkey and r.owned and not r.revoking and r.same_assignment(mine)]
    deleted = False
    if mine.owned and not others:
        exists = assignment_exists(
            sso, where.instance, where.ps_arn, mine.account_id, mine.principal_type, mine.principal_id
        )
        if exists:
            params: dict[str, Any] = {
                "InstanceArn": where.instance,
                "TargetId": mine.account_id,
                "TargetType": "AWS_ACCOUNT",
                "PermissionSetArn": where.ps_arn,
                "PrincipalType": mine.principal_type,
                "PrincipalId": mine.principal_id,
            }
            response = with_conflict_retry(
                lambda: calls("delete_account_assignment", ok_codes=("ResourceNotFoundException",), **params),
                remaining(),
            )
            deleted = True
            if response is not None:  # None: dry run, or it was already gone
                request_id = response["AccountAssignmentDeletionStatus"]["RequestId"]
                wait_for_status(
                    lambda: sso.describe_account_assignment_deletion_status(
                        InstanceArn=where.instance, AccountAssignmentDeletionRequestId=request_id
                    )["AccountAssignmentDeletionStatus"],
                    what=f"remove {where.ps_arn} from {mine.principal_type} {mine.principal_id} in {mine.account_id}",
                    remaining=remaining(),
                    check=check,
                )
    # The record goes last: a crash before this leaves it for the next revoke or the sweeper.
    calls("untag_resource", InstanceArn=where.instance, ResourceArn=where.ps_arn, TagKeys=[gkey])
    return base | {
        "already_revoked": False,
        "assignment_deleted": deleted,
        "shared_with_grants": len(others),
        "calls": calls.calls,
    }


def expired_records(sso: Any, now_epoch: int) -> Iterator[tuple[str, str, IcRecord | str]]:
    """(permission set ARN, grant key, record) of every expired grant the connector recorded, and (.., .., why)
    for every record that names no assignment (it cannot be revoked, only reported)."""
    instance = instance_arn(sso)
    for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=instance):
        for ps_arn in page.get("PermissionSets", []):
            tags = permission_set_tags(sso, instance, ps_arn)
            live, unreadable = records_on(tags)
            for key, record in live.items():
                if record.expired(now_epoch):
                    yield str(ps_arn), key, record
            for key, problem in unreadable.items():
                yield str(ps_arn), key, problem
