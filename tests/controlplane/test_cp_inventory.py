"""Inventory uploads: ordering, idempotent resends, digest, stale attempts, and queries."""

from __future__ import annotations

import grpc
import pytest

from connector.controlplane.server import ControlPlaneThread
from connector.v1 import connector_pb2
from tests.controlplane.cp_helpers import CONNECTOR_ID, Connector, digest_of, rpc_code, rpc_details

pytestmark = pytest.mark.timeout(60)


def items(
    prefix: str, count: int, account: str = "111122223333", type_: str = "aws.account"
) -> list[connector_pb2.InventoryItem]:
    result = []
    for i in range(count):
        item = connector_pb2.InventoryItem(type=type_, id=f"{prefix}-{i}", name=f"{prefix} {i}", account_id=account)
        item.attributes.update({"index": i, "tags": {"team": "platform"}})
        result.append(item)
    return result


@pytest.fixture
def sync_job(cp: ControlPlaneThread, conn: Connector) -> connector_pb2.Job:
    cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization")
    [job] = conn.poll(max_jobs=1, wait=1.0)
    return job


def test_batches_resends_and_digest(cp: ControlPlaneThread, conn: Connector, sync_job: connector_pb2.Job) -> None:
    accounts = items("acct", 3)
    ous = items("ou", 2, type_="aws.ou")
    everything = accounts + ous
    first = conn.upload([conn.chunk(sync_job, 0, accounts[:2]), conn.chunk(sync_job, 1, accounts[2:])])
    assert (first.items_received, first.next_seq, first.digest_ok) == (3, 2, False)
    # The same batch again (a resend after a lost response) is ignored.
    again = conn.upload([conn.chunk(sync_job, 0, accounts[:2]), conn.chunk(sync_job, 1, accounts[2:])])
    assert (again.items_received, again.next_seq) == (3, 2)
    assert cp.admin.inventory("org-1").total == 0  # nothing is visible before the digest checks out
    last = conn.upload([conn.chunk(sync_job, 1, accounts[2:]), conn.chunk(sync_job, 2, ous, digest_of(everything))])
    assert (last.items_received, last.next_seq, last.digest_ok) == (5, 3, True)
    # Resending the final chunk reports the same, stored result.
    assert conn.upload([conn.chunk(sync_job, 2, ous, digest_of(everything))]).digest_ok is True
    assert conn.finish(sync_job.id, 1).recorded
    assert cp.admin.get(sync_job.id).inventory_items == 5

    everything_back = cp.admin.inventory("org-1")
    assert everything_back.total == 5
    assert {(i.type, i.id) for i in everything_back.items} == {(i.type, i.id) for i in everything}
    assert everything_back.items[0].attributes.fields["tags"].struct_value["team"] == "platform"
    only_ous = cp.admin.inventory("org-1", type="aws.ou")
    assert only_ous.total == 2 and all(i.type == "aws.ou" for i in only_ous.items)
    limited = cp.admin.inventory("org-1", limit=2)
    assert len(limited.items) == 2 and limited.total == 5
    assert cp.admin.inventory("org-1", account_id="999999999999").total == 0
    assert cp.admin.inventory("other-integration").total == 0


def test_a_gap_is_refused_with_the_expected_seq(conn: Connector, sync_job: connector_pb2.Job) -> None:
    conn.upload([conn.chunk(sync_job, 0, items("a", 1))])
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.upload([conn.chunk(sync_job, 2, items("b", 1))])
    assert rpc_code(excinfo) == grpc.StatusCode.FAILED_PRECONDITION
    assert "expected seq 1" in rpc_details(excinfo)


def test_a_digest_mismatch_is_reported_and_not_merged(
    cp: ControlPlaneThread, conn: Connector, sync_job: connector_pb2.Job
) -> None:
    sent = items("acct", 2)
    wrong = digest_of(items("other", 2))
    reply = conn.upload([conn.chunk(sync_job, 0, sent, wrong)])
    assert reply.items_received == 2 and reply.digest_ok is False
    assert cp.admin.inventory("org-1").total == 0
    short = conn.upload([conn.chunk(sync_job, 0, sent, wrong)])  # resend: same verdict
    assert short.digest_ok is False


def test_a_count_mismatch_fails_the_digest(conn: Connector, sync_job: connector_pb2.Job) -> None:
    sent = items("acct", 2)
    digest = digest_of(sent)
    digest.item_count = 3
    assert conn.upload([conn.chunk(sync_job, 0, sent, digest)]).digest_ok is False


def test_chunks_of_a_stale_attempt_are_refused_and_its_items_discarded(
    cp: ControlPlaneThread, conn: Connector, sync_job: connector_pb2.Job
) -> None:
    conn.upload([conn.chunk(sync_job, 0, items("old", 3))])
    [retry] = conn.poll(max_jobs=1, wait=10.0)  # the lease expires; attempt 2
    assert retry.attempt == 2
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.upload([conn.chunk(sync_job, 1, items("old-more", 1), attempt=1)])
    assert rpc_code(excinfo) == grpc.StatusCode.FAILED_PRECONDITION
    assert rpc_details(excinfo) == "stale attempt 1, current is 2"
    fresh = items("new", 2)
    reply = conn.upload([conn.chunk(retry, 0, fresh, digest_of(fresh))])
    assert (reply.items_received, reply.digest_ok) == (2, True)
    stored = cp.admin.inventory("org-1")
    assert stored.total == 2 and {i.id for i in stored.items} == {"new-0", "new-1"}


def test_last_writer_wins_per_type_and_id(cp: ControlPlaneThread, conn: Connector) -> None:
    for name in ("first", "second"):
        cp.admin.enqueue_sync(CONNECTOR_ID, "org-1", "aws_organization")
        [job] = conn.poll(max_jobs=1, wait=1.0)
        item = connector_pb2.InventoryItem(type="aws.account", id="111122223333", name=name)
        assert conn.upload([conn.chunk(job, 0, [item], digest_of([item]))]).digest_ok
        conn.finish(job.id, job.attempt)
    stored = cp.admin.inventory("org-1")
    assert stored.total == 1 and stored.items[0].name == "second"


def test_oversized_and_malformed_chunks_are_invalid(conn: Connector, sync_job: connector_pb2.Job) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.upload([conn.chunk(sync_job, 0, items("x", 501))])
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT and "at most 500" in rpc_details(excinfo)
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.upload([conn.chunk(sync_job, 0, [connector_pb2.InventoryItem(type="aws.account")])])
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT and "type and id" in rpc_details(excinfo)
    big = connector_pb2.InventoryItem(type="blob", id="1", name="x" * (1024 * 1024 + 10))
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.upload([conn.chunk(sync_job, 0, [big])])
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT and "bytes" in rpc_details(excinfo)
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.upload([conn.chunk(sync_job, i, items(f"s{i}", 1)) for i in range(17)])
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT and "16 chunks" in rpc_details(excinfo)


def test_grant_jobs_do_not_upload_inventory(cp: ControlPlaneThread, conn: Connector) -> None:
    cp.admin.enqueue_grant(CONNECTOR_ID, "eks-1", "eks", grant_id="g", principal="p")
    [job] = conn.poll(max_jobs=1, wait=1.0)
    with pytest.raises(grpc.RpcError) as excinfo:
        conn.upload([conn.chunk(job, 0, items("x", 1))])
    assert rpc_code(excinfo) == grpc.StatusCode.FAILED_PRECONDITION and "only sync jobs" in rpc_details(excinfo)
