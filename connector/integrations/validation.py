"""Turn pydantic validation errors into the connector's typed errors, worded for the person who must fix them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from connector.errors import InvalidJob, InvalidSettings

M = TypeVar("M", bound=BaseModel)


def first_problem(exc: ValidationError, default_field: str, unknown: str = "unknown field") -> tuple[str, str]:
    """(dotted field path, what is wrong) of the first error."""
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if not isinstance(p, int)) or default_field
    what = unknown if err.get("type") == "extra_forbidden" else str(err.get("msg", "invalid"))
    return where, what.removeprefix("Value error, ")


def parse_target(model: type[M], raw: Mapping[str, Any]) -> M:
    """A job's `target` as `model`; a bad one is a non-retryable INVALID_JOB naming the field."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        where, what = first_problem(exc, "")
        raise InvalidJob(f"target.{where}: {what}" if where else f"target: {what}") from None


def parse_settings(model: type[M], raw: Mapping[str, Any]) -> M:
    """An integration's settings as `model`; bad ones are a non-retryable INVALID_SETTINGS naming the setting."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        setting, problem = first_problem(exc, "settings", unknown="unknown setting")
        raise InvalidSettings(setting, problem) from None
