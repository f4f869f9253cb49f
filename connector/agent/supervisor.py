"""Supervision of the agent's long-running tasks: the control loop, the heartbeat, the tick, the expiry sweep,
the event reports.

A task that raises is logged once per crash (with its traceback, which the log processors redact like any
line), counted, and restarted after a jittered exponential backoff (tenacity's waits: a floor, so a task that
crashes at once never becomes a hot loop, and a cap near 30 s); the backoff starts afresh once a run lasted
`healthy_after`. A task that returns while the agent is not stopping has stopped doing its work: it is
restarted the same way. Cancelling the supervisor is the normal stop. FatalConnectionError (the control
plane refused our identity) is never restarted: it goes to `on_fatal`, which stops the agent (exit code 3).
While a task waits for its restart, /readyz is not ready and connector_task_up{task} is 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenacity import RetryCallState, Retrying, wait_fixed, wait_random_exponential

from connector.agent.channel import FatalConnectionError
from connector.agent.health import HealthState, TaskHealth
from connector.agent.metrics import Metrics
from connector.logging import get_logger

log = get_logger("connector.agent.supervisor")

RESTART_FLOOR = 1.0  # seconds: the shortest wait before a restart
RESTART_MAX = 30.0  # seconds: the longest
HEALTHY_AFTER = 60.0  # a run this long resets the backoff: its crash is news, not the same crash again

RUNNING = TaskHealth(up=True, state="running")
STOPPED = TaskHealth(up=False, state="stopped")


@dataclass
class _Task:
    name: str
    run: Callable[[], Awaitable[None]]
    health: TaskHealth = RUNNING
    restarts: int = 0
    streak: int = 0  # crashes since the last healthy run: drives the backoff
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while no run is in progress
    wrapper: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(
        self,
        metrics: Metrics,
        health: HealthState,
        *,
        stopping: Callable[[], bool],
        on_fatal: Callable[[FatalConnectionError], None],
        floor: float = RESTART_FLOOR,
        cap: float = RESTART_MAX,
        multiplier: float = 1.0,
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._stopping = stopping
        self._on_fatal = on_fatal
        # wait_fixed + full jitter: the floor keeps a restart from ever being immediate, the sum stays <= cap.
        self._wait = wait_fixed(floor) + wait_random_exponential(multiplier=multiplier, max=max(cap - floor, 0.0))
        self._healthy_after = healthy_after
        self._tasks: dict[str, _Task] = {}

    # ---- what the runtime uses ------------------------------------------------------------------------

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run()` as the task `name`, restarting it whenever it fails."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        task = _Task(name, run)
        self._tasks[name] = task
        self._metrics.task_restarts.labels(name)  # the series exists (at 0) before the first restart
        self._publish(task, RUNNING)
        task.wrapper = asyncio.create_task(self._supervise(task), name=f"supervised-{name}")

    async def settled(self, name: str) -> None:
        """Wait until `name` has no run in progress (stopped, or waiting for its restart)."""
        await self._tasks[name].idle.wait()

    def restarts(self, name: str) -> int:
        return self._tasks[name].restarts

    def health(self, name: str) -> TaskHealth:
        return self._tasks[name].health

    async def close(self) -> None:
        """Cancel every task (the normal stop) and wait for them."""
        wrappers = [task.wrapper for task in self._tasks.values() if task.wrapper is not None]
        for wrapper in wrappers:
            wrapper.cancel()
        await asyncio.gather(*wrappers, return_exceptions=True)

    # ---- supervision ----------------------------------------------------------------------------------

    async def _supervise(self, task: _Task) -> None:
        while True:
            self._publish(task, RUNNING)
            task.idle.clear()
            started = time.monotonic()
            error: BaseException | None = None
            try:
                await task.run()
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():  # we were cancelled: the normal stop
                    self._publish(task, STOPPED)
                    raise
                error = exc  # a CancelledError from inside the task, nobody stopping it: it stopped working
            except FatalConnectionError as exc:
                self._publish(task, TaskHealth(up=False, state="stopped: the control plane refused this connector"))
                self._on_fatal(exc)
                return
            except Exception as exc:
                error = exc
            finally:
                task.idle.set()
            if self._stopping() and (error is None or isinstance(error, asyncio.CancelledError)):
                self._publish(task, STOPPED)  # done because the agent stops: nothing to restart
                return
            await self._restart_after_backoff(task, error, time.monotonic() - started)

    async def _restart_after_backoff(self, task: _Task, error: BaseException | None, ran: float) -> None:
        task.streak = 1 if ran >= self._healthy_after else task.streak + 1
        delay = self.restart_delay(task.streak)
        fields = {
            "task": task.name,
            "ran_seconds": round(ran, 2),
            "restarts": task.restarts,
            "restart_in_seconds": round(delay, 2),
        }
        if error is None or isinstance(error, asyncio.CancelledError):
            cause = "an unexpected return" if error is None else "an unexpected cancellation"
            how = "returned" if error is None else "was cancelled from inside"
            log.error("task_stopped_unexpectedly", message=f"the task {how} while the agent was not stopping", **fields)
        else:
            cause = type(error).__name__
            log.error("task_crashed", error=cause, exc_info=error, **fields)
        state = f"restarting in {delay:.1f} s after {cause} (restart {task.restarts + 1})"
        self._publish(task, TaskHealth(up=False, state=state))
        await asyncio.sleep(delay)
        task.restarts += 1
        self._metrics.task_restarts.labels(task.name).inc()
        log.info("task_restarted", task=task.name, restarts=task.restarts)

    def restart_delay(self, streak: int) -> float:
        """The wait before the restart that follows `streak` crashes in a row (jittered, floor to cap)."""
        state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = streak
        return float(self._wait(state))

    def _publish(self, task: _Task, health: TaskHealth) -> None:
        task.health = health
        self._metrics.task_up.labels(task.name).set(1 if health.up else 0)
        # A fresh mapping each time: the health server's thread reads it without a lock.
        self._health.tasks = {name: t.health for name, t in self._tasks.items()}
