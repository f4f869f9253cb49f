"""Optional OpenTelemetry traces: one span per job, one per sync scope (account, region, stage), so a slow sync
can be seen. Off unless the `otel` extra is installed AND the standard variables ask for traces
(OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp|console);
OTEL_SDK_DISABLED=true turns it off. The SDK is imported only then, so the product works without it and a
span costs nothing when tracing is off. OTEL_SERVICE_NAME (default access-connector), OTEL_RESOURCE_ATTRIBUTES,
OTEL_EXPORTER_OTLP_PROTOCOL (grpc, the default, or http/protobuf), OTEL_EXPORTER_OTLP_HEADERS and the other
exporter variables are read by the SDK itself.

Spans follow the contextvars context, like the job id bound into log lines: work handed to another thread
must run in a copy of the context (`contextvars.copy_context().run`) to stay inside its job's span.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from connector.logging import get_logger

log = get_logger("connector.telemetry")

_tracer: Any = None
_provider: Any = None


def wanted(environ: Mapping[str, str]) -> str | None:
    """The exporter the environment asks for ("otlp", "console"), or None."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter in ("none",):
        return None
    if exporter in ("otlp", "console"):
        return exporter
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return "otlp"
    return None


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if protocol.strip().lower().startswith("http"):
        module = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    else:
        module = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    return module.OTLPSpanExporter()  # endpoint, headers, timeout, TLS: from the OTEL_EXPORTER_OTLP_* variables


def configure(environ: Mapping[str, str] | None = None, *, exporter: Any = None, simple: bool = False) -> bool:
    """Start tracing if asked for (or with `exporter`, for tests); True when on. Never raises: tracing that
    cannot start is logged once and left off, the connector runs on."""
    global _tracer, _provider
    env = os.environ if environ is None else environ
    kind = "custom" if exporter is not None else wanted(env)
    if kind is None:
        return False
    try:
        trace_sdk = importlib.import_module("opentelemetry.sdk.trace")
        export = importlib.import_module("opentelemetry.sdk.trace.export")
        resources = importlib.import_module("opentelemetry.sdk.resources")
        if exporter is None:
            exporter = export.ConsoleSpanExporter() if kind == "console" else _otlp_exporter(env)
    except ImportError as exc:
        log.warning(
            "tracing_unavailable",
            reason=f"OTEL_* asks for traces but the otel extra is not installed ({exc.name}): "
            "pip install 'access-connector[otel]'",
        )
        return False
    resource = resources.Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "access-connector"})
    provider = trace_sdk.TracerProvider(resource=resource)
    processor = export.SimpleSpanProcessor(exporter) if simple else export.BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer("access-connector")
    log.info("tracing_on", exporter=kind)
    return True


def shutdown() -> None:
    """Flush and stop (at exit); tracing is off afterwards."""
    global _tracer, _provider
    if _provider is not None:
        with contextlib.suppress(Exception):
            _provider.shutdown()
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


@contextlib.contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[Any]:
    """A span around the block when tracing is on (an exception marks it as an error); nothing otherwise."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def set_attributes(current: Any, **attributes: str | int | float | bool) -> None:
    if current is not None:
        current.set_attributes(attributes)
