"""Tagging moto 5.2.5 lacks, added for the JIT grant records (added by the `jit` branch):
- (EKS tags on access-entry ARNs live with the access entries: eks_access.SandboxEKSResponse;)
- IAM Identity Center (sso-admin) TagResource / UntagResource / ListTagsForResource on permission sets
  (moto has no sso-admin tagging at all), with AWS's limit of 50 tags per resource.
Installed by `Sandbox.start`; idempotent.
"""

from __future__ import annotations

import json

from moto.ssoadmin.models import SSOAdminBackend
from moto.ssoadmin.responses import SSOAdminResponse

MAX_SSO_TAGS = 50


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
    _install_sso()
