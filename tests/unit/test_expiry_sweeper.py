"""The expiry loop's own rules, with a scripted kind (our boundary): which settings it sweeps with, backoff of
a failing integration, undecodable records, events once. The real kinds' scanners are tested against the
sandbox and the fake Kubernetes API (tests/jit, tests/k8s, tests/lambda_custom, tests/faults)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from connector.errors import ConnectorError, ErrorCode, InvalidSettings
from connector.integrations.base import GrantRequest, JobContext, RevokeRequest, Services
from connector.integrations.capabilities import ExpiredGrant, ExpiryScan, Integration, IntegrationSpec, KindSpec
from connector.integrations.effect import Effect, Level
from connector.jobs.expiry import ExpirySweeper
from connector.jobs.registry import Registry

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WORLD: dict[str, Any] = {}  # what the scripted kind's "target system" holds: role -> set of live grant ids


class Scripted(Integration):
    type_id = "scripted"
    default_resource_type = "scripted"

    def __init__(self, integration_id: str, settings: Mapping[str, Any], services: Services) -> None:
        super().__init__(integration_id, settings, services)
        if not isinstance(settings.get("role"), str):
            raise InvalidSettings("role", "must be a string")
        self.role = str(settings["role"])


class ScriptedKind:
    def __init__(self, integration: Scripted) -> None:
        self.integration = integration

    def describe(self, request: GrantRequest, ctx: JobContext) -> Effect:
        return Effect(kind="scripted", principal=request.principal, level=Level.READ, expires_at=request.expires_at)

    def grant(self, request: GrantRequest, effect: Effect, ctx: JobContext) -> dict[str, Any]:
        return {}

    def revoke(self, request: RevokeRequest, ctx: JobContext) -> dict[str, Any]:
        if WORLD.get("revoke_fails"):
            raise ConnectorError(ErrorCode.ACCESS_DENIED, "denied", retryable=False)
        WORLD["records"].pop(request.grant_id, None)
        WORLD.setdefault("revoked_with", []).append(self.integration.role)
        return {"calls": [{"operation": "delete"}]}

    def expired(self, scan: ExpiryScan) -> Iterator[ExpiredGrant]:
        if self.integration.role == "slow":  # a scan that hangs (an unreachable host, a region that never answers)
            WORLD["slow_scans"] = WORLD.get("slow_scans", 0) + 1
            WORLD["release"].wait(10)
            return
        if self.integration.role != WORLD["good_role"]:
            raise ConnectorError(ErrorCode.ACCESS_DENIED, f"cannot assume {self.integration.role}", retryable=False)
        WORLD["scans"] = WORLD.get("scans", 0) + 1
        for where in WORLD.get("broken_places", ()):
            scan.problem(where, "AccessDenied")
        for grant_id, exp in list(WORLD["records"].items()):
            if exp is None or exp <= scan.now:
                request = RevokeRequest(grant_id=grant_id, principal="p", target={}) if grant_id != "nameless" else None
                yield ExpiredGrant(f"place/{grant_id}", f"key/{grant_id}", exp, request, "" if exp else "garbage")


def registry() -> Registry:
    r = Registry()
    r.add(IntegrationSpec(Scripted))
    r.add(KindSpec("scripted", "scripted", ScriptedKind))
    return r


@pytest.fixture(autouse=True)
def world() -> Iterator[None]:
    WORLD.clear()
    WORLD.update(good_role="good", records={})
    yield
    WORLD.clear()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def sweeper(tmp_path: Path | None = None, clock: Clock | None = None) -> ExpirySweeper:
    return ExpirySweeper(
        registry(),
        Services(connector_id="c1"),
        state_file=(tmp_path / "state.json") if tmp_path else None,
        clock=clock or Clock(),
    )


def integration(role: str) -> Scripted:
    return Scripted("int-1", {"role": role}, Services(connector_id="c1"))


def test_settings_from_a_bad_job_do_not_replace_the_working_ones():
    s = sweeper()
    s.offer(integration("good"))
    s.confirm(integration("good"))  # a job with these settings succeeded
    s.offer(integration("typo"))  # validated, but wrong: its job failed, never confirmed
    WORLD["records"] = {"g-1": int(NOW.timestamp()) - 1}
    events = s.sweep(NOW)
    assert [(e.grant_id, e.outcome) for e in events] == [("g-1", "succeeded")]
    assert WORLD["revoked_with"] == ["good"]


def test_a_hanging_integration_never_delays_the_revokes_of_the_others():
    s = ExpirySweeper(registry(), Services(connector_id="c1"), clock=Clock(), sweep_wait=0.3)
    WORLD["release"] = threading.Event()
    slow = Scripted("int-slow", {"role": "slow"}, Services(connector_id="c1"))
    s.offer(slow)
    s.confirm(slow)
    s.offer(integration("good"))
    s.confirm(integration("good"))
    WORLD["records"] = {"g-1": int(NOW.timestamp()) - 1}
    try:
        assert [(e.grant_id, e.outcome) for e in s.sweep(NOW)] == [("g-1", "succeeded")]  # while int-slow hangs
        WORLD["records"] = {"g-2": int(NOW.timestamp()) - 1}
        assert [e.grant_id for e in s.sweep(NOW)] == ["g-2"]
        assert WORLD["slow_scans"] == 1  # not started again while it still runs
    finally:
        WORLD["release"].set()
    s._in_flight["int-slow"].result(timeout=5)
    s.sweep(NOW)  # collects it; the next one scans it again
    s.sweep(NOW)
    assert WORLD["slow_scans"] == 2 and not s._in_flight


def test_newer_settings_take_over_once_they_work():
    s = sweeper()
    s.offer(integration("old"))
    s.confirm(integration("old"))
    WORLD["good_role"] = "new"  # the customer renamed the role; the old settings stop working
    s.offer(integration("new"))
    WORLD["records"] = {"g-1": int(NOW.timestamp()) - 1}
    assert [e.outcome for e in s.sweep(NOW)] == ["succeeded"]
    assert WORLD["revoked_with"] == ["new"] and s.status()["int-1"]["failing"] is False


def test_a_failing_integration_is_backed_off_and_warned_about_once_per_backoff(capsys):
    clock = Clock()
    s = sweeper(clock=clock)
    WORLD["good_role"] = "broken"
    s.offer(integration("broken"))
    s.confirm(integration("broken"))  # it worked once; then the customer's side broke
    WORLD["good_role"] = "good"
    assert s.sweep(NOW) == []
    status = s.status()["int-1"]
    assert status["failing"] and status["failures"] == 1 and status["retry_in_seconds"] == 60.0
    assert "cannot assume broken" in status["error"]
    clock.t += 30
    s.sweep(NOW)  # within the backoff: not tried, not warned
    assert s.status()["int-1"]["failures"] == 1
    clock.t += 31
    s.sweep(NOW)
    assert s.status()["int-1"]["failures"] == 2 and s.status()["int-1"]["retry_in_seconds"] == 120.0
    for _ in range(20):
        clock.t += 3600
        s.sweep(NOW)
    assert s.status()["int-1"]["retry_in_seconds"] == 3600.0  # capped at an hour
    WORLD["good_role"] = "broken"  # fixed on the customer's side
    clock.t += 3600
    s.sweep(NOW)
    assert s.status()["int-1"] == {
        "failing": False,
        "failures": 0,
        "retry_in_seconds": 0.0,
        "error": "",
        "scopes_failing": [],
    }


def test_an_undecodable_record_is_revoked_and_one_that_names_nothing_is_reported_once():
    s = sweeper()
    s.offer(integration("good"))
    WORLD["records"] = {"g-garbage": None, "nameless": None}
    first = {e.grant_id: e for e in s.sweep(NOW)}
    assert first["g-garbage"].outcome == "succeeded"
    assert "unknown" in first["g-garbage"].details["expired_at"]
    failed = first["key/nameless"]
    assert (
        failed.outcome == "failed" and failed.error_code == "PRECONDITION_FAILED" and "by hand" in failed.error_message
    )
    assert s.sweep(NOW) == []  # still there, still failing: reported once per process


def test_a_failed_revoke_is_retried_every_sweep_and_reported_once():
    s = sweeper()
    s.offer(integration("good"))
    WORLD["records"] = {"g-1": int(NOW.timestamp()) - 1}
    WORLD["revoke_fails"] = True
    assert [e.outcome for e in s.sweep(NOW)] == ["failed"]
    assert s.sweep(NOW) == []
    WORLD["revoke_fails"] = False
    assert [e.outcome for e in s.sweep(NOW)] == ["succeeded"]


def test_state_file_keeps_working_and_candidate_and_drops_settings_that_no_longer_validate(tmp_path):
    s = sweeper(tmp_path)
    s.offer(integration("good"))
    s.confirm(integration("good"))
    s.offer(integration("typo"))
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["integrations"]["int-1"] == {
        "working": {"type": "scripted", "settings": {"role": "good"}},
        "candidate": {"type": "scripted", "settings": {"role": "typo"}},
    }
    WORLD["records"] = {"g-1": int(NOW.timestamp()) - 1}
    restarted = sweeper(tmp_path)  # a new process, the control plane away
    assert [e.outcome for e in restarted.sweep(NOW)] == ["succeeded"]
    assert WORLD["revoked_with"] == ["good"]
    saved["integrations"]["int-1"] = {"working": {"type": "scripted", "settings": {"role": 7}}}
    (tmp_path / "state.json").write_text(json.dumps(saved))
    assert sweeper(tmp_path).status() == {}  # invalid settings are never swept with


def test_a_sweeper_that_only_heard_of_invalid_settings_sweeps_nothing():
    s = sweeper()
    s.observe("int-1", "scripted", {"role": 7})
    s.observe("int-2", "no-such-type", {})
    assert s.status() == {} and s.sweep(NOW) == []


def test_a_place_that_fails_is_warned_about_when_it_starts_and_when_it_recovers_not_every_sweep():
    s = sweeper()
    s.offer(integration("good"))
    WORLD["broken_places"] = ["eks 210000000003/us-east-1"]
    with capture_logs() as logs:
        for _ in range(5):
            s.sweep(NOW)
        WORLD["broken_places"] = []
        s.sweep(NOW)
        s.sweep(NOW)
    events = [(line["event"], line.get("where")) for line in logs if line["event"].startswith("expiry_scope")]
    assert events == [
        ("expiry_scope_failing", "eks 210000000003/us-east-1"),
        ("expiry_scope_recovered", "eks 210000000003/us-east-1"),
    ]
    assert s.status()["int-1"]["failing"] is False  # the integration itself scans: only a place failed


def test_offers_from_many_job_threads_at_once_keep_one_valid_state_file(tmp_path):
    s = sweeper(tmp_path)
    failures: list[BaseException] = []

    def offer_many(n: int) -> None:
        try:
            for i in range(40):
                s.offer(Scripted(f"int-{n}", {"role": f"r{i}"}, Services(connector_id="c1")))
                s.confirm(Scripted(f"int-{n}", {"role": f"r{i}"}, Services(connector_id="c1")))
        except BaseException as exc:  # the race used to raise FileNotFoundError from os.replace
            failures.append(exc)

    threads = [threading.Thread(target=offer_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    saved = json.loads((tmp_path / "state.json").read_text())
    assert {iid: v["working"]["settings"] for iid, v in saved["integrations"].items()} == {
        f"int-{n}": {"role": "r39"} for n in range(8)
    }


def test_settings_that_never_worked_and_keep_failing_are_forgotten(tmp_path):
    clock = Clock()
    s = sweeper(tmp_path, clock=clock)
    s.offer(integration("typo"))  # validated, no job with it ever succeeded, every scan fails
    for _ in range(7):
        s.sweep(NOW)
        clock.t += 3600
    assert "int-1" in s.status()
    s.sweep(NOW)
    assert s.status() == {}
    assert json.loads((tmp_path / "state.json").read_text()) == {"integrations": {}}


def test_types_with_nothing_to_expire_are_not_kept():
    r = registry()
    r.add(IntegrationSpec(Nothing))
    s = ExpirySweeper(r, Services(connector_id="c1"))
    s.offer(Nothing("n-1", {}, Services(connector_id="c1")))
    assert s.status() == {}


class Nothing(Integration):
    type_id = "nothing"


def test_the_state_file_is_readable_by_its_owner_only(tmp_path):
    s = sweeper(tmp_path)
    s.offer(integration("good"))
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
