"""ContextThreadPool: the sync's helper pools (org tags, account resolve, Identity Center) run each task in a
copy of the submitter's context, so a line logged there names the job it belongs to."""

from __future__ import annotations

import io
import json
import threading

import structlog

from connector.integrations.base import ContextThreadPool
from connector.logging import configure_logging, get_logger


def test_tasks_log_with_the_submitting_jobs_fields_and_never_another_jobs() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    log = get_logger("test")
    barrier = threading.Barrier(2)

    def job(job_id: str, pool: ContextThreadPool) -> None:
        structlog.contextvars.bind_contextvars(job_id=job_id)
        barrier.wait()  # both jobs bound before either submits: one shared pool, two contexts
        list(pool.map(lambda n: log.info("tag_page", n=n), range(3)))
        pool.submit(log.info, "resolved").result()

    try:
        with ContextThreadPool(max_workers=2) as pool:
            threads = [threading.Thread(target=job, args=(f"job-{i}", pool)) for i in (1, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
    finally:
        configure_logging("info", "json")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 8
    for job_id in ("job-1", "job-2"):
        mine = [line for line in lines if line.get("job_id") == job_id]
        assert sorted(line["event"] for line in mine) == ["resolved", "tag_page", "tag_page", "tag_page"]
    assert "job_id" not in structlog.contextvars.get_contextvars()  # the test thread's own context untouched
