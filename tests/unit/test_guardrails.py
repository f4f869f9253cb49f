"""The guardrail policy judges Effects: what a grant would really give, as the kinds resolved it."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from connector.errors import GuardrailDenied
from connector.integrations.effect import ClusterRef, Effect, Lazy, Level
from connector.jobs.guardrails import DEFAULT, GuardrailError, Guardrails, load_guardrails

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SOON = NOW + timedelta(hours=1)


def eks(**change: object) -> Effect:
    base: dict[str, object] = {
        "kind": "eks_cluster",
        "principal": "arn:aws:iam::111122223333:role/dev",
        "level": Level.READ,
        "expires_at": SOON,
        "account_id": "111122223333",
        "ou_path": Lazy(lambda: ("ou-ab12-prod0001",)),
        "region": "eu-west-1",
        "cluster": ClusterRef("prod-main", "111122223333", "eu-west-1"),
        "scope": "namespaces",
        "namespaces": ("team-a",),
        "access_policies": ("AmazonEKSViewPolicy",),
        "kubernetes_usernames": ("apono:{{SessionName}}",),
    }
    return Effect(**(base | change))  # type: ignore[arg-type]


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "guardrails.yaml"
    path.write_text(
        "version: 1\nmax_duration: 8h\naccounts: ['1111*']\nclusters: ['prod-*']\n"
        "access_policies: [AmazonEKSViewPolicy, AmazonEKSEditPolicy, AmazonEKSClusterAdminPolicy]\n"
        "namespaces: ['team-*']\norganizational_units: ['ou-ab12-*']\n"
    )
    return load_guardrails(path)


def test_allowed_grant_passes(policy):
    policy.check(eks(), NOW)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"expires_at": None}, "max_duration"),
        ({"expires_at": NOW + timedelta(hours=9)}, "max_duration"),
        ({"account_id": "999999999999"}, "accounts"),
        ({"cluster": ClusterRef("dev-x", "111122223333", "eu-west-1")}, "clusters"),
        ({"namespaces": ("kube-system",)}, "namespaces"),
        ({"access_policies": ("AmazonEKSAdminViewPolicy",)}, "access_policies"),
        ({"level": Level.ADMIN, "access_policies": ("AmazonEKSClusterAdminPolicy",)}, "allow_cluster_admin"),
        ({"scope": "cluster", "namespaces": ()}, "namespaces"),
        ({"ou_path": Lazy(lambda: ("ou-zz99-other000",))}, "organizational_units"),
        ({"ou_path": None}, "organizational_units"),  # the kind cannot tell: fail closed
    ],
)
def test_refusals_name_the_rule(policy, change, rule):
    with pytest.raises(GuardrailDenied) as err:
        policy.check(eks(**change), NOW)
    assert err.value.rule == rule
    assert not err.value.retryable


def test_the_cluster_judged_is_the_effects_own_even_for_an_account_of_a_cluster(policy):
    # A Kubernetes grant that lands on a cluster in another account is judged by that account.
    effect = eks(account_id="", ou_path=None, cluster=ClusterRef("prod-x", "999999999999", "eu-west-1"))
    with pytest.raises(GuardrailDenied) as err:
        policy.check(effect, NOW)
    assert err.value.rule == "accounts"


def test_admin_level_is_refused_whatever_it_is_called():
    effect = eks(level=Level.ADMIN, reasons=("ClusterRole view-ish allows `*` verbs on `*` resources",))
    with pytest.raises(GuardrailDenied, match="view-ish") as err:
        DEFAULT.check(effect, NOW)
    assert err.value.rule == "allow_cluster_admin"
    Guardrails(allow_cluster_admin=True).check(effect, NOW)


def test_unresolved_identities_count_as_admin_unless_named():
    effect = eks(kubernetes_groups=("ops",), unresolved=(("kubernetes_groups", "ops"),))
    with pytest.raises(GuardrailDenied, match="ops") as err:
        DEFAULT.check(effect, NOW)
    assert err.value.rule == "allow_cluster_admin"
    Guardrails(max_duration="12h", kubernetes_groups=("ops", "dev-*")).check(effect, NOW)
    Guardrails(allow_cluster_admin=True).check(effect, NOW)
    with pytest.raises(GuardrailDenied):  # a list that does not name it does not vouch for it
        Guardrails(kubernetes_groups=("dev-*",)).check(effect, NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"kubernetes_groups": ("system:nodes",)},
        {"kubernetes_groups": ("system:authenticated",)},
        {"kubernetes_usernames": ("system:kube-controller-manager",)},
        {"kubernetes_usernames": ("eks:node-manager",)},
        {"kubernetes_usernames": ("aws:x",)},
        {"kubernetes_usernames": ("amazon:y",)},
        {"kubernetes_usernames": ("iam:z",)},
    ],
)
def test_reserved_identities_are_refused_by_every_policy(change):
    for policy in (DEFAULT, Guardrails(allow_cluster_admin=True, kubernetes_groups=("*",))):
        with pytest.raises(GuardrailDenied) as err:
            policy.check(eks(**change), NOW)
        assert err.value.rule == "reserved"


def test_system_masters_is_admin_level_not_reserved():
    effect = eks(level=Level.ADMIN, kubernetes_groups=("system:masters",))
    with pytest.raises(GuardrailDenied) as err:
        DEFAULT.check(effect, NOW)
    assert err.value.rule == "allow_cluster_admin"
    Guardrails(allow_cluster_admin=True).check(effect, NOW)


def test_default_policy_every_grant_expires_within_12_hours():
    assert DEFAULT.source == "default" and load_guardrails(None) is DEFAULT
    with pytest.raises(GuardrailDenied, match="no expiry"):
        DEFAULT.check(eks(expires_at=None), NOW)
    with pytest.raises(GuardrailDenied, match="12h"):
        DEFAULT.check(eks(expires_at=NOW + timedelta(hours=13)), NOW)
    DEFAULT.check(eks(expires_at=NOW + timedelta(hours=12)), NOW)
    # A kind registered as changing nothing (the diagnostic noop) has nothing to expire; a kind that only
    # reports level none is still held to max_duration.
    nothing = Effect(kind="noop", principal="p", level=Level.NONE, expires_at=None)
    DEFAULT.check(nothing, NOW, changes_nothing=True)
    with pytest.raises(GuardrailDenied, match="no expiry"):
        DEFAULT.check(nothing, NOW)


def test_a_customer_file_replaces_the_default(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("allow_cluster_admin: false\n")  # no max_duration: grants may last for ever
    load_guardrails(path).check(eks(expires_at=None), NOW)


def test_permission_sets_resources_roles_usernames_allow_lists():
    policy = Guardrails(
        permission_sets=("ReadOnly*",),
        resources=("arn:aws:s3:::team-a-*",),
        kubernetes_roles=("view",),
        kubernetes_usernames=("apono:*",),
    )
    ic = Effect(kind="identity_center_assignment", principal="u", level=Level.READ, expires_at=SOON)
    policy.check(replace(ic, permission_sets=("ReadOnlyAccess",)), NOW)
    for change, rule in (
        ({"permission_sets": ("AdminAccess",)}, "permission_sets"),
        ({"resources": ("arn:aws:s3:::team-b-data",)}, "resources"),
        ({"kubernetes_roles": ("edit",)}, "kubernetes_roles"),
        ({"kubernetes_usernames": ("kubernetes-admin",)}, "kubernetes_usernames"),
    ):
        with pytest.raises(GuardrailDenied) as err:
            policy.check(replace(ic, **change), NOW)
        assert err.value.rule == rule


def test_the_ou_path_is_read_only_when_a_rule_needs_it():
    calls: list[str] = []

    def resolve() -> tuple[str, ...]:
        calls.append("ListParents")
        return ("ou-ab12-prod0001",)

    DEFAULT.check(eks(ou_path=Lazy(resolve)), NOW)
    assert calls == []
    Guardrails(organizational_units=("ou-ab12-*",)).check(eks(ou_path=Lazy(resolve)), NOW)
    assert calls == ["ListParents"]


@pytest.mark.parametrize(
    "text",
    [
        "max_duration: forever\n",
        "acounts: ['1']\n",
        "- a\n- b\n",
        "version: 2\n",
        "accounts: [unclosed\n",
        "source: default\n",  # not a rule: a file cannot pretend to be the default
    ],
)
def test_bad_files_fail_at_start_up(tmp_path, text):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(GuardrailError, match="CONNECTOR_GUARDRAILS_FILE"):
        load_guardrails(path)
