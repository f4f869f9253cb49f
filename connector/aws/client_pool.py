"""Assumed-role clients that share botocore's expensive parts across accounts, and sign only as their own.

A botocore client costs ~6 ms of CPU to make (its class, endpoint resolver, a copy of the session's event
emitter with every handler, an HTTP connection pool) and ~1 MB to keep. A sync makes one per (account,
region) and uses each for one scope: 4,000 clients for 1,000 accounts x 4 regions, ~17 % of the agent's CPU.

So the clients of assumed roles come in two layers:

- a **shared client** per (service, region), bounded (least recently used dropped first), made with no
  credentials of its own: its signer holds `_BoundCredentials`, which answers only with the credentials of
  the account the *current call* is bound to, and raises NoCredentialsError when no call is bound;
- an **AccountClient** per lookup: the shared client plus one `Binding` (one role session's credentials,
  fixed at construction, never swapped). Every API call through it binds that Binding for the duration of
  the call, in the calling thread's context (a ContextVar: other threads and other calls never see it), and
  unbinds it afterwards, whatever happens.

Signing with another account's credentials is impossible by construction, not by care: the only object that
can make a shared client sign is an AccountClient, an AccountClient has exactly one Binding for its whole life,
and `AwsSessions.client(key, ...)` builds it from the Binding stored under `key` itself. The shared client used
directly (or a waiter / any method reached without the AccountClient) signs with nothing and fails closed.
Paginators are rebuilt on the AccountClient's own methods, so each page is a bound call.

Only services whose requests are plain SigV4 with no per-client identity cache are shared (`SHARED_SERVICES`):
S3 keeps an S3 Express session cache keyed by bucket inside the client, which must never serve two accounts.

A Binding also keeps its frozen credentials for `RECHECK_SECONDS`: botocore's refreshable credentials take a
lock and compare the expiry with a timezone-aware clock on every request. The keys are refreshed minutes
before expiry (sessions.py scales the windows), so keys at most a few seconds old are still valid.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from botocore.exceptions import NoCredentialsError

# Services whose clients may be shared across accounts: SigV4 only, no identity cache inside the client.
SHARED_SERVICES = frozenset(
    {
        "eks",
        "organizations",
        "sso-admin",
        "identitystore",
        "iam",
        "ec2",
        "sts",
        "kms",
        "ssm",
        "lambda",
        "rds",
        "redshift",
        "sns",
        "sqs",
        "cloudformation",
    }
)
RECHECK_SECONDS = 5.0


class Binding:
    """One role session's credentials, for the calls of the AccountClients made for it."""

    __slots__ = ("_credentials", "_snapshot", "identity")

    def __init__(self, identity: str, credentials: Any) -> None:
        self.identity = identity  # the session key: role ARN | external id | source session
        self._credentials = credentials
        self._snapshot: tuple[Any, float] | None = None  # (frozen credentials, monotonic time to re-check)

    def frozen(self) -> Any:
        now = time.monotonic()
        snapshot = self._snapshot
        if snapshot is not None and now < snapshot[1]:
            return snapshot[0]
        frozen = self._credentials.get_frozen_credentials()  # refreshes (AssumeRole) when due
        self._snapshot = (frozen, now + RECHECK_SECONDS)  # one assignment: readers see old or new, whole
        return frozen

    def __repr__(self) -> str:
        return f"Binding({self.identity!r})"  # never the keys


_BOUND: ContextVar[Binding | None] = ContextVar("connector_aws_bound_credentials", default=None)


class _BoundCredentials:
    """What a shared client's signer holds: the current call's Binding's credentials, or none at all."""

    method = "assume-role"

    def get_frozen_credentials(self) -> Any:
        binding = _BOUND.get()
        if binding is None:
            raise NoCredentialsError()  # a shared client used without an AccountClient: sign with nothing
        return binding.frozen()

    def get_deferred_property(self, name: str) -> Callable[[], None]:
        # Endpoint rules' AWS::Auth::AccountId: shared clients are made with account_id_endpoint_mode disabled.
        return lambda: None


BOUND_CREDENTIALS = _BoundCredentials()


class AccountClient:
    """A shared client that signs every call with one Binding's credentials. Thread-safe like the client."""

    __slots__ = ("__weakref__", "_binding", "_client", "_methods")

    def __init__(self, client: Any, binding: Binding) -> None:
        self._client = client
        self._binding = binding
        self._methods: dict[str, Callable[..., Any]] = {}

    @property
    def binding(self) -> Binding:
        return self._binding

    @property
    def meta(self) -> Any:
        return self._client.meta

    @property
    def exceptions(self) -> Any:
        return self._client.exceptions

    def can_paginate(self, operation_name: str) -> bool:
        return bool(self._client.can_paginate(operation_name))

    def get_paginator(self, operation_name: str) -> Any:
        """botocore builds a new paginator class on every get_paginator (~1 % of a sync's CPU at one per
        access entry); a paginator is stateless between paginate() calls, so this client keeps its own."""
        key = "paginator:" + operation_name
        paginator = self._methods.get(key)
        if paginator is None:
            paginator = self._client.get_paginator(operation_name)
            paginator._method = getattr(self, operation_name)  # each page: a call bound to this account
            self._methods[key] = paginator
        return paginator

    def _bound(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        token = _BOUND.set(self._binding)
        try:
            return method(*args, **kwargs)
        finally:
            _BOUND.reset(token)

    def __getattr__(self, name: str) -> Any:
        method = self._methods.get(name)
        if method is None:
            attr = getattr(self._client, name)
            if not callable(attr):
                return attr
            method = self._methods[name] = functools.partial(self._bound, attr)
        return method

    def __repr__(self) -> str:
        return f"AccountClient({self._client.meta.service_model.service_name}, {self._binding!r})"


class SharedClients:
    """At most `limit` shared clients, by (service, region); `make` creates one (the caller's lock held)."""

    def __init__(self, make: Callable[[str, str | None], Any], limit: int) -> None:
        self._make = make
        self._limit = limit
        self._lock = threading.Lock()
        self._clients: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def get(self, service: str, region: str | None) -> Any:
        key = (service, region or "")
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._make(service, region)
                while len(self._clients) > self._limit:
                    self._clients.popitem(last=False)  # AccountClients still holding it keep it alive
            else:
                self._clients.move_to_end(key)
            return client

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)
