"""What Kubernetes RBAC really gives: a role judged by its rules, a group by the bindings that name it.

A role's name says nothing (a ClusterRole with `*` on `*` is cluster-admin level whatever it is called), so the
level comes from the rules, read from the cluster at grant time:
  admin  `*` verbs on `*` resources; escalate, bind, approve or sign (can give itself or others more);
         impersonate of users, groups or anything but service accounts (also as `*` verbs on users, groups,
         uids, userextras or signers); writes to RBAC objects (roles, bindings) or to every resource of
         every API group
  write  any other write (create, update, patch, delete, deletecollection, `*`), reading secrets (which hold
         service account tokens), impersonating service accounts (what the built-in `edit` role allows)
  read   get, list, watch of anything else, and asking the API server questions (creating access or
         token reviews)
An aggregated ClusterRole counts with the rules of every ClusterRole its selectors match, transitively, with
the selector semantics of the aggregation controller (matchLabels and matchExpressions; an empty selector
matches every ClusterRole): a superset of what the controller fills in. A rule or selector that cannot be
read counts as admin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connector.integrations.effect import Level, highest
from connector.k8s.client import KubeApi, api_error, api_exception

RBAC_GROUP = "rbac.authorization.k8s.io"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection", "*"})
ESCALATING_VERBS = frozenset({"escalate", "bind", "approve", "sign"})
RBAC_RESOURCES = frozenset({"roles", "rolebindings", "clusterroles", "clusterrolebindings", "*"})
# Creating one of these asks the API server a question (may I?, who is this token?) and changes nothing:
# system:basic-user, bound to every authenticated user, creates the self reviews.
QUESTION_RESOURCES = frozenset(
    {
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "selfsubjectreviews",
        "subjectaccessreviews",
        "localsubjectaccessreviews",
        "tokenreviews",
    }
)
# What `*` verbs reach beyond writing: impersonate (users, groups, uids, userextras/...), approve and sign (signers).
POWER_RESOURCES = frozenset({"users", "groups", "uids", "signers"})


class Unreadable:
    """Stands in for rules the connector cannot work out (a selector it cannot evaluate): counts as admin."""

    def __init__(self, why: str) -> None:
        self.why = why


def rule_level(rule: Mapping[str, Any]) -> tuple[Level, str]:
    try:
        verbs = {str(v) for v in rule.get("verbs") or []}
        resources = {str(r) for r in rule.get("resources") or []}
        groups = {str(g) for g in rule.get("apiGroups") or []}
    except TypeError:
        return Level.ADMIN, "a rule that cannot be read"
    if not verbs or not resources:
        return Level.NONE, ""  # non-resource URLs (/healthz...) or an empty rule
    if "*" in verbs and "*" in resources:
        return Level.ADMIN, "`*` verbs on `*` resources"
    if verbs & ESCALATING_VERBS:
        return Level.ADMIN, f"the {', '.join(sorted(verbs & ESCALATING_VERBS))} verb"
    if "impersonate" in verbs and resources - {"serviceaccounts"}:
        return Level.ADMIN, f"impersonate on {', '.join(sorted(resources - {'serviceaccounts'}))}"
    powers = {r for r in resources if r in POWER_RESOURCES or r.startswith("userextras")}
    if "*" in verbs and powers:
        return Level.ADMIN, f"`*` verbs (impersonate, approve, sign) on {', '.join(sorted(powers))}"
    writes = bool(verbs & WRITE_VERBS)
    if writes and resources & RBAC_RESOURCES and groups & {RBAC_GROUP, "*"}:
        return Level.ADMIN, "writes to RBAC roles or bindings"
    if writes and "*" in resources and "*" in groups:
        return Level.ADMIN, "writes to every resource of every API group"
    if resources <= QUESTION_RESOURCES and verbs <= {"create", "get", "list", "watch"}:
        return Level.READ, ""
    if writes or "impersonate" in verbs:
        return Level.WRITE, ""
    if resources & {"secrets", "*"} and groups & {"", "*"}:
        return Level.WRITE, ""  # secrets hold service account tokens: reading them is more than viewing
    return Level.READ, ""


def rules_level(rules: Iterable[Any], role: str) -> tuple[Level, list[str]]:
    levels, reasons = [], []
    for rule in rules:
        if isinstance(rule, Unreadable):
            levels.append(Level.ADMIN)
            reasons.append(f"{role}: {rule.why}: counted as admin")
            continue
        if not isinstance(rule, Mapping):
            levels.append(Level.ADMIN)
            reasons.append(f"{role} has a rule that cannot be read: counted as admin")
            continue
        level, why = rule_level(rule)
        levels.append(level)
        if level is Level.ADMIN:
            reasons.append(f"{role} allows {why}: cluster-admin level")
    return highest(levels), sorted(set(reasons))[:3]


def _rules(api: KubeApi, obj: Any) -> list[Any]:
    data = api.to_dict(obj)
    return list(data.get("rules") or [])


def _requirement_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = str(expression.get("key", "")), expression.get("operator")
    values = set(expression.get("values") or [])
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ValueError(f"operator {str(operator)[:40]!r}")


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelectorAsSelector semantics: every matchLabels pair and matchExpressions requirement holds;
    an empty selector matches everything. Raises ValueError for an operator it does not know."""
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    return all(_requirement_matches(e, labels) for e in selector.get("matchExpressions") or [])


class RuleReader:
    """Reads roles' rules for one describe. The ClusterRole list that aggregation needs is read once, lazily."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self._cluster_roles: list[dict[str, Any]] | None = None

    def _all_cluster_roles(self) -> list[dict[str, Any]]:
        if self._cluster_roles is None:
            api = self.api
            listed = api.paginate("list clusterroles", api.rbac.list_cluster_role)
            self._cluster_roles = [api.to_dict(role) for role in listed]
        return self._cluster_roles

    def cluster_role(self, name: str) -> list[Any] | None:
        """The rules of a ClusterRole, those of every ClusterRole it aggregates included; None when it does
        not exist."""
        api = self.api
        what = f"read clusterrole {name}"
        try:
            role = api.to_dict(api.call(what, api.rbac.read_cluster_role, name))
        except api_exception() as exc:
            if exc.status == 404:
                return None
            raise api_error(exc, what) from None
        rules: list[Any] = list(role.get("rules") or [])
        seen = {name}
        pending = [role]
        while pending:  # members may aggregate others in turn: follow them all, each once
            aggregated = pending.pop()
            selectors = (aggregated.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
            for selector in selectors:
                for member in self._all_cluster_roles():
                    member_name = (member.get("metadata") or {}).get("name", "")
                    labels = (member.get("metadata") or {}).get("labels") or {}
                    try:
                        chosen = selector_matches(selector, labels)
                    except ValueError as exc:
                        rules.append(Unreadable(f"an aggregation selector with an unknown {exc}"))
                        break
                    if chosen and member_name not in seen:
                        seen.add(member_name)
                        rules += list(member.get("rules") or [])
                        pending.append(member)
        return rules

    def role(self, namespace: str, name: str) -> list[Any] | None:
        api = self.api
        what = f"read role {namespace}/{name}"
        try:
            return _rules(api, api.call(what, api.rbac.read_namespaced_role, name, namespace))
        except api_exception() as exc:
            if exc.status == 404:
                return None
            raise api_error(exc, what) from None


def cluster_role_rules(api: KubeApi, name: str) -> list[Any] | None:
    """The rules of a ClusterRole, aggregated ones included; None when it does not exist."""
    return RuleReader(api).cluster_role(name)


def role_rules(api: KubeApi, namespace: str, name: str) -> list[Any] | None:
    return RuleReader(api).role(namespace, name)


def subjects_level(api: KubeApi, kind: str, names: Iterable[str]) -> tuple[Level, list[str]]:
    """What the existing bindings give the subjects (`kind` Group or User) `names`: the highest level of every
    role any ClusterRoleBinding or RoleBinding binds to one of them."""
    wanted = set(names)
    reader = RuleReader(api)
    levels: list[Level] = []
    reasons: list[str] = []
    listings = (
        (api.rbac.list_cluster_role_binding, "list clusterrolebindings"),
        (api.rbac.list_role_binding_for_all_namespaces, "list rolebindings in all namespaces"),
    )
    for fn, what in listings:
        for binding in api.paginate(what, fn):
            data = api.to_dict(binding)
            bound = {s.get("name") for s in data.get("subjects") or [] if s.get("kind") == kind} & wanted
            if not bound:
                continue
            ref = data.get("roleRef") or {}
            namespace = (data.get("metadata") or {}).get("namespace", "")
            if ref.get("kind") == "Role":
                rules = reader.role(namespace, str(ref.get("name", "")))
            else:
                rules = reader.cluster_role(str(ref.get("name", "")))
            label = f"{ref.get('kind')} {ref.get('name')} (bound to {kind} {', '.join(sorted(bound))})"
            level, why = rules_level(rules or [], label)
            levels.append(level)
            reasons += why
    return highest(levels), reasons[:3]
