"""Deterministic, Kubernetes-safe names and labels derived from a grant id.

Everything a grant creates is named and labelled from the grant id alone, so a repeated grant finds its
own objects and a revoke removes exactly those. Grant ids are free-form (up to 256 printable
characters); Kubernetes names are DNS-1123 (<= 63 here so they also fit in a label value), label values
<= 63 of [A-Za-z0-9._-]. When the id does not survive sanitising unchanged, or is too long, a hash of
the original id is appended so two different ids can never map to the same name.
"""

from __future__ import annotations

import hashlib
import re

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "access-connector"
GRANT_ID_LABEL = "access-connector/grant-id"
GRANT_ID_ANNOTATION = "access-connector/grant-id"  # the exact, unsanitised grant id
EXPIRES_AT_ANNOTATION = "access-connector/expires-at"

MAX_NAME = 63
HASH_CHARS = 10
BINDING_PREFIX = "ac-grant-"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:HASH_CHARS]


def _bounded(cleaned: str, original: str, limit: int, exact: bool) -> str:
    """`cleaned` if it is an exact, short-enough rendering of `original`; else a prefix of it + hash."""
    if exact and cleaned and len(cleaned) <= limit:
        return cleaned
    head = cleaned[: limit - HASH_CHARS - 1].rstrip("-._")
    return f"{head}-{_digest(original)}" if head else _digest(original)


def dns_label(value: str, prefix: str = "") -> str:
    """A DNS-1123 label (<= 63 chars) for `prefix + value`, hashed when sanitising changed anything."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    exact = cleaned == value
    name = _bounded(cleaned, value, MAX_NAME - len(prefix), exact)
    return prefix + name


def label_value(value: str) -> str:
    """A valid label value (<= 63 of [A-Za-z0-9._-], alnum at both ends) that identifies `value`."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-._")
    return _bounded(cleaned, value, MAX_NAME, cleaned == value)


def binding_name(grant_id: str) -> str:
    """The RoleBinding / ClusterRoleBinding name a grant owns."""
    return dns_label(grant_id, BINDING_PREFIX)


def grant_labels(grant_id: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, GRANT_ID_LABEL: label_value(grant_id)}


def grant_selector(grant_id: str) -> str:
    return ",".join(f"{k}={v}" for k, v in grant_labels(grant_id).items())


def is_dns_label(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(_DNS_LABEL.match(value))


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(_LABEL_VALUE.match(value))
