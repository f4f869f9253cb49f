"""The reference control plane: service ControlPlane for connectors, service Admin for operators.

Run it with `connector controlplane serve` (cli.py) or in-process with server.ControlPlaneServer /
server.ControlPlaneThread; operate it with client.AdminClient or the CLI. Modules: settings (validated
settings), db (SQLite schema), store (job transitions), inventory (uploads and queries), auth (tokens),
leases (expiry / backoff timers), engine (the core both servicers call), service / admin (servicers),
server, client, cli.

It follows the protocol semantics shared with the agent to the letter. Where they left a choice open,
this is what it does:

- Auth: health and reflection need no token. The UNAUTHENTICATED check runs in an interceptor, the
  connector-id check (PERMISSION_DENIED) in each RPC, per message for UploadInventory. A job belonging
  to another connector is reported NOT_FOUND (its existence is not revealed).
- Hello and PollJobs require host_id (INVALID_ARGUMENT otherwise). Capabilities are logged but do not
  route jobs: a connector's jobs go to any of its replicas, and a replica that cannot run one reports
  UNSUPPORTED.
- PollJobs leases oldest-available first. A queued job whose deadline (created + timeout) already passed
  is failed with TIMEOUT instead of being handed out. Jobs leased to a poll whose caller went away during
  the lease transaction are put back (same attempt).
- Leases are fenced by attempt only: a FinishJob or Heartbeat for the current attempt is accepted from
  any replica of the connector. A lease counts as lost once the server has processed its expiry (within
  milliseconds of lease_expires), not at the instant it passes.
- FinishJob: the first report for an attempt wins; a later one for that attempt (whatever its outcome) is
  OK with recorded=false. OUTCOME_UNSPECIFIED or attempt 0 is INVALID_ARGUMENT. A FAILED outcome without
  an error is stored as INTERNAL. A retryable failure is re-queued after `retry_backoff` (default 2 s)
  unless it was the last attempt or a cancel was requested; the last error stays on the record while the
  job waits. A lease that expires after a cancel request ends CANCELLED, not re-queued.
- CancelJob of a finished job returns its record unchanged.
- Inventory: the upload of one (job, attempt) is staged in order and merged into the inventory only when
  the final chunk's digest (item_count and SHA-256) matches, so a failed or corrupt upload never changes
  the inventory; digest_ok=false is reported and logged. Chunks are accepted only while the job is leased
  (upload before FinishJob); resends of stored chunks are always answered. At most 16 chunks per stream,
  500 items and 1 MiB per chunk (INVALID_ARGUMENT beyond). Items missing from a later sync are not deleted.
- WaitJob waits 30 s when no timeout is given and at most 300 s per call (AdminClient.wait loops).
- Job signing (Job.signature) is not implemented here: jobs go out unsigned.
"""
