"""`CredentialsFunction`: a customer's access function with real state, for `Sandbox.lambdas.register`.

It implements the seed's contract ({"event_type": ..., "params": {username, grant_id, resources, permission,
custom_parameters}}) the way a real one would, so tests can check what the connector left behind:
- grant-access keeps the user's grant (resources, permission); revoke-access removes it and invalidates the
  user's credentials;
- create-credentials issues a fresh random secret and keeps it live. Asked again, it issues another one,
  as the contract says: a second live credential is the orphan the connector must never cause, visible
  through `live_credentials()` / `orphans()`;
- reset-credentials invalidates the user's live credentials and issues one new;
- list-resources answers the seed's sample (or the resources / permissions given).
Credential answers are {"status": "ok", "username": ..., "password": ...}.

For tests: `gate` (create-credentials waits until it is set, so a call can be held in flight; `at_gate` is set
while one waits) and `inject(...)` (raise, answer {"status": text}, or answer slowly, before or after the
state changes). Past the function's Timeout the sandbox has already answered "timed out"; like AWS killing
the function, a call still pausing or waiting at the gate then stops without changing anything.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from connector.sandbox.lambdas import FunctionTimedOut, LambdaContext

SAMPLE_RESOURCES: list[dict[str, Any]] = [
    {"id": f"resource{i}", "name": f"Resource {i}", "type": "app", "metadata": {f"key{i}": f"value{i}"}}
    for i in (1, 2, 3)
]
SAMPLE_PERMISSIONS: list[dict[str, Any]] = [{"id": "admin", "name": "Admin"}, {"id": "reader", "name": "Reader"}]
EVENT_TYPES = ("list-resources", "grant-access", "revoke-access", "create-credentials", "reset-credentials")
MAX_GATE_WAIT = 900.0  # seconds; Lambda's longest Timeout, for a call made without the sandbox's context


@dataclass(frozen=True)
class Grant:
    grant_id: str
    resources: tuple[str, ...]
    permission: str


@dataclass
class Credential:
    username: str
    secret: str = field(repr=False)
    grant_id: str
    event_type: str  # create-credentials | reset-credentials
    issued: float  # time.time()
    live: bool = True


@dataclass
class _Injection:
    event_type: str | None
    raises: BaseException | None
    status: str | None
    delay: float
    after_effect: bool
    remaining: int | None


class CredentialsFunction:
    def __init__(
        self,
        *,
        resources: list[dict[str, Any]] | None = None,
        permissions: list[dict[str, Any]] | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.resources = copy.deepcopy(SAMPLE_RESOURCES if resources is None else resources)
        self.permissions = copy.deepcopy(SAMPLE_PERMISSIONS if permissions is None else permissions)
        self.gate = gate
        self.at_gate = threading.Event()
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}
        self._credentials: list[Credential] = []
        self._calls: Counter[str] = Counter()
        self._injections: list[_Injection] = []

    # -- what tests look at --------------------------------------------------------------------------------
    def live_credentials(self, username: str) -> list[str]:
        """The user's secrets still valid, oldest first (more than one: an orphan)."""
        with self._lock:
            return [c.secret for c in self._credentials if c.username == username and c.live]

    def check(self, username: str, secret: str) -> bool:
        """Whether `secret` logs `username` in now."""
        return secret in self.live_credentials(username)

    def credentials(self, username: str | None = None) -> list[Credential]:
        """Every credential issued (live or not), oldest first."""
        with self._lock:
            return [copy.copy(c) for c in self._credentials if username is None or c.username == username]

    def grants(self) -> dict[str, Grant]:
        with self._lock:
            return dict(self._grants)

    def orphans(self) -> dict[str, list[str]]:
        """Users whose live credentials should not exist: more than one, or any without a grant."""
        with self._lock:
            live: dict[str, list[str]] = {}
            for c in self._credentials:
                if c.live:
                    live.setdefault(c.username, []).append(c.secret)
            return {u: s for u, s in live.items() if len(s) > 1 or u not in self._grants}

    def count(self, event_type: str) -> int:
        with self._lock:
            return self._calls[event_type]

    def counts(self) -> dict[str, int]:
        """Calls received by event type (injected failures included)."""
        with self._lock:
            return dict(self._calls)

    # -- failure injection ---------------------------------------------------------------------------------
    def inject(
        self,
        event_type: str | None = None,
        *,
        raises: BaseException | str | None = None,
        status: str | None = None,
        delay: float = 0.0,
        after_effect: bool = False,
        count: int | None = 1,
    ) -> None:
        """Make the next `count` calls (None: all) of `event_type` (None: any) fail: pause `delay` seconds,
        then raise `raises` (a string: RuntimeError) or answer {"status": status}. `after_effect`: the state
        changes first (a credential is issued, then the answer is lost), else nothing changes."""
        if raises is None and status is None and delay <= 0:
            raise ValueError("inject() needs raises, status or a delay")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 (None: every matching call)")
        error = RuntimeError(raises) if isinstance(raises, str) else raises
        with self._lock:
            self._injections.append(_Injection(event_type, error, status, delay, after_effect, count))

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    # -- the handler ---------------------------------------------------------------------------------------
    def __call__(self, event: Any, context: LambdaContext | None = None) -> dict[str, Any]:
        if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
            raise ValueError('the event must be an object {"event_type": ..., "params": {...}}')
        event_type: str = event["event_type"]
        params = event.get("params") or {}
        if not isinstance(params, dict):
            raise ValueError("params must be an object")
        with self._lock:
            self._calls[event_type] += 1
            injection = self._take(event_type)
        if injection is not None and not injection.after_effect:
            failed = _misbehave(injection, context)
            if failed is not None:
                return failed
        answer = self._apply(event_type, params, context)
        if injection is not None and injection.after_effect:
            return _misbehave(injection, context) or answer
        return answer

    def _apply(self, event_type: str, params: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        if event_type == "list-resources":
            return {"resources": copy.deepcopy(self.resources), "permissions": copy.deepcopy(self.permissions)}
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event_type {event_type!r}")
        username = params.get("username")
        if not isinstance(username, str) or not username:
            raise ValueError("params.username must be a non-empty string")
        grant_id = str(params.get("grant_id") or "")
        if event_type == "create-credentials" and self.gate is not None:
            self.at_gate.set()
            if not self.gate.wait(_remaining(context, MAX_GATE_WAIT)):
                raise FunctionTimedOut("create-credentials was still at the gate when the function timed out")
        _check_alive(context)
        with self._lock:
            if event_type == "grant-access":
                resources = params.get("resources") or []
                self._grants[username] = Grant(grant_id, tuple(map(str, resources)), str(params.get("permission")))
                return {"status": "ok"}
            if event_type in ("revoke-access", "reset-credentials"):
                for credential in self._credentials:
                    if credential.username == username:
                        credential.live = False
                if event_type == "revoke-access":
                    self._grants.pop(username, None)
                    return {"status": "ok"}
            secret = secrets.token_urlsafe(18)
            self._credentials.append(Credential(username, secret, grant_id, event_type, time.time()))
            return {"status": "ok", "username": username, "password": secret}

    def _take(self, event_type: str) -> _Injection | None:
        for injection in self._injections:
            if injection.event_type in (None, event_type):
                if injection.remaining is not None:
                    injection.remaining -= 1
                    if injection.remaining == 0:
                        self._injections.remove(injection)
                return injection
        return None


def _misbehave(injection: _Injection, context: LambdaContext | None) -> dict[str, Any] | None:
    """Pause, then raise or answer the injected status; None: carry on as normal (a slow answer)."""
    if injection.delay > 0:
        time.sleep(min(injection.delay, _remaining(context, injection.delay)))
        _check_alive(context)
    if injection.raises is not None:
        raise injection.raises
    return {"status": injection.status} if injection.status is not None else None


def _remaining(context: LambdaContext | None, default: float) -> float:
    return max(0.0, context.deadline - time.monotonic()) if context is not None else default


def _check_alive(context: LambdaContext | None) -> None:
    if context is not None and time.monotonic() >= context.deadline:
        raise FunctionTimedOut("the function's Timeout ran out")
