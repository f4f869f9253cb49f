"""`connector run`: load and validate the config, set up logging, run the agent until a signal.

Exit codes: 0 after a clean drain, 2 for bad configuration (the message names the variable), 3 when
the control plane refuses our identity (token / connector id), 128+signal when a second signal forces
exit, 1 when the drain watchdog fires or the agent crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from connector import telemetry
from connector.agent.events import Sweeper
from connector.agent.runtime import EXIT_FATAL_AUTH, AgentRuntime
from connector.config import AgentConfig, ConfigError, env_help, load_config
from connector.heap import freeze_startup_heap, limit_malloc_arenas
from connector.jobs.dispatcher import Dispatcher
from connector.jobs.runtime import build_dispatcher
from connector.logging import configure_logging, get_logger, register_secret

EXIT_CONFIG = 2
EXIT_WATCHDOG = 1

log = get_logger("connector.agent")


def _force_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


async def _serve(runtime: AgentRuntime) -> int:
    loop = asyncio.get_running_loop()
    watchdog: list[threading.Timer] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if watchdog:  # second signal: the operator wants out now
            log.warning("forced_exit", signal=name)
            _force_exit(128 + signum)
        timer = threading.Timer(runtime.max_shutdown_seconds(), _watchdog_fired)
        timer.daemon = True
        timer.start()
        watchdog.append(timer)
        runtime.request_stop(name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await runtime.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for timer in watchdog:
            timer.cancel()


def _watchdog_fired() -> None:
    log.error("drain_watchdog_fired", message="the drain did not finish in time; forcing exit")
    _force_exit(EXIT_WATCHDOG)


def _build_sweeper(config: AgentConfig, dispatcher: Dispatcher) -> Sweeper | None:
    """The expiry sweeper of the jobs layer (revokes expired grants, also while the control plane is away).
    Looked up by name so this module does not depend on it landing first; None when this build lacks it."""
    try:
        module = importlib.import_module("connector.jobs.expiry")
    except ModuleNotFoundError:
        return None
    state_file = config.state_dir / "expiry-sweeper.json" if config.state_dir else None
    sweeper = module.ExpirySweeper(dispatcher.registry, dispatcher.services, state_file=state_file)
    dispatcher.listener = sweeper  # it learns integrations whose settings validated (and worked) from jobs
    built: Sweeper = sweeper
    return built


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(
        prog="connector run",
        description="Run the connector agent. Configured by the environment variables below.",
        epilog=env_help() + "\n\nexit codes: 0 drained cleanly; 2 bad configuration (the message names the variable); "
        "3 the control plane refused the token or connector id; 1 the drain watchdog fired",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(list(argv))
    try:
        config = load_config()
        token = config.read_token()
    except (ConfigError, OSError) as exc:
        print(f"connector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level, config.log_format)
    telemetry.configure()  # OTEL_* variables, with the otel extra; off otherwise
    register_secret(token)
    del token

    try:
        dispatcher = build_dispatcher(config)
    except (ValueError, ConfigError) as exc:
        print(f"connector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        sweeper = _build_sweeper(config, dispatcher)
    except (OSError, ValueError) as exc:
        print(f"connector: CONNECTOR_STATE_DIR: cannot use the expiry sweeper's state: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    runtime = AgentRuntime(config, dispatcher, sweeper=sweeper, sweep_interval=config.expiry_sweep_seconds)
    limit_malloc_arenas()  # before the job and sync threads start
    freeze_startup_heap()
    try:
        code = asyncio.run(_serve(runtime))
    except OSError as exc:  # the health port is taken, a TLS file unreadable: the message names the variable
        print(f"connector: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    telemetry.shutdown()  # flush the last spans
    if code == EXIT_FATAL_AUTH and runtime.fatal_error is not None:
        print(f"connector: {runtime.fatal_error}", file=sys.stderr)
    # A job thread that ignored cancellation would keep the interpreter alive: do not wait for it.
    workers = [t for t in threading.enumerate() if t.name.startswith(("connector-job", "connector-sweep"))]
    for worker in workers:  # idle workers exit within moments of the pool's shutdown
        worker.join(timeout=1.0)
    if any(worker.is_alive() for worker in workers):
        log.warning("exiting_with_abandoned_job_threads")
        _force_exit(code)
    return code
