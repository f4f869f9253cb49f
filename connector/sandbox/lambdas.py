"""Lambda functions whose behaviour is real: Python handlers that the sandbox runs, in its own process, when
any process Invokes the function over HTTP.

moto runs function code only in Docker (absent here), so its "simple" backend just echoes the payload or
returns queued answers. `Lambdas.register(name, handler)` makes an Invoke of that function call
`handler(event, context)` instead and answer as AWS does (a Python runtime's shapes):
- 200 with the JSON of what the handler returned;
- an exception: 200, X-Amz-Function-Error: Unhandled, {"errorMessage", "errorType", "requestId", "stackTrace"};
- longer than the function's Timeout: 200, Unhandled, {"errorType": "Sandbox.Timedout",
  "errorMessage": "RequestId: ... Error: Task timed out after 3.00 seconds"}. A thread cannot be killed, so the
  handler keeps running with its answer discarded; `context.get_remaining_time_in_millis()` lets it stop.
The function must exist in moto (create_function), which resolves names, ARNs, versions and aliases; an
unknown one is ResourceNotFoundException 404 (moto's simple backend echoed even for those). Every Invoke of
an existing function is recorded, whether a handler or moto answers it.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from moto.awslambda.exceptions import UnknownFunctionException
from moto.awslambda.utils import get_backend, make_function_arn

from connector.sandbox import protocol

Outcome = Literal["running", "ok", "error", "timeout"]
Response = tuple[int, list[tuple[str, str]], bytes]
MAX_INVOCATIONS = 10_000  # records kept (oldest dropped): a benchmark may invoke many times
MAX_RESPONSE_BYTES = 6_291_556  # Lambda's synchronous response payload limit

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:([a-z0-9-]+):(\d{12}):function:([A-Za-z0-9_-]{1,64})$")


@dataclass(frozen=True)
class LambdaContext:
    """The `context` a Python handler gets (the attributes AWS's runtime gives it)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float  # time.monotonic() when the function's Timeout runs out

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


Handler = Callable[[Any, LambdaContext], Any]


class FunctionTimedOut(Exception):
    """A handler raises it when it finds its Timeout has run out (where AWS would have stopped it): the
    invocation is then a timeout whatever the timing of the sandbox's own wait."""


@dataclass
class Invocation:
    """One Invoke of an existing function. `event` is a copy of what the function was sent."""

    function: str
    account: str
    region: str
    qualifier: str | None
    event_type: str | None  # the event's "event_type" when it is an object carrying one
    event: Any
    request_id: str
    invocation_type: str  # RequestResponse | Event
    started: float  # time.time()
    handler: bool  # True: a registered handler ran it; False: moto's simple backend answered
    outcome: Outcome = "running"
    duration: float | None = None  # seconds, when finished
    error_type: str | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Lambdas:
    """Handlers by function, and the record of invocations (`Sandbox.lambdas`). Thread-safe.

    Handlers are keyed by (account, region, name); `register(name, handler)` leaves account and region open, so
    it answers for that name in every account and region (enough while a test creates each name once). Like
    moto, an Invoke's function is the one in the caller's account and the endpoint's region.
    """

    def __init__(self, max_records: int = MAX_INVOCATIONS) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[tuple[str | None, str | None, str], Handler] = {}
        self._records: deque[Invocation] = deque(maxlen=max_records)

    # -- handlers ----------------------------------------------------------------------------------------
    def register(self, name: str, handler: Handler, *, account: str | None = None, region: str | None = None) -> None:
        """Run `handler(event, context)` for Invokes of function `name` (a name, or an unqualified ARN, which
        also sets account and region). It replaces any handler registered for the same key."""
        with self._lock:
            self._handlers[_key(name, account, region)] = handler

    def unregister(self, name: str, *, account: str | None = None, region: str | None = None) -> bool:
        with self._lock:
            return self._handlers.pop(_key(name, account, region), None) is not None

    def handler_for(self, account: str, region: str, name: str) -> Handler | None:
        """The most specific handler for a function: (account, region) first, then either left open."""
        with self._lock:
            for key in ((account, region, name), (account, None, name), (None, region, name), (None, None, name)):
                handler = self._handlers.get(key)
                if handler is not None:
                    return handler
        return None

    # -- records -----------------------------------------------------------------------------------------
    def invocations(
        self, name: str | None = None, *, event_type: str | None = None, account: str | None = None
    ) -> list[Invocation]:
        """Copies of the recorded invocations, oldest first, optionally of one function / event type / account."""
        with self._lock:
            return [
                replace(inv, event=copy.deepcopy(inv.event))
                for inv in self._records
                if (name is None or inv.function == name)
                and (event_type is None or inv.event_type == event_type)
                and (account is None or inv.account == account)
            ]

    def clear_invocations(self) -> None:
        with self._lock:
            self._records.clear()

    def _finish(
        self, inv: Invocation, outcome: Outcome, error_type: str | None = None, message: str | None = None
    ) -> None:
        with self._lock:
            inv.outcome, inv.error_type, inv.error_message = outcome, error_type, message
            inv.duration = time.time() - inv.started

    # -- the request path --------------------------------------------------------------------------------
    def invoke(
        self, account: str, region: str, function_name: str, environ: dict[str, Any], body: bytes
    ) -> Response | Invocation | None:
        """Answer an Invoke (a registered handler, or an error), or return the recorded Invocation for moto to
        answer (then pass moto's status and headers to `moto_answered`); None: moto answers, unrecorded."""
        query = protocol.form_params(environ, b"")
        qualifier = query.get("Qualifier") or None
        try:
            fn = get_backend(account, region).get_function(function_name, qualifier)
        except UnknownFunctionException as exc:
            return protocol.error_response("lambda", exc.error_type, exc.message, 404)
        except Exception:  # a name moto itself cannot parse: leave the answer to moto, as before
            return None
        invocation_type = str(environ.get("HTTP_X_AMZ_INVOCATION_TYPE") or "RequestResponse")
        if invocation_type == "DryRun":  # AWS only checks that the caller may invoke: nothing runs
            return 204, [("x-amzn-RequestId", str(uuid.uuid4()))], b""
        handler = self.handler_for(account, region, str(fn.function_name))
        try:
            event = json.loads(body) if body else {}
        except ValueError as exc:
            if handler is not None:  # as AWS; moto's simple backend echoes it, and stays as it was
                message = f"Could not parse request body into json: {exc}"
                return protocol.error_response("lambda", "InvalidRequestContentException", message, 400)
            event = body.decode("utf-8", "replace")
        request_id = str(uuid.uuid4())
        event_type = event.get("event_type") if isinstance(event, dict) else None
        inv = Invocation(
            function=str(fn.function_name),
            account=account,
            region=region,
            qualifier=qualifier or _qualifier_of(function_name),
            event_type=event_type if isinstance(event_type, str) else None,
            event=copy.deepcopy(event),
            request_id=request_id,
            invocation_type=invocation_type,
            started=time.time(),
            handler=handler is not None,
        )
        with self._lock:
            self._records.append(inv)
        if handler is None:
            return inv
        timeout = float(fn.timeout)
        stamp = datetime.now(UTC).strftime("%Y/%m/%d")
        context = LambdaContext(
            function_name=str(fn.function_name),
            function_version=str(fn.version),
            invoked_function_arn=make_function_arn(region, account, inv.function)
            + (f":{inv.qualifier}" if inv.qualifier else ""),
            memory_limit_in_mb=int(fn.memory_size),
            aws_request_id=request_id,
            log_group_name=str(fn.logs_group_name),
            log_stream_name=f"{stamp}/[{fn.version}]{uuid.uuid4().hex}",
            deadline=time.monotonic() + timeout,
        )
        if invocation_type == "Event":  # asynchronous: accepted now, run in the background
            worker = threading.Thread(target=self._execute, args=(handler, event, context, inv, timeout), daemon=True)
            worker.start()
            return 202, [("x-amzn-RequestId", request_id)], b""
        payload, failed = self._execute(handler, event, context, inv, timeout)
        headers = [
            ("Content-Type", "application/json"),
            ("X-Amz-Executed-Version", str(fn.version)),
            ("x-amzn-RequestId", request_id),
        ]
        if failed:
            headers.append(("X-Amz-Function-Error", "Unhandled"))
        return 200, headers, payload

    def moto_answered(self, inv: Invocation, status: str, headers: list[tuple[str, str]]) -> None:
        """Finish the record of an Invoke moto answered (from its WSGI status line and headers)."""
        failed = any(k.lower() == "x-amz-function-error" for k, _ in headers) or not status.startswith("2")
        self._finish(inv, "error" if failed else "ok")

    def _execute(
        self, handler: Handler, event: Any, context: LambdaContext, inv: Invocation, timeout: float
    ) -> tuple[bytes, bool]:
        """Run the handler on its own thread for at most `timeout` seconds: (payload, whether it failed)."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = handler(event, context)
            except BaseException as exc:  # whatever the function raises is its error, as in AWS
                box["error"] = exc

        worker = threading.Thread(target=run, name=f"lambda:{inv.function}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive() or isinstance(box.get("error"), FunctionTimedOut) or time.monotonic() > context.deadline:
            message = f"RequestId: {inv.request_id} Error: Task timed out after {timeout:.2f} seconds"
            self._finish(inv, "timeout", "Sandbox.Timedout", message)
            return json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode(), True
        if "error" in box:
            exc: BaseException = box["error"]
            frames = traceback.extract_tb(exc.__traceback__)[1:]  # without run()'s own frame
            return self._error(inv, type(exc).__name__, str(exc), traceback.format_list(frames))
        try:
            payload = json.dumps(box.get("result")).encode()
        except (TypeError, ValueError) as exc:
            return self._error(inv, "Runtime.MarshalError", f"Unable to marshal response: {exc}", [])
        if len(payload) > MAX_RESPONSE_BYTES:
            message = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
            return self._error(inv, "Function.ResponseSizeTooLarge", message, [])
        self._finish(inv, "ok")
        return payload, False

    def _error(self, inv: Invocation, error_type: str, message: str, stack: list[str]) -> tuple[bytes, bool]:
        self._finish(inv, "error", error_type, message)
        error = {"errorMessage": message, "errorType": error_type, "requestId": inv.request_id, "stackTrace": stack}
        return json.dumps(error).encode(), True


def _key(name: str, account: str | None, region: str | None) -> tuple[str | None, str | None, str]:
    arn = _ARN.match(name)
    if arn is not None:
        arn_region, arn_account, name = arn.groups()
        if (account or arn_account) != arn_account or (region or arn_region) != arn_region:
            raise ValueError("the ARN's account and region differ from the account / region given")
        return arn_account, arn_region, name
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a function name or unqualified function ARN (handlers are per function)")
    return account, region, name


def _qualifier_of(function_name: str) -> str | None:
    """The qualifier in "name:qualifier" or a qualified ARN, if any."""
    tail = function_name.split(":function:")[-1]
    return tail.split(":", 1)[1] if ":" in tail else None
