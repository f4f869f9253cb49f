"""What a sync of an AWS Organization covers: one definition, used by the sync and by `connector doctor`.

The settings that scope it: `organizational_unit_id` (walk from that OU, or from the root), `excluded_ou_ids`
(drop an OU's whole subtree), `excluded_account_ids`; only ACTIVE accounts are visited; `resource_types` and
`regions` say what is read in each. Doctor checks exactly the accounts this walk yields, so it cannot FAIL an
account the sync would never visit (say, one inside an excluded OU without the member role).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from connector.integrations.aws_organization.org_tree import Account, OrgUnit, OrgWalk
from connector.integrations.aws_organization.settings import OrgSettings


def org_walk(
    org: Any, settings: OrgSettings, *, check: Callable[[], None] = lambda: None, with_tags: bool = True
) -> OrgWalk:
    """The walk with the settings' exclusions."""
    return OrgWalk(
        org,
        excluded_ous=frozenset(settings.excluded_ou_ids),
        excluded_accounts=frozenset(settings.excluded_account_ids),
        with_tags=with_tags,
        check=check,
    )


def walk_starts(walk: OrgWalk, settings: OrgSettings) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """Where the walk starts ((id, path) pairs) and the roots it read (none when scoped to an OU)."""
    scope = settings.organizational_unit_id
    if scope and not scope.startswith("r-"):
        return [(scope, walk.path_of(scope))], []
    roots = walk.roots()
    return [(root["Id"], "Root") for root in roots], roots


def walk_scope(walk: OrgWalk, settings: OrgSettings) -> Iterator[OrgUnit | Account]:
    """Every OU and account the settings cover, in walk order, lazily."""
    starts, _ = walk_starts(walk, settings)
    for start_id, start_path in starts:
        yield from walk.walk(start_id, start_path)


def visited(account: Account) -> bool:
    """Whether the sync reads what lives in this account (its EKS clusters, roles, assignments)."""
    return account.active


def regions(settings: OrgSettings) -> tuple[str, ...] | None:
    """The regions read in each account; None for `regions: enabled` (each account's enabled regions)."""
    if settings.regions == "enabled":
        return None
    return settings.regions or (settings.region,)
