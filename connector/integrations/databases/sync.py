"""Inventory of one database server: databases, schemas, tables and roles, streamed to the control plane as
they are read (a server-side cursor per database) and bounded by `max_inventory_items`. A database the
connector cannot open becomes an `error` item naming the fix, and the rest goes on."""

from __future__ import annotations

from typing import Any

from connector.errors import ConnectorError
from connector.integrations.base import InventoryItem, JobContext, SyncRequest
from connector.integrations.databases.integration import DatabaseIntegration


class DatabaseSync:
    def __init__(self, integration: DatabaseIntegration) -> None:
        self.integration = integration

    def sync(self, request: SyncRequest, ctx: JobContext) -> dict[str, Any]:
        db = self.integration.db
        counts: dict[str, int] = {}
        try:
            for item in self.integration.engine().inventory(ctx.check_cancelled, db.max_inventory_items):
                ctx.emit(item)
                counts[item.type] = counts.get(item.type, 0) + 1
        except ConnectorError as exc:
            self.integration.login_refused(exc)
            if exc.code.value in ("CANCELLED", "TIMEOUT"):
                raise
            ctx.emit(
                InventoryItem(
                    type="error",
                    id=f"{db.address}#connect",
                    name=db.address,
                    attributes={"stage": "database", "error_code": str(exc.code), "error": exc.message},
                )
            )
            counts["error"] = counts.get("error", 0) + 1
        return {"address": db.address, "engine": db.engine, "items": counts}
