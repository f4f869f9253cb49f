"""The one registry of integration types and target kinds, built at start-up and checked there.

Keyed by integration type and by (integration type, target resource type). Registration checks each part
against the capability it claims (connector.integrations.capabilities): an integration's Syncer must sync; a
kind must be a Provisioner, and an ExpiryScanner unless it changes nothing, so no kind can grant what the
expiry loop would never look for. Duplicates fail at start-up. Adding a kind is one package and one line in
`CATALOG`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connector.integrations.capabilities import (
    ExpiryScanner,
    Integration,
    IntegrationSpec,
    KindSpec,
    Provisioner,
    Syncer,
)


def catalog() -> list[IntegrationSpec | KindSpec]:
    """Every integration type and kind this build ships: the one place that names them."""
    from connector.integrations import (
        aws_auth,
        databases,
        discovered_databases,
        ec2_ssm,
        eks_access,
        iam_access,
        identity_center,
        kubernetes,
        kubernetes_rbac,
        lambda_custom,
        noop,
    )

    return [
        discovered_databases.INTEGRATION,  # aws_organization, with the contents of the databases it finds
        discovered_databases.KIND,
        eks_access.KIND,
        identity_center.KIND,
        iam_access.KIND,
        ec2_ssm.KIND,
        kubernetes.INTEGRATION,
        kubernetes_rbac.KIND,
        aws_auth.INTEGRATION,
        aws_auth.KIND,
        lambda_custom.INTEGRATION,
        lambda_custom.KIND,
        noop.INTEGRATION,
        noop.KIND,
        *databases.SPECS,
    ]


def _implements(factory: Any, protocol: type) -> bool:
    return isinstance(factory, type) and issubclass(factory, protocol)


class Registry:
    def __init__(self) -> None:
        self._integrations: dict[str, IntegrationSpec] = {}
        self._kinds: dict[tuple[str, str], KindSpec] = {}

    def add(self, spec: IntegrationSpec | KindSpec) -> None:
        if isinstance(spec, IntegrationSpec):
            self._add_integration(spec)
        else:
            self._add_kind(spec)

    def _add_integration(self, spec: IntegrationSpec) -> None:
        type_id = getattr(spec.cls, "type_id", "")
        if not type_id or not issubclass(spec.cls, Integration):
            raise ValueError(f"{spec.cls.__name__} is not an Integration with a type_id")
        if type_id in self._integrations:
            raise ValueError(f"integration type {type_id!r} registered twice")
        if spec.syncer is not None and not _implements(spec.syncer, Syncer):
            raise ValueError(f"{type_id}: {spec.syncer!r} is not a Syncer (sync(request, ctx))")
        self._integrations[type_id] = spec

    def _add_kind(self, spec: KindSpec) -> None:
        key = (spec.integration_type, spec.resource_type)
        if spec.integration_type not in self._integrations:
            raise ValueError(
                f"kind {spec.resource_type!r}: integration type {spec.integration_type!r} is not registered"
            )
        if key in self._kinds:
            raise ValueError(f"kind {spec.resource_type!r} of {spec.integration_type!r} registered twice")
        if not _implements(spec.factory, Provisioner):
            raise ValueError(
                f"kind {spec.resource_type!r}: {spec.factory!r} is not a Provisioner (describe, grant, revoke)"
            )
        if not spec.changes_nothing and not _implements(spec.factory, ExpiryScanner):
            raise ValueError(
                f"kind {spec.resource_type!r}: {spec.factory!r} grants but is no ExpiryScanner: its grants would never expire"
            )
        self._kinds[key] = spec

    # -- lookups -----------------------------------------------------------------------------------------
    def get(self, type_id: str) -> type[Integration] | None:
        spec = self._integrations.get(type_id)
        return spec.cls if spec is not None else None

    def types(self) -> list[str]:
        return sorted(self._integrations)

    def resource_types(self, type_id: str) -> list[str]:
        return sorted(r for (t, r) in self._kinds if t == type_id)

    def syncer(self, integration: Integration) -> Syncer | None:
        spec = self._integrations[integration.type_id]
        if spec.syncer is None:
            return None
        integration.kind_parts = lambda: [part for _, part in self.scanners(integration)]
        syncer: Syncer = _part(integration, "sync", spec.syncer)
        return syncer

    def kind(self, integration: Integration, resource_type: str) -> KindSpec | None:
        return self._kinds.get((integration.type_id, resource_type))

    def provisioner(self, integration: Integration, resource_type: str) -> Provisioner | None:
        spec = self.kind(integration, resource_type)
        if spec is None:
            return None
        provisioner: Provisioner = _part(integration, resource_type, spec.factory)
        return provisioner

    def scanners(self, integration: Integration) -> list[tuple[str, ExpiryScanner]]:
        """(resource type, scanner) of every kind of this integration's type that can expire grants."""
        out: list[tuple[str, ExpiryScanner]] = []
        for (type_id, resource_type), spec in sorted(self._kinds.items()):
            if type_id == integration.type_id and not spec.changes_nothing:
                out.append((resource_type, _part(integration, resource_type, spec.factory)))
        return out


def _part(integration: Integration, key: str, factory: Any) -> Any:
    """The capability object made from this integration instance, made once (it may cache lookups)."""
    part = integration.parts.get(key)
    if part is None:
        part = integration.parts.setdefault(key, factory(integration))
    return part


def build_registry(enabled: Iterable[str] | None = None) -> Registry:
    """The one function that decides which integrations are active: all shipped ones, or `enabled`."""
    wanted = None if enabled is None else set(enabled)
    registry = Registry()
    for spec in catalog():
        type_id = spec.type_id if isinstance(spec, IntegrationSpec) else spec.integration_type
        if wanted is None or type_id in wanted:
            registry.add(spec)
    if wanted is not None and (missing := wanted - set(registry.types())):
        raise ValueError(f"unknown integration types enabled: {sorted(missing)}")
    return registry
