"""One structured audit line per grant and per revoke: `audit` on the `connector.audit` logger.

Fields: action (grant|revoke), source (job|expiry), grant_id, job_id, attempt, integration_id,
integration_type, principal, target (resource lists shortened), policies, scope, outcome, error_code,
error (message), duration_ms, dry_run, calls (number of mutating calls made or planned), effect (for
a grant: the Effect the guardrails judged: kind, level, where, what). No secrets: the
requester's public key and credentials never enter it, and the line passes the redaction processor like
every other. Customers ship these lines to their SIEM, so the field names are stable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.errors import ConnectorError
from connector.logging import get_logger

log = get_logger("connector.audit")
MAX_LISTED = 10  # a target may name up to 100 resources: list the first few and count the rest


def _short(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and len(value) > MAX_LISTED:
        return [*list(value)[:MAX_LISTED], f"... {len(value) - MAX_LISTED} more"]
    return value


def summarize_target(target: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _short(v) for k, v in target.items()}


def policies_of(target: Mapping[str, Any]) -> list[str]:
    """What the grant gives, whatever its kind: EKS access policies, a permission set, an access level. The
    target is the job's, unvalidated (a refused grant is audited too): anything but a list is shown as text."""
    if policies := target.get("access_policies"):
        listed = policies if isinstance(policies, list) else [policies]
        return [str(p).rsplit("/", 1)[-1] for p in listed]
    if ps := target.get("permission_set"):
        return [str(ps)]
    if level := target.get("access_level"):
        return [f"{level}"]
    return []


def scope_of(target: Mapping[str, Any]) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    for key in ("account_id", "region", "cluster", "scope", "namespaces", "role", "principal_type"):
        if key in target:
            scope[key] = _short(target[key])
    if "resources" in target:
        resources = target.get("resources")
        scope["resources"] = len(resources) if isinstance(resources, list) else str(resources)[:40]
    return scope


def record(
    *,
    action: str,
    source: str,
    grant_id: str,
    job_id: str,
    attempt: int,
    integration_id: str,
    integration_type: str,
    principal: str,
    target: Mapping[str, Any],
    dry_run: bool,
    outcome: str,
    error: ConnectorError | None,
    duration_s: float,
    result: Mapping[str, Any] | None = None,
    effect: Mapping[str, Any] | None = None,
) -> None:
    """Emit the audit line. Never raises: auditing must not change a job's outcome."""
    try:
        calls = (result or {}).get("calls")
        log.info(
            "audit",
            action=action,
            source=source,
            grant_id=grant_id,
            job_id=job_id,
            attempt=attempt,
            integration_id=integration_id,
            integration_type=integration_type,
            principal=principal,
            target=summarize_target(target),
            policies=policies_of(target),
            scope=scope_of(target),
            outcome=outcome,
            error_code=str(error.code) if error is not None else "",
            error=error.message[:500] if error is not None else "",
            duration_ms=round(duration_s * 1000, 1),
            dry_run=dry_run,
            calls=len(calls) if isinstance(calls, list) else None,
            effect=dict(effect) if effect else None,
        )
    except Exception:  # pragma: no cover - a broken log sink must not fail a grant
        log.warning(
            "audit_failed", action=action, grant_id=grant_id, job_id=job_id, outcome=outcome, principal=principal
        )
