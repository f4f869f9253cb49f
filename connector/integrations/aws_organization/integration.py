"""The AWS Organization integration: its settings and the credentials every AWS kind under it uses.

Credentials: connector identity -> management-account role (ExternalId, session duration clamped to the
one-hour role-chaining cap) -> member-account role per account. The kinds that run under this integration
(EKS access entries, Identity Center assignments, IAM resource access) and its Syncer (the organisation sync)
are separate packages; they reach AWS only through the sessions this class hands out, so one account's
credentials never sign another account's call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from connector.aws.errors import classify_aws_error
from connector.aws.partitions import iam_role_arn
from connector.aws.sessions import AwsSessions, clamp_session_duration
from connector.errors import ConnectorError, ErrorCode
from connector.integrations.aws_organization.org_tree import PAGE, account_state, ancestors
from connector.integrations.aws_organization.settings import OrgSettings, parse_settings, partition_of_settings
from connector.integrations.base import Services
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan, Integration

# A member role that failed to assume is not asked again for this long: one sync touches an account in
# several regions and stages, and each would otherwise repeat the same failing AssumeRole.
MEMBER_FAILURE_TTL = 60.0
# An account's OU path, as the guardrails see it, is read again after this long (accounts move between OUs).
OU_PATH_TTL = 60.0


class AwsOrganizationIntegration(Integration):
    type_id = "aws_organization"

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
        super().__init__(integration_id, settings, services)
        self.config: OrgSettings = parse_settings(settings)
        if services.aws is None:
            services.aws = AwsSessions(services.connector_id)
        self.aws: AwsSessions = services.aws
        self.duration_seconds, self.duration_note = clamp_session_duration(self.config.session_duration_hours)
        self.partition = partition_of_settings(self.config)  # checked against every region in the settings
        self._member_lock = threading.Lock()
        self._member_failures: dict[str, tuple[float, ClientError]] = {}
        self._account_locks: dict[str, threading.Lock] = {}
        self._ou_paths: dict[str, tuple[float, tuple[str, ...]]] = {}
        self.management_account_id = ""

    # -- credentials -------------------------------------------------------------------------------------
    def management(self) -> str:
        role = self.config.management_account_role_arn
        if role is None:
            return self.aws.identity()  # the connector runs in the management account itself
        return self.aws.assume(
            role,
            external_id=self.config.external_id or self.services.connector_id,
            duration_seconds=self.duration_seconds,
        )

    def management_checked(self) -> str:
        try:
            key = self.management()
            self.aws.credentials_of(key)
            return key
        except (ClientError, BotoCoreError) as exc:
            mapped = classify_aws_error(exc) or ConnectorError(ErrorCode.UNAVAILABLE, str(exc))
            raise ConnectorError(
                mapped.code,
                f"cannot assume the management account role {self.config.management_account_role_arn}: {mapped.message} "
                "Check that its trust policy admits the connector role with sts:ExternalId equal to the connector id "
                "(cloudformation/management-account-role.yaml).",
                retryable=mapped.retryable,
            ) from None

    def member(self, account_id: str) -> str:
        """Session key for the member role in `account_id`. One AssumeRole per account at a time: the other
        scope tasks of that account wait for it and share its session, or its failure (kept for a minute)."""
        with self._member_lock:
            account_lock = self._account_locks.setdefault(account_id, threading.Lock())
        with account_lock:
            failure = self._member_failures.get(account_id)
            if failure is not None and time.monotonic() - failure[0] < MEMBER_FAILURE_TTL:
                raise failure[1]
            arn = self.member_role_arn(account_id)
            key = self.aws.assume(arn, via=self.management_checked(), duration_seconds=min(self.duration_seconds, 3600))
            try:
                self.aws.credentials_of(key)  # surface AssumeRole failures here, attributed to this account
            except ClientError as exc:
                self._member_failures[account_id] = (time.monotonic(), exc)
                self.aws.forget(key)
                raise
            self._member_failures.pop(account_id, None)
            return key

    def member_role_arn(self, account_id: str) -> str:
        """The member role in `account_id`, in the organisation's partition (never a guessed `arn:aws:`)."""
        return iam_role_arn(self.partition, account_id, self.config.member_role_name)

    def client(self, account_id: str, service: str, region: str | None = None) -> Any:
        """A client of the member role in `account_id` (IAM is global: region None)."""
        return self.aws.client(self.member(account_id), service, region)

    def management_client(self, service: str, region: str | None = None) -> Any:
        return self.aws.client(self.management(), service, region or self.config.region)

    def sso_region(self) -> str:
        return self.config.sso_region or self.config.region

    def sso_client(self) -> Any:
        return self.management_client("sso-admin", self.sso_region())

    # -- the organisation, as grants and the expiry loop need it ------------------------------------------
    def ou_path(self, account_id: str) -> tuple[str, ...]:
        """OU ids above an account, nearest first (for the customer's organizational_units guardrail)."""
        cached = self._ou_paths.get(account_id)
        if cached is not None and time.monotonic() - cached[0] < OU_PATH_TTL:
            return cached[1]
        chain = ancestors(self.management_client("organizations"), account_id)
        path = tuple(p for p in chain if p.startswith("ou-"))
        self._ou_paths[account_id] = (time.monotonic(), path)
        return path

    def active_accounts(self) -> list[str]:
        """ACTIVE accounts of the organisation but the excluded ones (the expiry loop's full scan; a grant this
        process made in an excluded account is still found through `places`)."""
        org = self.management_client("organizations")
        excluded = set(self.config.excluded_account_ids)
        out = []
        for page in org.get_paginator("list_accounts").paginate(PaginationConfig=PAGE):
            for account in page.get("Accounts", []):
                if account_state(account) == "ACTIVE" and account["Id"] not in excluded:
                    out.append(str(account["Id"]))
        return out

    # -- where this process granted (the expiry loop looks there on every sweep) --------------------------
    _places_lock = threading.Lock()

    def note_place(self, *place: str) -> None:
        """Noted before the first call of a grant, so one that fails half-way is still looked at. Kept in the
        process-wide Services, so it survives this integration's settings changing."""
        with self._places_lock:
            places: dict[str, set[tuple[str, ...]]] = self.services.extra.setdefault("jit_places", {})
            places.setdefault(self.integration_id, set()).add(place)

    def places(self, kind: str) -> set[tuple[str, ...]]:
        with self._places_lock:
            noted = self.services.extra.get("jit_places", {}).get(self.integration_id, ())
            return {p[1:] for p in noted if p[0] == kind}

    def expired_on_roles(
        self,
        scan: ExpiryScan,
        kind: str,
        in_account: Callable[[str, Iterable[str] | None, int], Iterator[ExpiredGrant]],
    ) -> Iterator[ExpiredGrant]:
        """The account loop of a kind whose records are tags on IAM roles (iam, ssm): `in_account(account, roles,
        now)` for the roles this process granted on (its places of `kind`) on every sweep, and with roles None
        (every role) for every active account on a full scan. A failing account is the scan's problem; the others
        go on."""
        known: dict[str, set[str]] = {}
        for account, role in self.places(kind):
            known.setdefault(account, set()).add(role)
        accounts = self.active_accounts() if scan.full else []
        for account in sorted(set(accounts) | set(known)):
            scan.check()
            try:
                found = list(in_account(account, None if scan.full else known.get(account), scan.now))
            except (ClientError, BotoCoreError, ConnectorError) as exc:
                scan.problem(f"{kind} {account}", str(exc)[:300])
                continue
            yield from found
