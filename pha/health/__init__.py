"""`pha health`: one small HTTP service per node that tells HAProxy what the node is.

It serves the three health checks of the VIP-less seeds from one process:
Patroni-style endpoints (/primary, /replica?lag=, /read-only, /sync, /async,
/health, /liveness), pgsqlchk mode on / (200 primary, 206 standby, 503), and
an optional text port answering `production` or `standby` for `tcp-check
expect string`. The role comes from PostgreSQL itself; pha's node attributes
(pgsql-status, pgsql-data-status) are added when Pacemaker runs on the node.

Modules: `state` (what a node is and what each endpoint answers; pure),
`http` (request parsing and responses; pure), `probe` (the SQL, the node
attributes and the one-query-per-interval cache), `server` (asyncio
listeners and their limits), `cli` (the click command).

How it runs: a systemd service (templates/pha-health.service), not a
Pacemaker clone. Why:
- A health check must answer whatever Pacemaker is doing. As a clone it would
  stop with the cluster stack, in node standby, or after a failed monitor, so
  HAProxy would lose its view exactly while the cluster is in trouble; a
  service reports what PostgreSQL really is, also in maintenance mode and on
  reader nodes outside the cluster (the three_plus_x layout).
- As a resource it could hurt the database: a failed stop escalates to
  fencing, and failures, fail counts and constraints add to the cluster what
  is only an observer. Nothing Pacemaker decides depends on it.
- systemd already gives what a clone would: a restart on failure, start at
  boot, and, in addition, sandboxing (a non-root user, read-only system).
So there is no `ocf:pha:health` agent.
"""
