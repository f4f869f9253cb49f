"""The Lambda custom kind: the customer's function grants, revokes and makes credentials. Provisioner and
ExpiryScanner, under the lambda_custom integration.

Target: {"resources": [ids], "permission": id, "credentials": "create" | "reset" (optional)}.

What is idempotent and what is not. grant-access and revoke-access must be idempotent in the customer's
function (the contract says so: every job may be delivered twice, and the expiry loop repeats a failed
revoke). create-credentials is not: each call makes a new live secret. So it runs AT MOST ONCE per grant,
across redeliveries, replicas and control-plane restarts: before calling it the connector creates the grant's
create marker (records.py, an SSM parameter made with Overwrite=False, which only one caller can make). Every
later delivery of that grant that wants credentials calls reset-credentials instead, which by the contract
replaces the user's credential: whatever an earlier, undelivered create made stops working, and the requester
holds the one credential that reached them. When the function answers that create failed (it made nothing),
the marker is removed again; when the outcome is unknown (a timeout, a lost answer), it stays, and the
grant-access is taken back (revoke-access) so no access is left without its credential.

A reset must come after the create it replaces, or that create's credential outlives it: a delivery that
finds a create still possibly running (the marker says `started`, and Lambda could not have stopped it yet:
the control plane re-leased the job while the first delivery still waits on the function) waits until it is
answered or stopped, and gives up retryably near its deadline without taking anything back (the running
create belongs to the other delivery). A revoke that finds such a create revokes now and again once it is
over (the record is rewritten as expired, so the expiry loop does it).

Credentials are sealed to the requester's key before they leave the connector; the answer of a credentials
call is never logged, never put in an error message, never returned in the clear.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from connector.errors import ConnectorError, ErrorCode, InvalidJob
from connector.integrations import ledger
from connector.integrations.base import GrantRequest, JobContext, RevokeRequest
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan
from connector.integrations.effect import Effect, Level
from connector.integrations.lambda_custom import records as grant_records
from connector.integrations.lambda_custom.integration import (
    RESOURCE_TYPE,
    FunctionAnswered,
    FunctionFailed,
    LambdaCustomIntegration,
)
from connector.integrations.lambda_custom.records import GrantRecords
from connector.logging import get_logger
from connector.sealing import require_public_key, seal

log = get_logger("connector.integrations.lambda_custom")

MAX_RESOURCES = 100  # the seed's guardrail: at most 100 resources named one by one
CREDENTIALS = ("create", "reset")
FIELDS = frozenset({"resource_type", "resources", "permission", "credentials"})
SETTLE_MARGIN = 60.0  # seconds: an Invoke starts a moment after its marker is written; replicas' clocks differ
POLL_SECONDS = 1.0  # how often a delivery waiting on another's create reads the marker


class CreateInFlight(ConnectorError):
    """Another delivery's create-credentials for this grant may still be running: nothing is taken back."""


def _string_list(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidJob(f"{what} must be a list of non-empty strings")
    if not value:
        raise InvalidJob(f"{what} must name at least one resource")
    if len(value) > MAX_RESOURCES:
        raise InvalidJob(f"{what} names {len(value)} resources; at most {MAX_RESOURCES}")
    return list(dict.fromkeys(value))


def parse_target(target: Mapping[str, Any], *, for_revoke: bool = False) -> tuple[list[str], str, str | None]:
    """(resources, permission, credentials) of a target."""
    unknown = sorted(set(target) - FIELDS)
    if unknown:
        raise InvalidJob(f"target.{str(unknown[0])[:60]}: unknown field; a lambda_custom target takes {sorted(FIELDS)}")
    resources = _string_list(target.get("resources"), "target.resources")
    permission = target.get("permission")
    if not isinstance(permission, str) or not permission:
        raise InvalidJob("target.permission must name one of the permissions list-resources returned")
    if for_revoke:  # a revoke often carries the grant's own target: it never makes credentials, so never refuse
        return resources, permission, None
    credentials = target.get("credentials")
    if credentials is not None and credentials not in CREDENTIALS:
        raise InvalidJob("target.credentials must be 'create' or 'reset' (or absent)")
    return resources, permission, credentials


class LambdaGrants:
    def __init__(self, integration: LambdaCustomIntegration) -> None:
        self.integration = integration

    def _records(self) -> GrantRecords:
        fn = self.integration
        return GrantRecords(fn.client("ssm"), fn.services.connector_id, fn.integration_id)

    def _params(self, username: str, grant_id: str, resources: list[str], permission: str) -> dict[str, Any]:
        return {
            "username": username,
            "grant_id": grant_id,
            "resources": resources,
            "permission": permission,
            "custom_parameters": dict(self.integration.custom_parameters),
        }

    @staticmethod
    def _fields(arn: str, username: str, resources: list[str], permission: str) -> dict[str, Any]:
        return {"function": arn, "username": username, "resources": resources, "permission": permission}

    # -- Provisioner -------------------------------------------------------------------------------------
    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        resources, permission, credentials = parse_target(request.target)
        if credentials is not None:
            require_public_key(request.requester_public_key)  # before anything is changed
        function = self.integration.checked_function()
        arn = function.arn
        # A record that cannot be written is refused now, before the guardrails and any invocation.
        grant_records.encode(
            request.grant_id, request.expires_at, self._fields(arn, request.principal, resources, permission)
        )
        parts = arn.split(":")
        return Effect(
            kind=RESOURCE_TYPE,
            principal=request.principal,
            level=Level.CUSTOM,
            expires_at=request.expires_at,
            reasons=(f"the customer's function {arn} decides what {permission!r} gives",),
            account_id=parts[4] if len(parts) > 6 else "",
            region=self.integration.region,
            resources=tuple(resources),
            permission=permission,
            extra={"function": arn, "function_timeout": f"{function.timeout:g}", "credentials": credentials or "none"},
        )

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        resources, permission, credentials = parse_target(request.target)
        fn = self.integration
        arn = effect.extra["function"]
        params = self._params(request.principal, request.grant_id, resources, permission)
        if request.dry_run:
            # The result is stored by the control plane: custom_parameters are the customer's and may hold a
            # secret, so only their names are shown.
            params = params | {"custom_parameters": sorted(params["custom_parameters"])}
            calls = [{"method": "Invoke", "function": arn, "event": {"event_type": "grant-access", "params": params}}]
            if credentials is not None:
                event = {"event_type": f"{credentials}-credentials", "params": _without_permission(params)}
                calls.append({"method": "Invoke", "function": arn, "event": event})
            return {"grant_id": request.grant_id, "dry_run": True, "calls": calls}
        records = self._records()
        fields = self._fields(arn, request.principal, resources, permission)
        records.put(request.grant_id, request.expires_at, fields)  # the record first
        ctx.check_cancelled()
        fn.require_ok(arn, "grant-access", fn.invoke(arn, "grant-access", params))
        result: dict[str, Any] = {"grant_id": request.grant_id, "function": arn, "status": "ok"}
        if credentials is not None:
            # How long a create this delivery starts can run: the function's Timeout (Lambda stops it then),
            # or the connector's own wait when longer.
            runs = max(float(effect.extra.get("function_timeout") or 900), fn.timeout_seconds)
            try:
                result |= self._credentials(arn, credentials, runs, params, request, ctx, records)
            except CreateInFlight:
                raise  # taking the access back now would strand the credential the running create makes
            except Exception:
                # No credentials, no access: take back what grant-access just gave, then report the failure.
                self._undo_grant(arn, params, request.grant_id)
                raise
        log.info("lambda_grant_applied", grant_id=request.grant_id, function=arn, credentials=credentials or "none")
        return result

    def _credentials(
        self,
        arn: str,
        wanted: str,
        runs: float,
        params: dict[str, Any],
        request: GrantRequest,
        ctx: JobContext,
        records: GrantRecords,
    ) -> dict[str, Any]:
        ctx.check_cancelled()
        first = self._claim(records, request.grant_id, wanted, runs, ctx)
        event_type = "create-credentials" if first else "reset-credentials"
        try:
            answer = self.integration.invoke(arn, event_type, _without_permission(params))
            self.integration.require_ok(arn, event_type, answer)
        except FunctionFailed:
            if first:  # it answered, and made nothing: a later delivery may create after all
                self._marker_update(records.undo_create, request.grant_id)
            raise
        except FunctionAnswered:
            if first:  # over, with an unknown outcome: later deliveries reset, and need not wait
                self._marker_update(records.create_answered, request.grant_id, ctx.attempt)
            raise
        if first:
            self._marker_update(records.create_answered, request.grant_id, ctx.attempt)
        secret_fields = {k: v for k, v in answer.items() if k != "status"}
        # Sealed here, in the connector: only the requester's private key opens it.
        sealed = seal(request.requester_public_key, secret_fields) if secret_fields else None
        out: dict[str, Any] = {"credentials": sealed, "credentials_event": event_type}
        if wanted == "create" and not first:
            out["credentials_note"] = (
                "credentials for this grant were made by an earlier delivery that did not reach you; they were "
                "reset, so the ones sealed here are the only ones that work"
            )
        return out

    def _claim(self, records: GrantRecords, grant_id: str, wanted: str, runs: float, ctx: JobContext) -> bool:
        """True: this delivery runs create-credentials. False: it resets, once no create can still be running."""
        waited = False
        claims = 0
        while True:
            until = time.time() + runs + SETTLE_MARGIN
            claims += 1
            if wanted == "create" and records.start_create(grant_id, ctx.attempt, until):
                return True
            marker = records.marker(grant_id)
            if marker is None:
                if wanted == "create" and claims <= 3:
                    continue  # the create before was refused and its marker removed: this one may create
                return False
            if marker.settled(time.time()):
                return False
            if not waited:
                log.info("lambda_credentials_waiting", grant_id=grant_id, until=int(marker.until))
                waited = True
            remaining = ctx.remaining()
            if remaining is not None and remaining < 2 * POLL_SECONDS:
                raise CreateInFlight(
                    ErrorCode.CONFLICT,
                    "an earlier delivery's create-credentials for this grant may still be running; this delivery "
                    "resets the credentials once it is over, so retry later",
                    retryable=True,
                )
            if ctx.cancelled.wait(POLL_SECONDS):
                raise CreateInFlight(ErrorCode.CANCELLED, "the job was cancelled", retryable=False)

    @staticmethod
    def _marker_update(update: Any, *args: Any) -> None:
        try:
            update(*args)
        except Exception as exc:  # the marker stays "started": later deliveries wait for its `until`, then reset
            log.warning("lambda_create_marker_update_failed", error_code=type(exc).__name__)

    def _undo_grant(self, arn: str, params: dict[str, Any], grant_id: str) -> None:
        try:
            self.integration.require_ok(arn, "revoke-access", self.integration.invoke(arn, "revoke-access", params))
        except Exception as exc:  # the original failure is what the job reports; the record stays for expiry
            code = exc.code if isinstance(exc, ConnectorError) else type(exc).__name__
            log.warning("lambda_grant_rollback_failed", grant_id=grant_id, function=arn, error_code=str(code))

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        resources, permission, _ = parse_target(request.target, for_revoke=True)
        fn = self.integration
        arn = fn.checked_function().arn
        params = self._params(request.principal, request.grant_id, resources, permission)
        if request.dry_run:
            event = {
                "event_type": "revoke-access",
                "params": params | {"custom_parameters": sorted(params["custom_parameters"])},
            }
            return {
                "grant_id": request.grant_id,
                "dry_run": True,
                "calls": [{"method": "Invoke", "function": arn, "event": event}],
            }
        ctx.check_cancelled()
        fn.require_ok(arn, "revoke-access", fn.invoke(arn, "revoke-access", params))
        records = self._records()
        result: dict[str, Any] = {"grant_id": request.grant_id, "function": arn, "status": "ok"}
        marker = records.marker(request.grant_id)
        if marker is not None and not marker.settled(time.time()):
            # A create still running may make a credential after this revoke: keep the record, expired now, so
            # the expiry loop revokes again (and then forgets it) once that create is over.
            records.put(
                request.grant_id, datetime.now(UTC), self._fields(arn, request.principal, resources, permission)
            )
            log.info("lambda_grant_revoked_create_running", grant_id=request.grant_id, function=arn)
            return result | {"revoke_again": "a create-credentials of this grant may still be running"}
        records.forget(request.grant_id)  # the record last, once the function said it is done
        log.info("lambda_grant_revoked", grant_id=request.grant_id, function=arn)
        return result

    # -- ExpiryScanner -----------------------------------------------------------------------------------
    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        """Every record of this integration (one GetParametersByPath listing per sweep)."""
        for name, record in self._records().all():
            scan.check()
            if not record.expired(scan.now):
                continue
            fields = record.fields
            grant_id, username = str(fields.get("grant_id", "")), str(fields.get("username", ""))
            resources, permission = fields.get("resources"), fields.get("permission")
            readable = grant_id and username and isinstance(resources, list) and isinstance(permission, str)
            yield ExpiredGrant(
                place=name,
                grant_key=ledger.grant_key(grant_id) if grant_id else name,
                expires_epoch=record.expires_epoch,
                problem=record.problem,
                request=RevokeRequest(
                    grant_id=grant_id,
                    principal=username,
                    target={"resource_type": RESOURCE_TYPE, "resources": resources, "permission": permission},
                )
                if readable
                else None,
            )


def _without_permission(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "permission"}
