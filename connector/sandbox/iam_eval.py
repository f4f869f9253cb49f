"""A small evaluator of identity-based IAM policies, for the few calls the sandbox authorises itself.

moto checks no identity policy by default, and its optional checker turns an unmet condition on an Allow into
an explicit deny and substitutes no policy variables. The sandbox's SSM session calls need both (the policies
AWS documents for Session Manager use `${aws:userid}` and `ssm:resourceTag/...` conditions), so this follows
AWS's order: an explicit Deny wins, then any Allow, else an implicit deny. Supported: Action / NotAction,
Resource / NotResource (case-sensitive globs with `*` and `?`), `${aws:userid}` / `${aws:username}` /
`${aws:PrincipalAccount}` in resources and condition values, and the condition operators StringEquals,
StringLike, StringNotEquals, StringNotLike, Bool and their IfExists forms. A statement with any other operator
does not apply when it allows and applies when it denies (fail closed).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_VARIABLE = re.compile(r"\$\{([\w:]+)\}")
_OPERATORS = ("StringEquals", "StringLike", "StringNotEquals", "StringNotLike", "Bool")


@dataclass(frozen=True)
class Request:
    """One authorisation question: `action` on `resource`, by a caller whose context keys are `context`."""

    action: str
    resource: str
    context: Mapping[str, str]  # aws:userid, aws:username, ssm:resourceTag/..., ...


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    regex = fnmatch.translate(pattern)  # `*` and `?`; brackets do not occur in ARNs we serve
    return re.match(regex, value, 0 if case else re.IGNORECASE) is not None


def _substitute(text: str, context: Mapping[str, str]) -> str | None:
    missing = False

    def one(match: re.Match[str]) -> str:
        nonlocal missing
        key = match.group(1)
        if key not in context:
            missing = True
            return ""
        return context[key]

    out = _VARIABLE.sub(one, text)
    return None if missing else out


def _condition_holds(operator: str, key: str, expected: list[str], context: Mapping[str, str]) -> bool | None:
    """True / False, or None for an operator this evaluator does not know."""
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base not in _OPERATORS:
        return None
    actual = next((v for k, v in context.items() if k.lower() == key.lower()), None)
    if actual is None:
        return if_exists or base in ("StringNotEquals", "StringNotLike")
    values = [v for v in (_substitute(e, context) for e in expected) if v is not None]
    if base == "Bool":
        return actual.lower() in {v.lower() for v in values}
    if base == "StringEquals":
        return actual in values
    if base == "StringNotEquals":
        return actual not in values
    if base == "StringLike":
        return any(_glob(v, actual, case=True) for v in values)
    return not any(_glob(v, actual, case=True) for v in values)


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    effect = statement.get("Effect")
    if "NotAction" in statement:
        action_matches = not any(_glob(a, request.action, case=False) for a in _listed(statement["NotAction"]))
    else:
        action_matches = any(_glob(a, request.action, case=False) for a in _listed(statement.get("Action")))
    if not action_matches:
        return False
    resources = _listed(statement.get("NotResource") if "NotResource" in statement else statement.get("Resource"))
    hit = any(
        (pattern := _substitute(r, request.context)) is not None and _glob(pattern, request.resource, case=True)
        for r in resources
    )
    if hit == ("NotResource" in statement):
        return False
    for operator, keys in (statement.get("Condition") or {}).items():
        for key, expected in (keys or {}).items():
            holds = _condition_holds(str(operator), str(key), _listed(expected), request.context)
            if holds is None:
                return effect == "Deny"  # an operator we cannot judge: never grants, always restricts
            if not holds:
                return False
    return True


def statements(documents: Iterable[str | Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for document in documents:
        data = json.loads(document) if isinstance(document, str) else document
        found = data.get("Statement", [])
        out.extend(found if isinstance(found, list) else [found])
    return out


def allowed(documents: Iterable[str | Mapping[str, Any]], request: Request) -> bool:
    """AWS's verdict for an identity with these policy documents: explicit deny > allow > implicit deny."""
    verdict = False
    for statement in statements(documents):
        if _applies(statement, request):
            if statement.get("Effect") == "Deny":
                return False
            verdict = verdict or statement.get("Effect") == "Allow"
    return verdict
