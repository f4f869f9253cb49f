"""`Sandbox`: moto's server in-process on 127.0.0.1 behind the sandbox's WSGI layer, optionally seeded.

moto keeps its state in process-global backends, so two sandboxes in one process would share (and reset)
each other's data. `Sandbox.start()` therefore refuses to start while another sandbox of this process is
running, and resets moto's state when it starts. Use one sandbox per test module or per session.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server

from connector.sandbox import eks_access, identity, seed_resources, ssm_sessions, tagging
from connector.sandbox.app import SandboxApp
from connector.sandbox.faults import Faults
from connector.sandbox.lambdas import Lambdas
from connector.sandbox.seed import SeedInfo, SeedSpec, seed_sandbox

# The sandbox's admin ("root") credentials. Keys moto never issued act as the root of the default
# account 123456789012, the organisation's management account.
ROOT_ACCESS_KEY_ID = "AKIASANDBOXROOT00001"
ROOT_SECRET_ACCESS_KEY = "sandbox-root-secret"  # noqa: S105 - a fixed test credential for a local fake
DEFAULT_REGION = "us-east-1"

# waitress serves the sandbox: it keeps HTTP/1.1 connections alive, as AWS endpoints do (werkzeug's server
# closes every connection, so each call paid a new TCP connection on both sides and a thread per request).
# Requests run on a fixed pool of threads; an injected latency or hang holds one for its duration, so the
# pool is sized above the most calls any client here keeps in flight (the agent's max_parallelism is <= 64).
SERVER_THREADS = 96
SERVER_OPTIONS: dict[str, Any] = {
    "threads": SERVER_THREADS,
    "connection_limit": 2000,  # each client keeps its pooled connections open
    "channel_timeout": 60,  # idle connections closed after a minute; botocore reconnects
    "asyncore_use_poll": True,  # poll(): no select() limit of 1,024 descriptors
    "ident": "aws-sandbox",
    "expose_tracebacks": False,
}
LOOP_TIMEOUT = 0.2  # seconds; the longest stop() waits for the server loop to see it should end

_running_lock = threading.Lock()


_running: Sandbox | None = None


def _use_lambda_simple_backend() -> None:
    """moto runs Lambda code in Docker unless lambda.use_docker is False: then the "simple" backend answers
    Invoke with the payload or a queued response (POST /moto-api/static/lambda-simple/response), for functions
    without a Python handler registered in `Sandbox.lambdas`."""
    from moto.core.config import default_user_config

    default_user_config.setdefault("lambda", {})["use_docker"] = False


def _reset_moto() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


class Sandbox:
    """A running sandbox. Create it with `Sandbox.start(...)`; use it as a context manager or call stop()."""

    def __init__(self, server: Any, app: SandboxApp, thread: threading.Thread, stopping: threading.Event) -> None:
        self._server = server
        self._stopping = stopping
        self._app = app
        self._thread = thread
        self.faults: Faults = app.faults
        self.lambdas: Lambdas = app.lambdas  # Python handlers for Lambda functions, and every Invoke's record
        self.resource_explorer = app.resource_explorer  # indexes and views (resource-explorer-2)
        self.trail = app.trail  # CloudTrail event history (LookupEvents)
        self._seed_info: SeedInfo | None = None
        self._connector_credentials: dict[str, str] | None = None
        self.host, self.port = str(server.effective_host), int(server.effective_port)

    @classmethod
    def start(cls, seed: SeedSpec | None = None, *, port: int = 0, host: str = "127.0.0.1") -> Sandbox:
        """Start the server (port 0 = a free port) and seed it when `seed` is a SeedSpec (None = empty)."""
        global _running
        with _running_lock:
            if _running is not None:
                raise RuntimeError(
                    f"a sandbox is already running in this process at {_running.endpoint}: moto's state is "
                    "process-global, so stop it first (or share it, e.g. one per test module)"
                )
            _use_lambda_simple_backend()
            eks_access.install()
            tagging.install()
            ssm_sessions.install()
            _reset_moto()
            ssm_sessions.reset()
            identity.install()
            app = SandboxApp(Faults(), Lambdas())
            server = create_server(app, host=host, port=port, **SERVER_OPTIONS)
            stopping = threading.Event()
            thread = threading.Thread(target=_serve, args=(server, stopping), name="sandbox-server", daemon=True)
            thread.start()
            sandbox = cls(server, app, thread, stopping)
            _running = sandbox
        try:
            if seed is not None:
                sandbox.seed(seed)
        except BaseException:
            sandbox.stop()
            raise
        return sandbox

    def seed(self, spec: SeedSpec) -> SeedInfo:
        """Seed the (running) sandbox; env() then exports the connector role's temporary credentials."""
        self._seed_info = seed_sandbox(spec, self.client)
        if spec.resource_explorer:
            seed_resources.setup_resource_explorer(spec, self._seed_info, self.resource_explorer)
        sts = self.root_session(self.seed_info.home_region).client("sts", endpoint_url=self.endpoint)
        creds = sts.assume_role(
            RoleArn=self.seed_info.connector_role_arn, RoleSessionName="connector", DurationSeconds=43200
        )["Credentials"]
        self._connector_credentials = {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        }
        self._app.seed_summary = self.seed_info.to_dict()
        self.faults.reset_counts()  # counters start at zero for the caller, not with the seed's own calls
        return self.seed_info

    @property
    def seeded(self) -> bool:
        return self._seed_info is not None

    @property
    def seed_info(self) -> SeedInfo:
        """What the seed made. Raises RuntimeError on a sandbox started with seed=None (see `seeded`)."""
        if self._seed_info is None:
            raise RuntimeError("this sandbox was started without a seed: Sandbox.start(seed=SeedSpec(...))")
        return self._seed_info

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def home_region(self) -> str:
        """The region clients use by default: the seed's partition's home region (us-east-1 unless seeded in
        GovCloud or China)."""
        return self._seed_info.home_region if self._seed_info is not None else DEFAULT_REGION

    @property
    def partition(self) -> str:
        return self._seed_info.partition if self._seed_info is not None else "aws"

    def env(self, region: str | None = None) -> dict[str, str]:
        """Environment for a process (the agent, the AWS CLI, boto3) to use the sandbox as the connector
        identity: the connector role's temporary credentials when seeded, else the admin credentials."""
        region = region or self.home_region
        creds = self._connector_credentials or {
            "AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_ACCESS_KEY,
        }
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            **creds,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        }

    def root_session(self, region: str | None = None) -> boto3.Session:
        """A boto3 Session with the sandbox admin credentials (management account root), for assertions.
        Pass `endpoint_url=sb.endpoint` to clients, or use `client()`."""
        return boto3.Session(
            aws_access_key_id=ROOT_ACCESS_KEY_ID,
            aws_secret_access_key=ROOT_SECRET_ACCESS_KEY,
            region_name=region or self.home_region,
        )

    def client(self, service: str, region: str | None = None, *, retries: int | None = None, **kwargs: Any) -> Any:
        """An admin boto3 client pointed at the sandbox (retries=0 turns botocore's own retries off)."""
        config = kwargs.pop("config", None)
        if retries is not None:
            retry_config = Config(retries={"total_max_attempts": retries + 1, "mode": "standard"})
            config = retry_config.merge(config) if config is not None else retry_config
        return self.root_session(region).client(service, endpoint_url=self.endpoint, config=config, **kwargs)

    def account_session(self, account_id: str, region: str | None = None) -> boto3.Session:
        """Admin credentials inside a member account: assumes the OrganizationAccountAccessRole that
        Organizations (and moto) create in every new account, trusting the management account."""
        creds = self.client("sts", region).assume_role(
            RoleArn=f"arn:{self.partition}:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="sandbox-admin",
        )["Credentials"]
        return boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region or self.home_region,
        )

    def wrap(self, middleware: Callable[[Any], Any]) -> None:
        """Put a WSGI middleware in front of the sandbox's app (the benchmarks time every request this way)."""
        self._server.application = middleware(self._server.application)

    def stop(self) -> None:
        """Stops the request threads (queued requests are dropped; running ones get 5 s), then the server loop,
        which closes every connection itself, in its own thread. Calling it twice is harmless."""
        global _running
        server: BaseWSGIServer = self._server
        try:
            # Request threads first: one that finishes wakes the loop through its trigger, which must still be open.
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            self._stopping.set()
            with contextlib.suppress(OSError):  # a wake-up only: the loop also sees the flag within LOOP_TIMEOUT
                server.trigger.pull_trigger()
            self._thread.join(timeout=10)
        finally:
            with _running_lock:
                if _running is self:
                    _running = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _serve(server: BaseWSGIServer, stopping: threading.Event) -> None:
    """waitress's own loop (`server.run()` is the same `poll()` per pass), one pass at a time until stop() sets
    `stopping`. Every socket is then closed here, by the thread that polls them: closing them from another
    thread raced with a pass in flight."""
    try:
        while not stopping.is_set():
            wasyncore.loop(timeout=LOOP_TIMEOUT, use_poll=True, map=server._map, count=1)
    finally:
        wasyncore.close_all(server._map, ignore_all=True)
