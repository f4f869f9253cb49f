"""Just-in-time EKS access through access entries: grant and revoke, idempotent and crash-safe.

The record of what the connector granted lives on the access entry itself, as tags (the ledger's compact
form), so it survives restarts and is shared by every replica:
  access-connector/managed-by = access-connector    the connector created this entry (it may delete it)
  access-connector/grant/<grant key> = "exp=<epoch|never> <Policy>=cluster <Policy>=ns:a+b"
                                                    one tag per live grant: what it granted, until when
  access-connector/policy/<Policy> = owned          the connector created this policy association
An association is only ever changed if the connector owns it; its scope is the union of the live grants
that use it. Ownership tags are written before the association is made, so a crash between two calls can
never leave access the connector does not know about. Revoke recomputes each owned association from the
grants that remain, removes this grant's tag, and deletes the entry only if the connector created it, no
live grant remains and nobody else associated a policy with it meanwhile.

The entry's Kubernetes identity (groups, username) is fixed per entry, not per grant, so the grants on an
entry the connector created share it: a grant that asks for another identity while other grants live there
is refused, and one that finds no other grant sets it (UpdateAccessEntry). When the last grant goes but the
entry must stay (someone associated a policy with it outside the connector), its identity goes back to the
default username and no groups: groups a grant asked for never outlive it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from connector.aws.calls import CallLog
from connector.aws.errors import error_code
from connector.aws.partitions import eks_access_policy_arn
from connector.errors import ConnectorError, ErrorCode
from connector.integrations import ledger
from connector.integrations.eks_access.target import DEFAULT_USERNAME, EksTarget, Scope, policy_name

MANAGED_BY_KEY = "access-connector/managed-by"
MANAGED_BY_VALUE = "access-connector"
GRANT_PREFIX = ledger.GRANT_PREFIX
POLICY_PREFIX = "access-connector/policy/"
POLICY_OWNED = "owned"


def encode_grant(expires_at: datetime | None, policies: Iterable[str], scope: Scope) -> str:
    scope_text = "cluster" if scope is None else "ns:" + "+".join(scope)
    return ledger.encode(
        expires_at,
        [(p, scope_text) for p in policies],
        what="this grant's record on the access entry (one tag)",
    )


def scopes_of(record: ledger.Record) -> dict[str, Scope]:
    """Policy name -> scope, from a grant record's fields."""
    out: dict[str, Scope] = {}
    for key, raw in record.fields.items():
        if raw == "cluster":
            out[key] = None
        elif isinstance(raw, str) and raw.startswith("ns:"):
            out[key] = tuple(sorted(n for n in raw[3:].split("+") if n))
    return out


def union_scope(scopes: Iterable[Scope]) -> Scope | Literal[False]:
    """The scope that covers all `scopes`: None (cluster) if any is cluster-wide; False if there are none."""
    result: set[str] = set()
    seen = False
    for scope in scopes:
        seen = True
        if scope is None:
            return None
        result.update(scope)
    return tuple(sorted(result)) if seen else False


def access_scope(scope: Scope) -> dict[str, Any]:
    return {"type": "cluster"} if scope is None else {"type": "namespace", "namespaces": list(scope)}


def scope_of(raw: Mapping[str, Any]) -> Scope:
    return None if raw.get("type") == "cluster" else tuple(sorted(raw.get("namespaces", [])))


def covers(have: Scope, want: Scope) -> bool:
    if have is None:
        return True
    return want is not None and set(want) <= set(have)


def _not_found(exc: ClientError) -> bool:
    return error_code(exc) == "ResourceNotFoundException"


def describe_entry(client: Any, cluster: str, principal: str) -> dict[str, Any] | None:
    try:
        return dict(client.describe_access_entry(clusterName=cluster, principalArn=principal)["accessEntry"])
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise


def associations(client: Any, cluster: str, principal: str) -> dict[str, Scope]:
    found: dict[str, Scope] = {}
    paginator = client.get_paginator("list_associated_access_policies")
    for page in paginator.paginate(clusterName=cluster, principalArn=principal):
        for assoc in page.get("associatedAccessPolicies", []):
            found[policy_name(assoc["policyArn"])] = scope_of(assoc.get("accessScope", {}))
    return found


def require_access_entries(client: Any, cluster: str) -> dict[str, Any]:
    try:
        info = client.describe_cluster(name=cluster)["cluster"]
    except ClientError as exc:
        if _not_found(exc):
            raise ConnectorError(ErrorCode.NOT_FOUND, f"EKS cluster {cluster!r} not found", retryable=False) from None
        raise
    mode = info.get("accessConfig", {}).get("authenticationMode", "CONFIG_MAP")
    if mode not in ("API", "API_AND_CONFIG_MAP"):
        raise ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"EKS cluster {cluster!r} uses authentication mode {mode}, which has no access entries. Enable them with: "
            f"aws eks update-cluster-config --name {cluster} --access-config authenticationMode=API_AND_CONFIG_MAP "
            "(or use the aws-auth integration for this cluster)",
            retryable=False,
        )
    return dict(info)


def live_grants(tags: Mapping[str, str], exclude: str = "") -> dict[str, ledger.Record]:
    return {k: ledger.decode(v) for k, v in tags.items() if k.startswith(GRANT_PREFIX) and k != exclude}


def _managed(tags: Mapping[str, str]) -> bool:
    return tags.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE


def _identity(entry: Mapping[str, Any]) -> tuple[list[str], str | None]:
    return sorted(entry.get("kubernetesGroups") or []), entry.get("username")


def _identity_update(entry: Mapping[str, Any], principal: str, target: EksTarget, gkey: str) -> dict[str, Any]:
    """The UpdateAccessEntry parameters that give an existing entry the identity this grant asks for ({} when it
    has it already). Refused when that would change what other grants, or someone else, set."""
    tags = entry.get("tags") or {}
    groups, username = _identity(entry)
    wanted = sorted(target.kubernetes_groups)
    if not _managed(tags):
        # Not the connector's entry: its username and groups are its owner's, and never changed.
        if target.kubernetes_groups and groups != wanted:
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"the access entry for {principal} already exists with Kubernetes groups {groups}; the connector "
                "does not change them. Grant without kubernetes_groups, or revoke the grants on that entry first.",
                retryable=False,
            )
        if target.username != DEFAULT_USERNAME and username not in (None, target.username):
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"the access entry for {principal} already exists with another username; the connector does not "
                "change it. Grant with the entry's username, or revoke the grants on that entry first.",
                retryable=False,
            )
        return {}
    if groups == wanted and username in (None, target.username):
        return {}
    if live_grants(tags, exclude=gkey):
        raise ConnectorError(
            ErrorCode.CONFLICT,
            f"the access entry for {principal} on {target.cluster} carries other live grants of the connector, "
            f"made with Kubernetes groups {groups} and username {username!r}; grants on one entry share its "
            f"identity, and this one asks for groups {wanted} and username {target.username!r}. Ask for the same, "
            "or wait for those grants to end.",
            retryable=False,
        )
    return {"kubernetesGroups": wanted, "username": target.username}


def grant(
    client: Any,
    *,
    grant_id: str,
    principal: str,
    target: EksTarget,
    expires_at: datetime | None,
    dry_run: bool,
) -> dict[str, Any]:
    gkey = ledger.grant_key(grant_id)
    gvalue = encode_grant(expires_at, target.policy_names, target.grant_scope)  # too long: refused before any call
    require_access_entries(client, target.cluster)
    calls = CallLog(client, dry_run)
    entry = describe_entry(client, target.cluster, principal)
    created = False
    if entry is None:
        tags = {MANAGED_BY_KEY: MANAGED_BY_VALUE, gkey: gvalue} | {
            POLICY_PREFIX + p: POLICY_OWNED for p in target.policy_names
        }
        params: dict[str, Any] = {
            "clusterName": target.cluster,
            "principalArn": principal,
            "username": target.username,
            "type": "STANDARD",
            "tags": tags,
            "clientRequestToken": hashlib.sha256(f"{grant_id}|{principal}".encode()).hexdigest()[:36],
        }
        if target.kubernetes_groups:
            params["kubernetesGroups"] = list(target.kubernetes_groups)
        result = calls("create_access_entry", ok_codes=("ResourceInUseException",), **params)
        created = result is not None or dry_run
        if dry_run:
            entry = {"tags": tags, "accessEntryArn": ""}
        elif result is not None and result.get("accessEntry"):
            entry = dict(result["accessEntry"])  # CreateAccessEntry answers with the entry: no need to read it back
        else:  # it was there already (a concurrent or repeated delivery): read what is there
            entry = describe_entry(client, target.cluster, principal)
        if entry is None:
            raise ConnectorError(ErrorCode.CONFLICT, "the access entry vanished right after it was created; retrying")
    if entry.get("type", "STANDARD") != "STANDARD":
        raise ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"the access entry for {principal} is of type {entry.get('type')}, which cannot carry access policies",
            retryable=False,
        )
    identity = {} if created else _identity_update(entry, principal, target, gkey)
    tags = dict(entry.get("tags") or {})
    existing = associations(client, target.cluster, principal) if not created else {}
    # Refuse before changing anything if an association we do not own would have to change.
    for name in target.policy_names:
        foreign = name in existing and tags.get(POLICY_PREFIX + name) != POLICY_OWNED
        if foreign and not covers(existing[name], target.grant_scope):
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"{principal} already has {name} on {target.cluster} with another scope, set outside the connector; "
                "the connector does not change associations it does not own. Remove it or grant within its scope.",
                retryable=False,
            )
    missing_tags = {gkey: gvalue} if tags.get(gkey) != gvalue else {}
    missing_tags |= {
        POLICY_PREFIX + n: POLICY_OWNED
        for n in target.policy_names
        if n not in existing and tags.get(POLICY_PREFIX + n) != POLICY_OWNED
    }
    if len(tags.keys() | missing_tags.keys()) > ledger.MAX_TAGS_PER_RESOURCE:
        live = sum(1 for k in tags if k.startswith(GRANT_PREFIX))
        raise ConnectorError(
            ErrorCode.PRECONDITION_FAILED,
            f"the access entry for {principal} on {target.cluster} would need {len(tags.keys() | missing_tags.keys())} "
            f"tags; AWS allows {ledger.MAX_TAGS_PER_RESOURCE} per resource, and it already has {len(tags)} ({live} "
            "live grants of the connector). Let earlier grants to this principal expire or be revoked, or grant to "
            "another role.",
            retryable=False,
        )
    if missing_tags:  # the record first: a crash after it leaves a record the revoke and the expiry loop act on
        calls("tag_resource", resourceArn=entry["accessEntryArn"], tags=missing_tags)
        tags |= missing_tags
    if identity:  # after the record: a crash between the two leaves a record that resets it on revoke
        calls("update_access_entry", clusterName=target.cluster, principalArn=principal, **identity)
    grants = live_grants(tags)
    arns = target.policy_arns
    for name in target.policy_names:
        if tags.get(POLICY_PREFIX + name) != POLICY_OWNED:
            continue  # a foreign association that already covers this grant
        desired = union_scope(scopes_of(g)[name] for g in grants.values() if name in scopes_of(g))
        if desired is not False and existing.get(name, False) != desired:
            calls(
                "associate_access_policy",
                clusterName=target.cluster,
                principalArn=principal,
                policyArn=arns[name],
                accessScope=access_scope(desired),
            )
    return {
        "cluster": target.cluster,
        "account_id": target.account_id,
        "region": target.region,
        "principal": principal,
        "access_entry_arn": entry.get("accessEntryArn", ""),
        "entry_created": created,
        "policies": list(arns.values()),
        "scope": access_scope(target.grant_scope),
        "dry_run": dry_run,
        "calls": calls.calls,
    }


def revoke(client: Any, *, grant_id: str, principal: str, target: EksTarget, dry_run: bool) -> dict[str, Any]:
    calls = CallLog(client, dry_run)
    base = {"cluster": target.cluster, "account_id": target.account_id, "region": target.region, "principal": principal}
    try:
        entry = describe_entry(client, target.cluster, principal)
    except ClientError as exc:
        if error_code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
            entry = None
        else:
            raise
    if entry is None:
        return base | {"already_revoked": True, "entry_deleted": False, "dry_run": dry_run, "calls": []}
    tags = dict(entry.get("tags") or {})
    gkey = ledger.grant_key(grant_id)
    mine = (
        scopes_of(ledger.decode(tags[gkey])) if gkey in tags else dict.fromkeys(target.policy_names, target.grant_scope)
    )
    remaining = live_grants(tags, exclude=gkey)
    existing = associations(client, target.cluster, principal)
    owned = {
        k.removeprefix(POLICY_PREFIX) for k, v in tags.items() if k.startswith(POLICY_PREFIX) and v == POLICY_OWNED
    }
    # Every association the connector owns is recomputed from the grants that remain, not only the ones this
    # grant's record names: a record that cannot be decoded names none, and its access must still go.
    for name in sorted(owned | set(mine)):
        if name not in owned:
            continue  # never touch an association the connector did not create
        desired = union_scope(scopes_of(g)[name] for g in remaining.values() if name in scopes_of(g))
        arn = eks_access_policy_arn(target.partition, name)
        if desired is False:
            if name in existing:
                calls(
                    "disassociate_access_policy",
                    ok_codes=("ResourceNotFoundException",),
                    clusterName=target.cluster,
                    principalArn=principal,
                    policyArn=arn,
                )
            calls("untag_resource", resourceArn=entry["accessEntryArn"], tagKeys=[POLICY_PREFIX + name])
        elif existing.get(name, False) != desired:
            calls(
                "associate_access_policy",
                clusterName=target.cluster,
                principalArn=principal,
                policyArn=arn,
                accessScope=access_scope(desired),
            )
    if gkey in tags:
        calls("untag_resource", resourceArn=entry["accessEntryArn"], tagKeys=[gkey])
    # Associations someone made outside the connector: the entry carries their access too, so it stays.
    foreign = sorted(n for n in existing if tags.get(POLICY_PREFIX + n) != POLICY_OWNED)
    delete = _managed(tags) and not remaining and not foreign
    groups, username = _identity(entry)
    if _managed(tags) and not remaining and foreign and (groups or username not in (None, DEFAULT_USERNAME)):
        # The entry stays for the associations someone else made; the identity the grants asked for goes.
        calls(
            "update_access_entry",
            clusterName=target.cluster,
            principalArn=principal,
            kubernetesGroups=[],
            username=DEFAULT_USERNAME,
        )
    if delete:
        calls(
            "delete_access_entry",
            ok_codes=("ResourceNotFoundException",),
            clusterName=target.cluster,
            principalArn=principal,
        )
    result = base | {
        "already_revoked": gkey not in tags,
        "entry_deleted": delete,
        "remaining_grants": len(remaining),
        "dry_run": dry_run,
        "calls": calls.calls,
    }
    if foreign and not remaining and _managed(tags):
        result["entry_kept"] = f"it also carries associations made outside the connector: {', '.join(foreign)}"
    return result
