"""Tagging moto 5.2.5 lacks, added for the JIT grant records (added by the `jit` branch):
- EKS TagResource / UntagResource / ListTagsForResource on access-entry ARNs (moto tags clusters only);
- IAM Identity Center (sso-admin) TagResource / UntagResource / ListTagsForResource on permission sets
  (moto has no sso-admin tagging at all), with AWS's limit of 50 tags per resource.
Installed by `Sandbox.start`; idempotent.
"""

from __future__ import annotations

import json

from moto.eks.exceptions import ResourceNotFoundException
from moto.eks.models import EKSBackend
from moto.ssoadmin.models import SSOAdminBackend
from moto.ssoadmin.responses import SSOAdminResponse

from connector.sandbox import eks_access

MAX_SSO_TAGS = 50


def _entry_by_arn(backend: EKSBackend, arn: str) -> eks_access.AccessEntry | None:
    if ":access-entry/" not in arn:
        return None
    for cluster in backend.clusters.values():
        for entry in eks_access.access_entries(cluster).values():
            if entry.access_entry_arn == arn:
                return entry
    raise ResourceNotFoundException(
        clusterName=None, nodegroupName=None, fargateProfileName=None, addonName=None, message="Resource was not found"
    )


def _install_eks() -> None:
    if getattr(EKSBackend, "_sandbox_entry_tags", False):
        return
    tag, untag, list_tags = EKSBackend.tag_resource, EKSBackend.untag_resource, EKSBackend.list_tags_for_resource

    def tag_resource(self: EKSBackend, resource_arn: str, tags: dict[str, str]) -> None:
        entry = _entry_by_arn(self, resource_arn)
        if entry is None:
            return tag(self, resource_arn, tags)
        entry.tags.update(tags)
        return None

    def untag_resource(self: EKSBackend, resource_arn: str, tag_keys: list[str]) -> None:
        entry = _entry_by_arn(self, resource_arn)
        if entry is None:
            return untag(self, resource_arn, tag_keys)
        for key in tag_keys if isinstance(tag_keys, list) else [tag_keys]:
            entry.tags.pop(key, None)
        return None

    def list_tags_for_resource(self: EKSBackend, resource_arn: str) -> dict[str, str]:
        entry = _entry_by_arn(self, resource_arn)
        return list_tags(self, resource_arn) if entry is None else dict(entry.tags)

    for name, method in (
        ("tag_resource", tag_resource),
        ("untag_resource", untag_resource),
        ("list_tags_for_resource", list_tags_for_resource),
        ("_sandbox_entry_tags", True),
    ):
        setattr(EKSBackend, name, method)


def _sso_tags(backend: SSOAdminBackend, arn: str) -> dict[str, str]:
    if not any(ps.permission_set_arn == arn for ps in backend.permission_sets):
        from moto.ssoadmin.exceptions import ResourceNotFoundException as SsoNotFound

        raise SsoNotFound(f"Resource {arn} not found")
    store: dict[str, dict[str, str]] = backend.__dict__.setdefault("sandbox_tags", {})
    return store.setdefault(arn, {})


def _install_sso() -> None:
    if hasattr(SSOAdminResponse, "tag_resource"):
        return

    def tag_resource(self: SSOAdminResponse) -> str:
        params = json.loads(self.body)
        tags = _sso_tags(self.ssoadmin_backend, params["ResourceArn"])
        new = {t["Key"]: t.get("Value", "") for t in params.get("Tags", [])}
        if len(set(tags) | set(new)) > MAX_SSO_TAGS:
            from moto.ssoadmin.exceptions import ServiceQuotaExceededException

            raise ServiceQuotaExceededException(f"A resource can have at most {MAX_SSO_TAGS} tags")
        tags.update(new)
        return "{}"

    def untag_resource(self: SSOAdminResponse) -> str:
        params = json.loads(self.body)
        tags = _sso_tags(self.ssoadmin_backend, params["ResourceArn"])
        for key in params.get("TagKeys", []):
            tags.pop(key, None)
        return "{}"

    def list_tags_for_resource(self: SSOAdminResponse) -> str:
        params = json.loads(self.body)
        tags = _sso_tags(self.ssoadmin_backend, params["ResourceArn"])
        return json.dumps({"Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]})

    for name, method in (
        ("tag_resource", tag_resource),
        ("untag_resource", untag_resource),
        ("list_tags_for_resource", list_tags_for_resource),
    ):
        setattr(SSOAdminResponse, name, method)


def install() -> None:
    _install_eks()
    _install_sso()
