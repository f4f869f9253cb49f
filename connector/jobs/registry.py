"""The one registry of integration types, built at start-up. Duplicates fail at start-up."""

from __future__ import annotations

from collections.abc import Iterable

from connector.integrations.base import Integration


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, type[Integration]] = {}

    def register(self, cls: type[Integration]) -> None:
        type_id = getattr(cls, "type_id", "")
        if not type_id:
            raise ValueError(f"{cls.__name__} has no type_id")
        if type_id in self._types:
            raise ValueError(
                f"integration type {type_id!r} registered twice ({self._types[type_id].__name__}, {cls.__name__})"
            )
        self._types[type_id] = cls

    def get(self, type_id: str) -> type[Integration] | None:
        return self._types.get(type_id)

    def types(self) -> list[str]:
        return sorted(self._types)


def all_integration_classes() -> list[type[Integration]]:
    """Every integration this build ships. Imported here, lazily, so the registry is the one place."""
    from connector.integrations.aws_organization import AwsOrganizationIntegration
    from connector.integrations.noop import NoopIntegration

    return [AwsOrganizationIntegration, NoopIntegration]


def build_registry(enabled: Iterable[str] | None = None) -> Registry:
    """The one function that decides which integrations are active: all shipped ones, or `enabled`."""
    wanted = None if enabled is None else set(enabled)
    registry = Registry()
    for cls in all_integration_classes():
        if wanted is None or cls.type_id in wanted:
            registry.register(cls)
    if wanted is not None and (missing := wanted - set(registry.types())):
        raise ValueError(f"unknown integration types enabled: {sorted(missing)}")
    return registry
