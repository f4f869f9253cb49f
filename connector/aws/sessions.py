"""AWS credentials: the connector identity, the management-account role, member-account roles.

Connector identity = the default boto3 chain (ECS task role, IRSA, EKS Pod Identity, env). From it the
management role is assumed (ExternalId, session name from the connector id), and from that the member
role in each account. Credentials are botocore's refreshable assume-role credentials, cached per
(account/role ARN, external id): assumed once, refreshed before expiry, never re-assumed per call.
Clients are cached per (credentials, service, region), at most `max_cached_clients` of them (least recently
used dropped first: a 1,000-account sync makes one per (account, region) and needs each only for its scope).
Clients are thread-safe; sessions are not, so every client creation happens under one lock. A role's clients
are made by one shared botocore session that is handed the role's credentials for the moment of creation
(a client binds them into its signer): a botocore session per account cost 5 ms of CPU to set up its event
handlers. That session shares the base session's model loader and endpoint data: without that each account
re-parses the service models and endpoints.json (about 9 MB and 0.3 s CPU per account). The STS client that
assumes member roles is made once per source credentials, not once per AssumeRole.

Roles' clients of the services in client_pool.SHARED_SERVICES are not made per account at all: one shared
client per (service, region), wrapped per lookup in an AccountClient bound to the asked role's credentials
(see connector/aws/client_pool.py for why that cannot sign as another account).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

from connector.aws.client_pool import BOUND_CREDENTIALS, SHARED_SERVICES, AccountClient, Binding, SharedClients
from connector.aws.partitions import PARTITION, sts_region
from connector.aws.timestamps import use_utc_timestamps

# Role chaining (an assumed role assuming another) caps sessions at one hour; AWS refuses longer ones.
ROLE_CHAINING_MAX_SECONDS = 3600
MIN_SESSION_SECONDS = 900
ROLE_ARN = re.compile(rf"^arn:({PARTITION}):iam::(\d{{12}}):role/([\w+=,.@/-]{{1,512}})$")
_SESSION_NAME_INVALID = re.compile(r"[^\w+=,.@-]")


def session_name(connector_id: str, suffix: str = "") -> str:
    """A RoleSessionName (2-64 of [\\w+=,.@-]) that shows up in CloudTrail as this connector."""
    name = _SESSION_NAME_INVALID.sub("-", f"connector-{connector_id}{'-' + suffix if suffix else ''}")
    return name[:64]


def clamp_session_duration(hours: float | None) -> tuple[int, str | None]:
    """Seconds to ask for, and a note when the requested duration had to be clamped."""
    if hours is None:
        return ROLE_CHAINING_MAX_SECONDS, None
    seconds = int(hours * 3600)
    if seconds > ROLE_CHAINING_MAX_SECONDS:
        return ROLE_CHAINING_MAX_SECONDS, (
            f"session duration {hours:g} h clamped to 1 h: role chaining (connector role -> management role) "
            "caps assumed-role sessions at one hour"
        )
    if seconds < MIN_SESSION_SECONDS:
        return MIN_SESSION_SECONDS, f"session duration {hours:g} h raised to the AWS minimum of 15 minutes"
    return seconds, None


@dataclass(frozen=True)
class ClientSettings:
    max_attempts: int = 10  # botocore standard retries: jittered exponential backoff on throttling / 5xx
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_pool_connections: int = 32
    max_cached_clients: int = 64  # a used client holds its own parsed model: ~1 MB
    # A shared client (client_pool.py) serves every account's concurrent scopes in its (service, region): room
    # for two syncs at max_parallelism 64 at once (beyond the pool, urllib3 opens a connection per call and
    # drops it). Only connections actually opened cost anything.
    shared_pool_connections: int = 128

    def botocore_config(self) -> Config:
        return Config(
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_pool_connections=self.max_pool_connections,
            user_agent_extra="access-connector",
        )


class AwsSessions:
    """Connector identity plus cached assumed-role credentials and clients. One per process."""

    def __init__(self, connector_id: str, client_settings: ClientSettings | None = None) -> None:
        self.connector_id = connector_id
        self.client_settings = client_settings or ClientSettings()
        self._config = self.client_settings.botocore_config()
        self._lock = threading.RLock()
        self._base = botocore.session.Session()
        self._credentials: dict[tuple[str, str, str], Any] = {}
        self._role_credentials: dict[str, Any] = {}  # session key -> refreshable credentials (kept: small)
        self._identity = boto3.Session(botocore_session=self._base)
        self._roles = botocore.session.Session()  # makes every role's clients (see the module docstring)
        _share_models(self._base, self._roles)
        use_utc_timestamps(self._base)
        use_utc_timestamps(self._roles)
        region = self._base.get_config_variable("region")
        if region:
            self._roles.set_config_variable("region", region)
        self._clients: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._sts_clients: OrderedDict[tuple[str, str, str], Any] = OrderedDict()  # by source credentials
        self._bindings: dict[str, Binding] = {}  # session key -> the one Binding its AccountClients sign with
        self._shared_config = self._config.merge(
            Config(
                max_pool_connections=max(
                    self.client_settings.shared_pool_connections, self._config.max_pool_connections
                ),
                account_id_endpoint_mode="disabled",  # the endpoint must not depend on whose call it is
            )
        )
        self._shared = SharedClients(self._create_shared, self.client_settings.max_cached_clients)

    def identity(self) -> str:
        return "identity"

    def assume(
        self, role_arn: str, *, via: str = "identity", external_id: str | None = None, duration_seconds: int = 3600
    ) -> str:
        """Key of a session for `role_arn`, assumed from the session `via`. Cached; refreshed by botocore."""
        key = (role_arn, external_id or "", via)
        with self._lock:
            if key in self._credentials:
                return self._session_key(key)
            source_credentials = self._credentials_object(via)
            extra: dict[str, Any] = {
                "RoleSessionName": session_name(self.connector_id),
                "DurationSeconds": duration_seconds,
            }
            if external_id:
                extra["ExternalId"] = external_id
            fetcher = AssumeRoleCredentialFetcher(
                client_creator=self._sts_client_creator(
                    via, sts_region(self._base.get_config_variable("region"), role_arn)
                ),
                source_credentials=source_credentials,
                role_arn=role_arn,
                extra_args=extra,
                expiry_window_seconds=300,
            )
            creds = DeferredRefreshableCredentials(method="assume-role", refresh_using=fetcher.fetch_credentials)
            # botocore starts refreshing 15 min (advisory) / 10 min (mandatory) before expiry: a 15-30 min session
            # would run a refresh attempt (lock + fetcher cache lookup) on every call. Scale the windows instead.
            creds._advisory_refresh_timeout = min(creds._advisory_refresh_timeout, duration_seconds // 4)
            creds._mandatory_refresh_timeout = min(creds._mandatory_refresh_timeout, duration_seconds // 8)
            self._credentials[key] = creds
            skey = self._session_key(key)
            self._role_credentials[skey] = creds
            self._bindings[skey] = Binding(skey, creds)
            return skey

    def _credentials_object(self, session_key: str) -> Any:
        """The credentials of a key: the identity's chain, or a role's refreshable credentials."""
        if session_key == "identity":
            return self._base.get_credentials()
        return self._role_credentials[session_key]

    def _create_client(self, session_key: str, service: str, region: str | None, **kwargs: Any) -> Any:
        """A new client (under the lock): the identity's from its session; a role's from the shared role session,
        which holds the role's credentials only while the client is made (the client keeps its own reference)."""
        if session_key == "identity":
            return self._identity.client(service, region_name=region, config=self._config, **kwargs)
        self._roles._credentials = self._role_credentials[session_key]
        try:
            return self._roles.create_client(service, region_name=region, config=self._config, **kwargs)
        finally:
            self._roles._credentials = None

    def _create_shared(self, service: str, region: str | None) -> Any:
        """A client of no account: its signer asks client_pool for the current call's Binding."""
        with self._lock:
            self._roles._credentials = BOUND_CREDENTIALS
            try:
                return self._roles.create_client(service, region_name=region, config=self._shared_config)
            finally:
                self._roles._credentials = None

    def _sts_client_creator(self, via: str, region: str | None = None) -> Any:
        """botocore's assume-role fetcher asks for an STS client with the source's frozen keys on every fetch;
        one client per source keys (they change only when the source refreshes) serves them all. `region`: the
        STS region for the role's partition (see `sts_region`), used unless the fetcher names one."""

        def create(service_name: str, **kwargs: Any) -> Any:
            if region and not kwargs.get("region_name"):
                kwargs["region_name"] = region
            key = (
                kwargs.get("aws_access_key_id") or "",
                kwargs.get("aws_session_token") or "",
                str(kwargs.get("region_name") or ""),
            )
            with self._lock:  # at most 4: older source keys are those before a refresh
                return _cached(
                    self._sts_clients,
                    key,
                    4,
                    lambda: self._identity.client(service_name, config=self._config, **kwargs),
                )

        return create

    @staticmethod
    def _session_key(key: tuple[str, str, str]) -> str:
        return "|".join(key)

    def credentials_of(self, session_key: str) -> Any:
        """Resolve credentials now (forces the AssumeRole), so failures surface where they belong."""
        with self._lock:
            creds = self._credentials_object(session_key)
        return creds.get_frozen_credentials() if creds is not None else None

    def forget(self, session_key: str) -> None:
        """Drop a session whose AssumeRole failed, so a later job (after the fix) assumes afresh."""
        with self._lock:
            self._role_credentials.pop(session_key, None)
            self._bindings.pop(session_key, None)
            self._credentials = {k: v for k, v in self._credentials.items() if self._session_key(k) != session_key}
            for ckey in [k for k in self._clients if k[0] == session_key]:
                del self._clients[ckey]

    def client(self, session_key: str, service: str, region: str | None = None) -> Any:
        if session_key != "identity" and service in SHARED_SERVICES:
            with self._lock:
                binding = self._bindings[session_key]  # KeyError: never assumed (or forgotten)
            return AccountClient(self._shared.get(service, region), binding)
        ckey = (session_key, service, region or "")
        with self._lock:
            return _cached(
                self._clients,
                ckey,
                self.client_settings.max_cached_clients,
                lambda: self._create_client(session_key, service, region),
            )


def _cached(cache: OrderedDict[Any, Any], key: Any, limit: int, make: Callable[[], Any]) -> Any:
    """`cache[key]`, made by `make` when missing; least recently used entries beyond `limit` are dropped (a
    caller still holding a dropped client keeps it alive). Call under the lock."""
    value = cache.get(key)
    if value is None:
        value = cache[key] = make()
        while len(cache) > limit:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return value


# Read-only, thread-safe components a role's session can take from the base session: service models and
# endpoint data are the bulk of a session's memory and of its first client's CPU.
_SHARED_COMPONENTS = ("data_loader",)
_SHARED_INTERNAL_COMPONENTS = ("endpoint_resolver", "exceptions_factory", "default_config_resolver")


def _share_models(base: botocore.session.Session, session: botocore.session.Session) -> None:
    for name in _SHARED_COMPONENTS:
        session.register_component(name, base.get_component(name))
    for name in _SHARED_INTERNAL_COMPONENTS:
        session._register_internal_component(name, base._get_internal_component(name))
