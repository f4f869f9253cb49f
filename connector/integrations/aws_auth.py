"""The legacy aws-auth ConfigMap path: map an IAM role to Kubernetes groups on a CONFIG_MAP-mode EKS cluster.

Type id "eks_aws_auth". Clusters whose authenticationMode is CONFIG_MAP cannot use access entries; their
IAM-to-Kubernetes mapping lives in kube-system/aws-auth, `data.mapRoles`, a YAML list of
{rolearn, username, groups}. The principal is the IAM role ARN; target = {"groups": [...]}.

How revoke finds exactly our entry (YAML comments do not survive other tools' edits, and
aws-iam-authenticator may reject unknown keys): the entry's username is derived from the grant id,
    username = "access-connector:<grant-id label value>:{{SessionName}}"
so it still identifies the person (the assumed-role session name, as the seed's "{{SessionName}}") and,
in Kubernetes audit logs, the grant. Revoke removes only the entry with that exact username and role ARN.

Everything else in the ConfigMap (other mapRoles entries, mapUsers, mapAccounts, unknown keys, labels,
annotations) is kept byte-for-byte; updates are a replace carrying the resourceVersion we read, retried
from a fresh read on 409 Conflict. A ConfigMap we cannot parse is reported and never overwritten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from connector.errors import ConnectorError, ErrorCode, InvalidJob, InvalidSettings
from connector.integrations.base import GrantRequest, Integration, JobContext, RevokeRequest
from connector.integrations.kubernetes import ClusterConnection, ClusterSettings
from connector.k8s import names
from connector.k8s.aws_auth_map import MalformedAwsAuth, append_entry, parse_map_roles, remove_entries
from connector.k8s.client import KubeApi, api_error, api_exception
from connector.logging import get_logger

log = get_logger("connector.integrations.aws_auth")

NAMESPACE = "kube-system"
NAME = "aws-auth"
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{NAME}"
USERNAME_PREFIX = "access-connector:"
MAX_GROUPS = 20
WRITE_ATTEMPTS = 8

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_ASSUMED_ROLE = re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/")


class _StaleWrite(Exception):
    """The ConfigMap changed between our read and our replace (409): read again and redo the edit."""


def mapping_username(grant_id: str) -> str:
    return f"{USERNAME_PREFIX}{names.label_value(grant_id)}:{{{{SessionName}}}}"


def _same_role(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()  # aws-iam-authenticator compares role ARNs case-insensitively


class AwsAuthIntegration(Integration):
    type_id = "eks_aws_auth"

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Any) -> None:
        super().__init__(integration_id, settings, services)
        self.connection = ClusterConnection(ClusterSettings.parse(settings), services)
        allow = settings.get("allow_system_groups", False)
        if not isinstance(allow, bool):
            raise InvalidSettings("allow_system_groups", "must be true or false")
        self.allow_system_groups = allow

    # -- validation --
    def _principal(self, principal: str) -> str:
        if _ASSUMED_ROLE.match(principal):
            raise InvalidJob(
                "principal is an assumed-role session ARN; aws-auth maps IAM roles: "
                "use arn:aws:iam::<account>:role/<name>"
            )
        if not _ROLE_ARN.match(principal):
            raise InvalidJob("principal must be an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)")
        return principal

    def _groups(self, target: Mapping[str, Any]) -> list[str]:
        groups = target.get("groups")
        if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g.strip() for g in groups):
            raise InvalidJob("target.groups must be a non-empty list of Kubernetes group names")
        if len(groups) > MAX_GROUPS:
            raise InvalidJob(f"target.groups names {len(groups)} groups; at most {MAX_GROUPS}")
        bad = [g for g in groups if len(g) > 253 or not g.isprintable() or any(c.isspace() for c in g)]
        if bad:
            raise InvalidJob(f"target.groups: {bad[0][:80]!r} is not a valid group name")
        reserved = [g for g in groups if g.startswith("system:")]
        if reserved and not self.allow_system_groups:
            # system:masters bypasses RBAC entirely; system:nodes/bootstrappers are for kubelets.
            raise InvalidJob(
                f"target.groups: {reserved[0]!r} is a Kubernetes system group; grant an RBAC group instead "
                "(or set allow_system_groups in the integration settings)"
            )
        return list(dict.fromkeys(groups))

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

    def _replace(self, api: KubeApi, configmap: Any, new_text: str) -> None:
        configmap.data = dict(configmap.data or {}, mapRoles=new_text)  # every other key as read
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

    def _with_fresh_reads(self, edit: Any) -> dict[str, Any]:
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

    # -- grant --
    def grant(self, request: GrantRequest, ctx: JobContext) -> dict[str, Any]:
        role_arn = self._principal(request.principal)
        groups = self._groups(request.target)
        username = mapping_username(request.grant_id)
        entry = {"rolearn": role_arn, "username": username, "groups": groups}
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
            mine = [e for e in entries if e.get("username") == username]
            if mine:
                if len(mine) == 1 and _same_role(mine[0]["rolearn"], role_arn) and mine[0].get("groups") == groups:
                    return {"grant_id": request.grant_id, "entry": entry, "changed": False}
                raise ConnectorError(
                    ErrorCode.CONFLICT,
                    f"configmap {NAMESPACE}/{NAME} already maps username {username!r} differently; revoke first",
                    retryable=False,
                )
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
            if request.dry_run:
                return self._planned(request.grant_id, configmap, new_text)
            self._replace(api, configmap, new_text)
            return {"grant_id": request.grant_id, "entry": entry, "changed": True}

        result = self._with_fresh_reads(edit)
        if result.get("changed"):
            log.info("aws_auth_entry_added", grant_id=request.grant_id, rolearn=role_arn, groups=groups)
        return result

    # -- revoke --
    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        role_arn = self._principal(request.principal)
        username = mapping_username(request.grant_id)
        api = self.connection.api()

        def edit() -> dict[str, Any]:
            ctx.check_cancelled()
            configmap = self._read(api)
            if configmap is None:
                return {"grant_id": request.grant_id, "removed": [], "already_revoked": True}
            text, _ = self._parse(configmap)
            new_text, removed = remove_entries(
                text, lambda e: e.get("username") == username and _same_role(e["rolearn"], role_arn)
            )
            if not removed:
                return {"grant_id": request.grant_id, "removed": [], "already_revoked": True}
            if request.dry_run:
                return self._planned(request.grant_id, configmap, new_text)
            self._replace(api, configmap, new_text)
            return {"grant_id": request.grant_id, "removed": removed, "already_revoked": False}

        result = self._with_fresh_reads(edit)
        if result.get("removed"):
            log.info("aws_auth_entry_removed", grant_id=request.grant_id, rolearn=role_arn)
        return result

    @staticmethod
    def _planned(grant_id: str, configmap: Any, new_text: str) -> dict[str, Any]:
        return {
            "grant_id": grant_id,
            "dry_run": True,
            "calls": [
                {
                    "method": "PUT",
                    "path": PATH,
                    "resourceVersion": configmap.metadata.resource_version,
                    "data.mapRoles": new_text,
                }
            ],
        }
