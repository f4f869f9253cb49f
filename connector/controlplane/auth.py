"""Bearer-token authentication for both services.

Connector tokens are kept only as SHA-256 hashes (in the db and in memory) and compared in constant time
against every known hash. The admin token is a separate secret for the Admin service. Health and
reflection need no token (probes and tooling). A missing or unknown token is refused with UNAUTHENTICATED
before the servicer runs; the servicer then checks the request's connector_id against the token's
(PERMISSION_DENIED on mismatch). Tokens never appear in a log line or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from connector.controlplane.db import Database

CONTROL_PLANE_SERVICE = "connector.v1.ControlPlane"
ADMIN_SERVICE = "connector.v1.Admin"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def bearer_token(metadata: Sequence[tuple[str, Any]] | Any) -> str:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


class TokenBook:
    """Known token hashes. On an unknown token it re-reads the table if the db changed since the last read
    (PRAGMA data_version), so a token made by `connector controlplane token create` while the server runs
    is accepted without a restart, and a flood of bad tokens costs no extra reads."""

    def __init__(self, db: Database, admin_token: str) -> None:
        self._db = db
        self._admin_hash = hash_token(admin_token)
        self._lock = threading.Lock()
        self._hashes: list[tuple[str, str]] = []
        self._version: int | None = None
        # Its own connection: the main one belongs to the engine's DB thread. An in-memory db cannot be
        # shared, so there only the settings' tokens (registered through add) count.
        self._reader: sqlite3.Connection | None = None
        if db.path != ":memory:":
            uri = f"{Path(db.path).resolve().as_uri()}?mode=ro"
            self._reader = sqlite3.connect(uri, uri=True, check_same_thread=False)

    def add(self, connector_id: str, token: str) -> None:
        """Registers a token given in the settings (its hash is stored; the token is not)."""
        digest = hash_token(token)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO connector_tokens (token_sha256, connector_id, created) VALUES (?, ?, ?) "
                "ON CONFLICT (token_sha256) DO UPDATE SET connector_id = excluded.connector_id",
                (digest, connector_id, time.time()),
            )

    def reload(self) -> None:
        with self._lock:
            conn = self._reader or self._db.conn
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            if self._reader is not None and version == self._version:
                return
            rows = conn.execute("SELECT connector_id, token_sha256 FROM connector_tokens").fetchall()
            self._hashes = [(str(r[0]), str(r[1])) for r in rows]
            self._version = version

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _match(self, digest: str) -> str | None:
        found = None
        with self._lock:
            hashes = list(self._hashes)
        for connector_id, known in hashes:  # no early exit: time does not depend on which entry matched
            if hmac.compare_digest(known, digest):
                found = connector_id
        return found

    def connector_for(self, token: str) -> str | None:
        """The connector id a token belongs to, or None."""
        if not token:
            return None
        digest = hash_token(token)
        found = self._match(digest)
        if found is None and self._reader is not None:
            self.reload()
            found = self._match(digest)
        return found

    def is_admin(self, token: str) -> bool:
        return bool(token) and hmac.compare_digest(self._admin_hash, hash_token(token))


def store_new_token(db: Database, connector_id: str, *, replace: bool = False) -> str:
    """Creates a token for a connector and stores its hash; returns the token (the caller writes it to a file)."""
    token = new_token()
    with db.transaction() as conn:
        if replace:
            conn.execute("DELETE FROM connector_tokens WHERE connector_id = ?", (connector_id,))
        conn.execute(
            "INSERT INTO connector_tokens (token_sha256, connector_id, created) VALUES (?, ?, ?)",
            (hash_token(token), connector_id, time.time()),
        )
    return token


def _denied(handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str) -> Any:
    """A handler of the same shape as `handler` that only refuses the call."""

    async def refuse(_request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class AuthInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, tokens: TokenBook) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        service = details.method.lstrip("/").split("/", 1)[0]
        if handler is None or service not in (CONTROL_PLANE_SERVICE, ADMIN_SERVICE):
            return handler
        token = bearer_token(details.invocation_metadata)
        if service == ADMIN_SERVICE:
            if not self._tokens.is_admin(token):
                return _denied(handler, grpc.StatusCode.UNAUTHENTICATED, "invalid admin token")  # type: ignore[no-any-return]
        elif self._tokens.connector_for(token) is None:
            return _denied(handler, grpc.StatusCode.UNAUTHENTICATED, "invalid connector token")  # type: ignore[no-any-return]
        return handler


async def connector_id_of(context: aio.ServicerContext[Any, Any], tokens: TokenBook, claimed: str) -> str:
    """The caller's connector id; aborts with PERMISSION_DENIED when the request claims another one."""
    owner = tokens.connector_for(bearer_token(context.invocation_metadata()))
    if owner is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid connector token")
    if not hmac.compare_digest(owner.encode(), claimed.encode()):
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"this token does not belong to connector {claimed!r}: use the token issued for that connector id",
        )
    return owner
