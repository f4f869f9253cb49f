"""The aws-auth mapping kind: map an IAM role to Kubernetes groups on a CONFIG_MAP-mode EKS cluster.

Clusters whose authenticationMode is CONFIG_MAP cannot use access entries; their IAM-to-Kubernetes mapping
lives in kube-system/aws-auth, `data.mapRoles`, a YAML list of {rolearn, username, groups}. The principal is
the IAM role ARN; target = {"groups": [...]}.

How revoke finds exactly our entry (YAML comments do not survive other tools' edits, and
aws-iam-authenticator may reject unknown keys): the entry's username is derived from the grant id,
    username = "access-connector:<grant-id label value>:{{SessionName}}"
so it still identifies the person (the assumed-role session name) and, in Kubernetes audit logs, the grant.
The grant's ledger record is an annotation of the same ConfigMap (`grants.access-connector/<grant>`, JSON form:
expiry, grant id, role ARN, username), written in the same replace as the entry, so the entry never exists
without its expiry. An entry of ours without a record (made by an older version, or its annotation removed
by hand) counts as expired: the connector fails closed.

Everything else in the ConfigMap (other mapRoles entries, mapUsers, mapAccounts, unknown keys, labels,
other annotations) is kept byte-for-byte; updates are a replace carrying the resourceVersion we read, retried
from a fresh read on 409 Conflict. A ConfigMap we cannot parse is reported and never overwritten.

Effect: the groups, and what they amount to — system:masters bypasses RBAC (admin), any other group (and
system:authenticated, which every mapped identity joins) gets what the cluster's bindings give it (read from
the cluster); at least read, since the mapping lets the role into the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from connector.aws.partitions import PARTITION
from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import ledger
from connector.integrations.aws_auth.integration import RESOURCE_TYPE, AwsAuthIntegration
from connector.integrations.base import GrantRequest, JobContext, RevokeRequest
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan
from connector.integrations.effect import Effect, Level, highest
from connector.integrations.kubernetes import rbac_effect
from connector.k8s import names
from connector.k8s.aws_auth_map import MalformedAwsAuth, append_entry, parse_map_roles, remove_entries
from connector.k8s.client import KubeApi, api_error, api_exception
from connector.logging import get_logger

log = get_logger("connector.integrations.aws_auth")

NAMESPACE = "kube-system"
NAME = "aws-auth"
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{NAME}"
USERNAME_PREFIX = "access-connector:"
RECORD_PREFIX = "grants.access-connector/"  # + the grant id's label value: one annotation per live grant
RECORD_LIMIT = 4096  # bytes of one record annotation (all annotations together may hold 256 KiB)
MAX_GROUPS = 20
WRITE_ATTEMPTS = 8
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
FIELDS = frozenset({"resource_type", "groups"})

_ROLE_ARN = re.compile(rf"^arn:{PARTITION}:iam::\d{{12}}:role/[\w+=,.@/-]{{1,512}}$")
_ASSUMED_ROLE = re.compile(rf"^arn:{PARTITION}:sts::\d{{12}}:assumed-role/")


class _StaleWrite(Exception):
    """The ConfigMap changed between our read and our replace (409): read again and redo the edit."""


def mapping_username(grant_id: str) -> str:
    return f"{USERNAME_PREFIX}{names.label_value(grant_id)}:{{{{SessionName}}}}"


def record_key(grant_id: str) -> str:
    return RECORD_PREFIX + names.label_value(grant_id)


def _same_role(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()  # aws-iam-authenticator compares role ARNs case-insensitively


def parse_principal(principal: str) -> str:
    if _ASSUMED_ROLE.match(principal):
        raise InvalidJob(
            "principal is an assumed-role session ARN; aws-auth maps IAM roles: use arn:<partition>:iam::<account>:role/<name>"
        )
    if not _ROLE_ARN.match(principal):
        raise InvalidJob("principal must be an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)")
    return principal


def parse_groups(target: Mapping[str, Any]) -> list[str]:
    unknown = sorted(set(target) - FIELDS)
    if unknown:
        raise InvalidJob(
            f"target.{str(unknown[0])[:60]}: unknown field; an aws-auth target takes groups (the cluster is the one "
            "the integration's connection setting reaches)"
        )
    groups = target.get("groups")
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g.strip() for g in groups):
        raise InvalidJob("target.groups must be a non-empty list of Kubernetes group names")
    if len(groups) > MAX_GROUPS:
        raise InvalidJob(f"target.groups names {len(groups)} groups; at most {MAX_GROUPS}")
    bad = [g for g in groups if len(g) > 253 or not g.isprintable() or any(c.isspace() for c in g)]
    if bad:
        raise InvalidJob(f"target.groups: {bad[0][:80]!r} is not a valid group name")
    return list(dict.fromkeys(groups))


class AwsAuthMappings:
    def __init__(self, integration: AwsAuthIntegration) -> None:
        self.integration = integration
        self.connection = integration.connection

    # -- read / write --
    def _read(self, api: KubeApi) -> Any | None:
        try:
            return api.call(f"read configmap {NAMESPACE}/{NAME}", api.core.read_namespaced_config_map, NAME, NAMESPACE)
        except api_exception() as exc:
            if exc.status == 404:
                return None
            raise api_error(exc, f"read configmap {NAMESPACE}/{NAME}") from None

    def _parse(self, configmap: Any) -> tuple[str, list[dict[str, Any]]]:
        text = (configmap.data or {}).get("mapRoles") or ""
        try:
            return text, parse_map_roles(text)
        except MalformedAwsAuth as exc:
            raise ConnectorError(
                ErrorCode.PRECONDITION_FAILED,
                f"configmap {NAMESPACE}/{NAME}: {exc}. Fix the ConfigMap by hand; the connector never "
                "overwrites an aws-auth it cannot parse.",
                retryable=False,
            ) from None

    def _replace(self, api: KubeApi, configmap: Any, new_text: str, annotations: dict[str, str]) -> None:
        configmap.data = dict(configmap.data or {}, mapRoles=new_text)  # every other key as read
        configmap.metadata.annotations = annotations or None
        try:
            api.call(
                f"replace configmap {NAMESPACE}/{NAME}",
                api.core.replace_namespaced_config_map,
                NAME,
                NAMESPACE,
                configmap,  # carries metadata.resourceVersion: a concurrent edit makes this a 409
            )
        except api_exception() as exc:
            if exc.status == 409:
                raise _StaleWrite() from None
            raise api_error(exc, f"replace configmap {NAMESPACE}/{NAME}") from None

    def _with_fresh_reads(self, edit: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run read-modify-replace `edit` until it lands without a concurrent change in between."""
        retrying = Retrying(
            retry=retry_if_exception_type(_StaleWrite),
            stop=stop_after_attempt(WRITE_ATTEMPTS),
            wait=wait_random(0.05, 0.5),
        )
        try:
            for attempt in retrying:
                with attempt:
                    result: dict[str, Any] = edit()
                    result["write_attempts"] = attempt.retry_state.attempt_number
                    return result
        except RetryError:
            raise ConnectorError(
                ErrorCode.CONFLICT,
                f"configmap {NAMESPACE}/{NAME} kept changing under us ({WRITE_ATTEMPTS} conflicting writes); try again",
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- Provisioner -------------------------------------------------------------------------------------
    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        parse_principal(request.principal)
        groups = parse_groups(request.target)
        # Being mapped at all is access (the role authenticates to the cluster), whatever its groups are bound to.
        level, reasons = Level.READ, []
        if MASTERS in groups:
            level, reasons = Level.ADMIN, [f"Kubernetes group {MASTERS} bypasses RBAC"]
        # Every authenticated identity is also in system:authenticated: what that group is bound to comes too.
        others = [g for g in groups if g != MASTERS] + [AUTHENTICATED]
        bound, why = rbac_effect.subjects_level(self.connection.api(), "Group", others)
        level = highest([level, bound])
        reasons += why
        cluster = self.connection.cluster_ref()
        return Effect(
            kind=RESOURCE_TYPE,
            principal=request.principal,
            level=level,
            expires_at=request.expires_at,
            reasons=tuple(reasons),
            account_id=cluster.account_id,
            region=cluster.region,
            cluster=cluster,
            scope="cluster",
            kubernetes_groups=tuple(groups),
            kubernetes_usernames=(mapping_username(request.grant_id),),
        )

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        role_arn = parse_principal(request.principal)
        groups = parse_groups(request.target)
        username = mapping_username(request.grant_id)
        entry = {"rolearn": role_arn, "username": username, "groups": groups}
        record = ledger.encode_json(
            request.expires_at,
            {"grant_id": request.grant_id, "rolearn": role_arn, "username": username},
            limit=RECORD_LIMIT,
            what="this grant's record on the aws-auth ConfigMap",
        )
        key = record_key(request.grant_id)
        api = self.connection.api()

        def edit() -> dict[str, Any]:
            ctx.check_cancelled()
            configmap = self._read(api)
            if configmap is None:
                raise ConnectorError(
                    ErrorCode.PRECONDITION_FAILED,
                    f"configmap {NAMESPACE}/{NAME} does not exist. EKS creates it when the first managed node "
                    "group joins a CONFIG_MAP cluster; create it, or switch the cluster to API_AND_CONFIG_MAP "
                    "and use access entries.",
                    retryable=False,
                )
            text, entries = self._parse(configmap)
            annotations = dict(configmap.metadata.annotations or {})
            mine = [e for e in entries if e.get("username") == username]
            if mine:
                if len(mine) == 1 and _same_role(mine[0]["rolearn"], role_arn) and mine[0].get("groups") == groups:
                    if annotations.get(key) == record:
                        return {"grant_id": request.grant_id, "entry": entry, "changed": False}
                    new_text = text  # a re-delivery with another expiry, or a lost record: rewrite the record
                else:
                    raise ConnectorError(
                        ErrorCode.CONFLICT,
                        f"configmap {NAMESPACE}/{NAME} already maps username {username!r} differently; revoke first",
                        retryable=False,
                    )
            else:
                other = next((e for e in entries if _same_role(e["rolearn"], role_arn)), None)
                if other is not None:
                    # aws-iam-authenticator uses one mapping per role ARN: adding ours would shadow or be shadowed.
                    raise ConnectorError(
                        ErrorCode.CONFLICT,
                        f"configmap {NAMESPACE}/{NAME} already maps {role_arn} (username "
                        f"{str(other.get('username', ''))[:120]!r}) outside this grant; one role maps once. "
                        "Remove that entry or grant through an access entry.",
                        retryable=False,
                    )
                new_text = append_entry(text, entry)
            annotations[key] = record
            if request.dry_run:
                return self._planned(request.grant_id, configmap, new_text, annotations)
            self._replace(api, configmap, new_text, annotations)  # entry and record land together
            return {"grant_id": request.grant_id, "entry": entry, "changed": True}

        result = self._with_fresh_reads(edit)
        if result.get("changed"):
            log.info("aws_auth_entry_added", grant_id=request.grant_id, rolearn=role_arn, groups=groups)
        return result

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        role_arn = parse_principal(request.principal)
        username = mapping_username(request.grant_id)
        key = record_key(request.grant_id)
        api = self.connection.api()

        def edit() -> dict[str, Any]:
            ctx.check_cancelled()
            configmap = self._read(api)
            if configmap is None:
                return {"grant_id": request.grant_id, "removed": [], "already_revoked": True}
            text, entries = self._parse(configmap)
            new_text, removed = remove_entries(
                text, lambda e: e.get("username") == username and _same_role(e["rolearn"], role_arn)
            )
            annotations = dict(configmap.metadata.annotations or {})
            # The record goes with the last entry of the grant: an entry of this grant mapping another role (the
            # job named the wrong one) stays, and so does its record, so the expiry loop still revokes it.
            left = len([e for e in entries if e.get("username") == username]) - len(removed)
            had_record = left == 0 and annotations.pop(key, None) is not None
            if not removed and not had_record:
                return {"grant_id": request.grant_id, "removed": [], "already_revoked": True}
            if request.dry_run:
                return self._planned(request.grant_id, configmap, new_text, annotations)
            self._replace(api, configmap, new_text, annotations)
            return {"grant_id": request.grant_id, "removed": removed, "already_revoked": not removed}

        result = self._with_fresh_reads(edit)
        if result.get("removed"):
            log.info("aws_auth_entry_removed", grant_id=request.grant_id, rolearn=role_arn)
        return result

    @staticmethod
    def _planned(grant_id: str, configmap: Any, new_text: str, annotations: dict[str, str]) -> dict[str, Any]:
        return {
            "grant_id": grant_id,
            "dry_run": True,
            "calls": [
                {
                    "method": "PUT",
                    "path": PATH,
                    "resourceVersion": configmap.metadata.resource_version,
                    "data.mapRoles": new_text,
                    "metadata.annotations": sorted(k for k in annotations if k.startswith(RECORD_PREFIX)),
                }
            ],
        }

    # -- ExpiryScanner -----------------------------------------------------------------------------------
    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        """One read of the ConfigMap: records past their expiry, and entries of ours that have no record."""
        api = self.connection.api()
        configmap = self._read(api)
        if configmap is None:
            return
        _, entries = self._parse(configmap)
        annotations = dict(configmap.metadata.annotations or {})
        recorded: set[str] = set()
        for key, value in sorted(annotations.items()):
            if not key.startswith(RECORD_PREFIX):
                continue
            record = ledger.decode_json(value)
            # The key names the grant even when the value cannot be read (label values map to themselves).
            grant_id = str(record.fields.get("grant_id") or key.removeprefix(RECORD_PREFIX))
            username = mapping_username(grant_id)
            recorded.add(username)
            if not record.expired(scan.now):
                continue
            # Revoke the role the entry really maps (it may have been edited since): the username is the grant's.
            mapped = [str(e["rolearn"]) for e in entries if e.get("username") == username]
            rolearn = mapped[0] if mapped else str(record.fields.get("rolearn", ""))
            if not _ROLE_ARN.match(rolearn):
                problem = record.problem or "the record names no IAM role"
                yield ExpiredGrant(f"{PATH}#{key}", key, None, None, f"{problem}, and no entry maps the grant")
                continue
            yield ExpiredGrant(
                place=f"{PATH}#{key}",
                grant_key=key,
                expires_epoch=record.expires_epoch,
                problem=record.problem,
                request=RevokeRequest(grant_id=grant_id, principal=rolearn, target={"resource_type": RESOURCE_TYPE}),
            )
        for entry in entries:  # ours, but with no record: fail closed
            username = str(entry.get("username", ""))
            if not username.startswith(USERNAME_PREFIX) or username in recorded:
                continue
            grant_label = username.removeprefix(USERNAME_PREFIX).split(":", 1)[0]
            rolearn = str(entry.get("rolearn", ""))
            yield ExpiredGrant(
                place=f"{PATH}#{username}",
                grant_key=RECORD_PREFIX + grant_label,
                expires_epoch=None,
                problem="the mapping has no grant record (made before records existed, or the record was removed)",
                # mapping_username(grant_label) is this username again: label values map to themselves.
                request=RevokeRequest(grant_id=grant_label, principal=rolearn, target={"resource_type": RESOURCE_TYPE})
                if _ROLE_ARN.match(rolearn)
                else None,
            )
