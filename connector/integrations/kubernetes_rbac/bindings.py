"""Create, find and delete the bindings of one grant, never touching an object the connector did not make."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.kubernetes_rbac.target import (
    GRANT_RECORD_ANNOTATION,
    PlannedBinding,
    owned_by,
    same_binding,
)
from connector.k8s import names
from connector.k8s.client import KubeApi, api_error, api_exception
from connector.logging import get_logger

log = get_logger("connector.integrations.kubernetes_rbac")
LISTINGS = (
    ("ClusterRoleBinding", "list_cluster_role_binding", "list clusterrolebindings"),
    ("RoleBinding", "list_role_binding_for_all_namespaces", "list rolebindings in all namespaces"),
)


def managed(api: KubeApi, selector: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, object) of every binding matching `selector` (a label selector on the connector's labels)."""
    for kind, method, what in LISTINGS:
        for obj in api.paginate(what, getattr(api.rbac, method), label_selector=selector):
            yield kind, api.to_dict(obj)


def of_grant(api: KubeApi, grant_id: str) -> list[tuple[str, str, str, str]]:
    """(kind, namespace, name, uid) of the bindings this grant made: the label matched, and the exact name and
    annotation make sure it is this grant's object."""
    expected = names.binding_name(grant_id)
    found = []
    for kind, data in managed(api, names.grant_selector(grant_id)):
        meta = data["metadata"]
        if meta.get("name") == expected and owned_by(data, grant_id):
            found.append((kind, meta.get("namespace", ""), meta["name"], meta.get("uid", "")))
    return found


def create(api: KubeApi, binding: PlannedBinding) -> Any:
    if binding.kind == "ClusterRoleBinding":
        return api.call(f"create {binding.describe()}", api.rbac.create_cluster_role_binding, binding.body)
    return api.call(
        f"create {binding.describe()}", api.rbac.create_namespaced_role_binding, binding.namespace, binding.body
    )


def read(api: KubeApi, binding: PlannedBinding) -> Any:
    if binding.kind == "ClusterRoleBinding":
        return api.call(f"read {binding.describe()}", api.rbac.read_cluster_role_binding, binding.name)
    return api.call(
        f"read {binding.describe()}", api.rbac.read_namespaced_role_binding, binding.name, binding.namespace
    )


def ensure(api: KubeApi, grant_id: str, binding: PlannedBinding) -> dict[str, Any]:
    result = {"kind": binding.kind, "namespace": binding.namespace, "name": binding.name}
    try:
        obj = api.to_dict(create(api, binding))
        return result | {"uid": obj["metadata"].get("uid", ""), "created": True}
    except api_exception() as exc:
        if exc.status == 404 and binding.namespace:
            raise ConnectorError(
                ErrorCode.NOT_FOUND, f"namespace {binding.namespace!r} does not exist", retryable=False
            ) from None
        if exc.status != 409:
            raise api_error(exc, f"create {binding.describe()}") from None
    # 409 AlreadyExists: an earlier attempt of this grant, or someone else's object with our name.
    try:
        existing = api.to_dict(read(api, binding))
    except api_exception() as exc:
        raise api_error(exc, f"read {binding.describe()}") from None
    if not owned_by(existing, grant_id):
        raise ConnectorError(
            ErrorCode.CONFLICT,
            f"{binding.describe()} already exists and was not created by the connector for grant "
            f"{grant_id!r}; refusing to overwrite it. Rename or delete that object.",
            retryable=False,
        )
    if not same_binding(existing, binding.body):
        raise ConnectorError(
            ErrorCode.CONFLICT,
            f"{binding.describe()} exists for grant {grant_id!r} with a different role or subject; "
            "revoke the grant first",
            retryable=False,
        )
    if _record(existing) != _record(binding.body):
        # Another expiry (the grant re-delivered, extended or shortened) or no readable record: the ledger must say
        # what the grant now is. Bindings are never edited (the connector holds no update): delete, then create.
        delete(api, binding.kind, binding.namespace, binding.name, existing["metadata"].get("uid") or None)
        obj = api.to_dict(_created(api, binding))
        return result | {"uid": obj["metadata"].get("uid", ""), "created": True, "replaced": True}
    return result | {"uid": existing["metadata"].get("uid", ""), "created": False}


def _record(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(GRANT_RECORD_ANNOTATION)


def _created(api: KubeApi, binding: PlannedBinding) -> Any:
    try:
        return create(api, binding)
    except api_exception() as exc:
        raise api_error(exc, f"create {binding.describe()}") from None


def rollback(api: KubeApi, grant_id: str, created: list[PlannedBinding]) -> None:
    for binding in created:
        try:
            delete(api, binding.kind, binding.namespace, binding.name, None)
        except Exception as exc:  # report the original failure; the revoke will retry this
            log.warning("k8s_grant_rollback_failed", grant_id=grant_id, binding=binding.describe(), error=str(exc))


def delete(api: KubeApi, kind: str, namespace: str, name: str, uid: str | None) -> bool:
    """Delete one binding (only the exact object when `uid` is given); False when already gone."""
    body = {"preconditions": {"uid": uid}} if uid else None
    what = f"delete {kind} {namespace + '/' if namespace else ''}{name}"
    try:
        if kind == "ClusterRoleBinding":
            api.call(what, api.rbac.delete_cluster_role_binding, name, body=body)
        else:
            api.call(what, api.rbac.delete_namespaced_role_binding, name, namespace, body=body)
    except api_exception() as exc:
        if exc.status == 404:
            return False
        raise api_error(exc, what) from None
    return True
