"""botocore's own CPU floor per AWS call, measured in the bench's run: what any Python agent built on botocore
pays per call, to put the agent's CPU per call next to.

`python -m connector.bench.floor server`: a trivial HTTP/1.1 keep-alive server answering EKS's REST paths with
fixed JSON bodies shaped like the sandbox's (clusters, an access entry, its policies). Prints `ready: PORT`.

`python -m connector.bench.floor client ENDPOINT THREADS SECONDS`: one botocore EKS client (static keys, SigV4,
standard retries, a pool of THREADS connections: the agent's settings) called from THREADS threads for SECONDS,
cycling the sync's per-cluster mix (ListClusters, DescribeCluster, ListAccessEntries, then DescribeAccessEntry and
ListAssociatedAccessPolicies per entry). Prints one JSON line: calls, seconds, this process's CPU seconds.

Both are separate processes, so the client's CPU is botocore's alone (the server's is not counted).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLUSTER = "prod-0000-us-east-1-0"
PRINCIPAL = "arn:aws:iam::210000000002:role/team-0-access"
ENTRIES = 5
_CA = "LS0tLS1CRUdJTi" + "A" * 1386  # the sandbox's clusters carry a 1,400-character CA blob


def _bodies() -> dict[str, bytes]:
    arn = f"arn:aws:eks:us-east-1:210000000002:cluster/{CLUSTER}"
    cluster = {
        "cluster": {
            "name": CLUSTER,
            "arn": arn,
            "createdAt": 1.7e9,
            "version": "1.31",
            "endpoint": "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
            "roleArn": "arn:aws:iam::210000000002:role/eks-cluster-role",
            "resourcesVpcConfig": {"subnetIds": ["subnet-0a1b2c3d"], "securityGroupIds": ["sg-0a1b2c3d"]},
            "status": "ACTIVE",
            "certificateAuthority": {"data": _CA},
            "platformVersion": "eks.1",
            "tags": {"environment": "prod"},
            "accessConfig": {
                "authenticationMode": "API_AND_CONFIG_MAP",
                "bootstrapClusterCreatorAdminPermissions": False,
            },
        }
    }
    entry = {
        "accessEntry": {
            "clusterName": CLUSTER,
            "principalArn": PRINCIPAL,
            "kubernetesGroups": ["team-0"],
            "accessEntryArn": f"arn:aws:eks:us-east-1:210000000002:access-entry/{CLUSTER}/role/210000000002/x/abc",
            "createdAt": 1.7e9,
            "modifiedAt": 1.7e9,
            "tags": {"owner": "team-0"},
            "username": "arn:aws:sts::210000000002:assumed-role/team-0-access/{{SessionName}}",
            "type": "STANDARD",
        }
    }
    policies = {
        "clusterName": CLUSTER,
        "principalArn": PRINCIPAL,
        "associatedAccessPolicies": [
            {
                "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
                "accessScope": {"type": "namespace", "namespaces": ["default", "monitoring"]},
                "associatedAt": 1.7e9,
                "modifiedAt": 1.7e9,
            }
        ],
    }
    return {
        "clusters": json.dumps({"clusters": [CLUSTER, CLUSTER + "x", CLUSTER + "y"]}).encode(),
        "cluster": json.dumps(cluster).encode(),
        "entries": json.dumps({"accessEntries": [PRINCIPAL] * ENTRIES}).encode(),
        "entry": json.dumps(entry).encode(),
        "policies": json.dumps(policies).encode(),
    }


BODIES = _bodies()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as AWS endpoints
    disable_nagle_algorithm = True  # and one write per answer: no delayed-ACK stalls

    def do_GET(self) -> None:
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) == 1:
            body = BODIES["clusters"]
        elif len(parts) == 2:
            body = BODIES["cluster"]
        elif len(parts) == 3:
            body = BODIES["entries"]
        elif len(parts) == 4:
            body = BODIES["entry"]
        else:
            body = BODIES["policies"]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self.wfile.write(head.encode() + body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(f"ready: {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


def client(endpoint: str, threads: int, seconds: float) -> dict[str, Any]:
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session()
    eks = session.create_client(
        "eks",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="AKIAFLOORFLOORFLOOR0",
        aws_secret_access_key="floor-secret-key-floor-secret-key-0000",  # noqa: S106 - a fake key for a fake server
        aws_session_token="floor-session-token",  # noqa: S106
        config=Config(retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=threads),
    )
    mix: list[Callable[[], Any]] = [
        lambda: eks.list_clusters(),
        lambda: eks.describe_cluster(name=CLUSTER),
        lambda: eks.list_access_entries(clusterName=CLUSTER),
    ]
    for _ in range(ENTRIES):
        mix.append(lambda: eks.describe_access_entry(clusterName=CLUSTER, principalArn=PRINCIPAL))
        mix.append(lambda: eks.list_associated_access_policies(clusterName=CLUSTER, principalArn=PRINCIPAL))
    for call in mix:  # warm up: models, endpoint rules, one connection
        call()
    counts = [0] * threads
    stop = threading.Event()

    def hammer(i: int) -> None:
        n = i
        while not stop.is_set():
            mix[n % len(mix)]()
            n += 1
            counts[i] += 1

    workers = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(threads)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join(30)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
    calls = sum(counts)
    return {
        "threads": threads,
        "calls": calls,
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_call": round(cpu / max(calls, 1) * 1000, 3),
        "calls_per_second": round(calls / elapsed, 1),
    }


def measure(threads: int, seconds: float) -> dict[str, Any]:
    """Run the server and the client (each its own process) and return the client's figures."""
    import subprocess

    from connector.bench.procs import BenchError

    server = subprocess.Popen(
        [sys.executable, "-m", "connector.bench.floor", "server"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("ready: "):
            raise BenchError(f"the botocore floor server did not start (exit {server.poll()})")
        endpoint = f"http://127.0.0.1:{line.split()[1]}"
        out = subprocess.run(
            [sys.executable, "-m", "connector.bench.floor", "client", endpoint, str(threads), str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
        if out.returncode != 0:
            raise BenchError(f"the botocore floor client failed: {out.stderr.strip()[-500:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        server.terminate()
        server.wait(10)


def main(argv: list[str]) -> int:
    if argv[:1] == ["server"]:
        return serve()
    if argv[:1] == ["client"] and len(argv) == 4:
        print(json.dumps(client(argv[1], int(argv[2]), float(argv[3]))), flush=True)
        return 0
    print("usage: python -m connector.bench.floor server | client ENDPOINT THREADS SECONDS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
