"""Prometheus metrics of one agent runtime, in their own registry (several runtimes can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_total = Counter(
            "connector_jobs_total",
            "Jobs finished by this replica, by kind, integration type and outcome.",
            ["kind", "integration", "outcome"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "connector_job_duration_seconds",
            "Time from a job's lease to its result.",
            ["kind", "integration"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=self.registry,
        )
        self.poll_latency = Histogram(
            "connector_poll_latency_seconds",
            "Duration of PollJobs calls (a long-poll: includes the server's wait).",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 20, 30, 60, 90),
            registry=self.registry,
        )
        self.reconnects = Counter(
            "connector_reconnects_total", "Reconnects to the control plane (re-Hello).", registry=self.registry
        )
        self.jobs_running = Gauge("connector_jobs_running", "Jobs holding a slot right now.", registry=self.registry)
        self.heartbeat_failures = Counter(
            "connector_heartbeat_failures_total", "Heartbeat calls that failed.", registry=self.registry
        )
        self.sync_accounts_done = Gauge(
            "connector_sync_accounts_done",
            "Accounts finished by the running sync of an integration (progress; see _total).",
            ["integration"],
            registry=self.registry,
        )
        self.sync_accounts_total = Gauge(
            "connector_sync_accounts_total",
            "Accounts the running sync of an integration will visit.",
            ["integration"],
            registry=self.registry,
        )
        self.hello_attempts = Counter(
            "connector_hello_attempts_total", "Hello calls made (registration attempts).", registry=self.registry
        )
        self.task_up = Gauge(
            "connector_task_up",
            "1 while a supervised long-running task runs, 0 while it is down (waiting for its restart) or stopped.",
            ["task"],
            registry=self.registry,
        )
        self.task_restarts = Counter(
            "connector_task_restarts_total",
            "Restarts of a supervised task after it crashed or returned unexpectedly.",
            ["task"],
            registry=self.registry,
        )
        self.expiry_sweeps = Counter(
            "connector_expiry_sweeps_total",
            "Expiry sweeps run (every kind of every known integration).",
            registry=self.registry,
        )
        self.expiry_integration_failing = Gauge(
            "connector_expiry_integration_failing",
            "1 while an integration's expiry scan fails (it is retried with backoff), 0 once it scans again.",
            ["integration"],
            registry=self.registry,
        )
