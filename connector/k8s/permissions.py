"""The RBAC the connector's ServiceAccount needs, and nothing more: the Helm chart renders these rules.

Kept next to the code that uses them so a new API call and its permission change together. Every rule
says which operation needs it. Notably absent: update/patch on bindings (a binding is created once and
deleted, never edited), secrets, and any wildcard.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"

# (apiGroups, resources, verbs, resourceNames or None, why)
_CLUSTER_RULES: list[tuple[list[str], list[str], list[str], str]] = [
    ([""], ["namespaces"], ["get", "list"], "sync: k8s.namespace inventory"),
    ([RBAC_GROUP], ["clusterroles", "roles"], ["get", "list"], "sync: roles; grant: check the role exists"),
    (
        [RBAC_GROUP],
        ["rolebindings", "clusterrolebindings"],
        ["get", "list", "create", "delete"],
        "sync: existing bindings; grant: create (get on 409); revoke: list by grant label, delete",
    ),
]


def connector_cluster_role(name: str, grantable_roles: Iterable[str]) -> dict[str, Any]:
    """The ClusterRole for the "kubernetes" integration.

    RBAC refuses to create a binding to a role whose permissions the creator lacks, unless it holds the
    `bind` verb on that role. `bind` is limited to `grantable_roles` (by name), so the connector can hand
    out exactly those roles and can never bind cluster-admin unless the customer lists it.
    """
    rules: list[dict[str, Any]] = [
        {"apiGroups": groups, "resources": resources, "verbs": verbs} for groups, resources, verbs, _ in _CLUSTER_RULES
    ]
    names = sorted(set(grantable_roles))
    if names:
        # grant: permission to bind these roles (and only these) without holding their permissions
        rules.append(
            {
                "apiGroups": [RBAC_GROUP],
                "resources": ["clusterroles", "roles"],
                "verbs": ["bind"],
                "resourceNames": names,
            }
        )
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "Helm"}},
        "rules": rules,
    }


def aws_auth_role(name: str) -> dict[str, Any]:
    """The Role (namespace kube-system) for the "eks_aws_auth" integration: read and replace aws-auth only.

    No `create`: a missing aws-auth is reported, not made (create cannot be limited by resourceNames).
    """
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": "kube-system"},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["aws-auth"], "verbs": ["get", "update"]}
        ],
    }


def rbac_reader_rules() -> list[dict[str, Any]]:
    """What judging a grant reads (connector.integrations.kubernetes.rbac_effect): roles, to know what a
    binding gives, and bindings, to know what aws-auth groups amount to. The "kubernetes" ClusterRole holds
    these reads already; an install that only maps aws-auth needs them beside its Role (as a ClusterRole:
    bindings and roles of every namespace count)."""
    return [
        {
            "apiGroups": [RBAC_GROUP],
            "resources": ["clusterroles", "roles", "clusterrolebindings", "rolebindings"],
            "verbs": ["get", "list"],
        }
    ]


def rule_reasons() -> list[str]:
    """Why each cluster rule exists (for docs and the chart's comments)."""
    return [why for *_, why in _CLUSTER_RULES] + ["grant: bind only the grantable roles"]
