"""Where the answers come from: one SQL statement, pha's node attributes, and the cache.

`StateCache.get()` returns a `Snapshot` no older than `interval` seconds. When
the cached one is older, exactly one refresh runs (however many requests wait
for it): one statement on one persistent connection, and, concurrently, the
pha node attributes through `pha.crm`. A flood of checks therefore costs
PostgreSQL at most one query per interval. A refresh is bounded by `timeout`:
a PostgreSQL that does not answer in time counts as not running.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from typing import Any, Awaitable, Callable, Mapping, Optional

from pha.health.state import DOWN, PHA_ATTRIBUTES, PRIMARY, STANDBY, Snapshot

log = logging.getLogger("pha.health")

APPLICATION_NAME = "pha-health"

# One round trip. pg_is_in_recovery() is read once; the primary-only and
# standby-only functions sit behind CASE so neither errors on the other role.
# latest_end_lsn is the WAL end the primary last reported to this standby.
STATE_SQL = """
SELECT r.in_recovery,
       CASE WHEN NOT r.in_recovery THEN pg_current_wal_lsn()::text END,
       CASE WHEN NOT r.in_recovery
            THEN ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
            ELSE coalesce(w.received_tli,
                          CASE WHEN has_function_privilege('pg_control_checkpoint()', 'execute')
                               THEN (SELECT timeline_id FROM pg_control_checkpoint()) END) END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       w.latest_end_lsn::text,
       CASE WHEN r.in_recovery
            THEN pg_wal_lsn_diff(greatest(w.latest_end_lsn, pg_last_wal_receive_lsn()),
                                 pg_last_wal_replay_lsn())::bigint END,
       CASE WHEN r.in_recovery THEN pg_is_wal_replay_paused() END,
       CASE WHEN r.in_recovery THEN pg_last_xact_replay_timestamp()::text END,
       w.status,
       current_setting('server_version_num')::int,
       CASE WHEN NOT r.in_recovery THEN (
           SELECT coalesce(json_agg(json_build_object(
                      'application_name', application_name, 'client_addr', host(client_addr),
                      'state', state, 'sync_state', sync_state, 'replay_lsn', replay_lsn::text,
                      'lag_bytes', pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint)
                      ORDER BY application_name), '[]'::json)
           FROM pg_stat_replication) END
FROM (SELECT pg_is_in_recovery() AS in_recovery) AS r
LEFT JOIN pg_stat_wal_receiver AS w ON true
"""


def snapshot_from_row(row: tuple, attributes: Mapping[str, str], taken_at: float) -> Snapshot:
    """A Snapshot from STATE_SQL's row."""
    (in_recovery, wal_lsn, timeline, receive_lsn, replay_lsn, upstream_lsn, lag, paused,
     last_replay, receiver, version, replication) = row
    return Snapshot(
        running=True, role=STANDBY if in_recovery else PRIMARY, timeline=timeline,
        wal_lsn=wal_lsn, receive_lsn=receive_lsn if in_recovery else None,
        replay_lsn=replay_lsn if in_recovery else None, upstream_lsn=upstream_lsn,
        lag_bytes=lag, replay_paused=paused, last_replay=last_replay, receiver=receiver,
        replication=tuple(replication or ()), server_version=version,
        attributes=dict(attributes), taken_at=taken_at)


class PostgresProbe:
    """Runs STATE_SQL on one persistent connection, reconnecting after any failure."""

    def __init__(self, dsn: str, timeout: float) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._conn: Any = None

    async def _connect(self) -> Any:
        import psycopg
        statement_ms = max(1, int(self.timeout * 1000))
        return await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, application_name=APPLICATION_NAME,
            connect_timeout=max(1, round(self.timeout)),
            options=f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}")

    async def row(self) -> tuple:
        """STATE_SQL's row; raises on any failure (and drops the connection)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await self._connect()
            cursor = await self._conn.execute(STATE_SQL)
            row = await cursor.fetchone()
            if row is None:
                raise RuntimeError("the state query returned no row")
            return row
        except BaseException:
            self.drop()
            raise

    def drop(self) -> None:
        """Forget the connection (closing its socket without waiting for the server)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.pgconn.finish()
            except Exception:  # already gone
                pass

    async def close(self) -> None:
        self.drop()


def read_pha_attributes(timeout: float) -> dict[str, str]:
    """This node's pha attributes that are set; {} when Pacemaker is absent or does not answer."""
    from pha import crm
    bridge = crm.Crm(timeout=timeout)
    found: dict[str, str] = {}
    for name in PHA_ATTRIBUTES:
        try:
            value = bridge.get_node_attr(name, lifetime="reboot")
        except crm.CrmError as exc:
            log.debug("attribute %s not read: %s", name, exc)
            return found
        if value is not None:
            found[name] = value
    return found


def cib_write_warning(timeout: float, euid: Optional[int] = None) -> Optional[str]:
    """Why this service may be able to write the CIB (it needs to read it only), or None.

    A member of haclient may write the CIB unless enable-acl=true gives it a read-only role,
    and writing the CIB is root on every node (an agent's parameters are run as root)."""
    from pha import crm
    if (os.geteuid() if euid is None else euid) == 0:
        return "runs as root: run it as its own user (templates/pha-health.service)"
    try:
        enabled = crm.Crm(timeout=timeout).get_property("enable-acl")
    except crm.CrmError:
        return None                 # no access to the CIB at all: nothing to write with
    if (enabled or "").lower() not in ("true", "yes", "on", "1", "y"):
        return ("enable-acl is not true, so as a member of haclient this service may write the CIB: "
                "set health_user in config.ini and run `pha setup` (a read-only ACL role)")
    return None


AttributeReader = Callable[[], Awaitable[dict]]


def pacemaker_reader(timeout: float) -> Optional[AttributeReader]:
    """An attribute reader when crm_attribute is installed, else None."""
    if shutil.which("crm_attribute") is None:
        return None

    async def read() -> dict:
        return await asyncio.to_thread(read_pha_attributes, timeout)
    return read


class StateCache:
    """The node's Snapshot, refreshed at most once per `interval`, by one refresh at a time.

    A refresh waits for PostgreSQL only. pha's attributes (a Pacemaker CLI
    call, ~25 ms) are re-read in the background at each refresh and joined to
    the cached snapshot when they arrive, so they may lag the database state
    by about one refresh; when the last read is older than `attributes_max_age`
    (after an idle period) the refresh waits for a new one.
    """

    def __init__(self, probe: PostgresProbe, interval: float, timeout: float,
                 attributes: Optional[AttributeReader] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.probe = probe
        self.interval = interval
        self.timeout = timeout
        self.attributes = attributes
        self.attributes_max_age = max(5.0, 2 * interval)
        self.clock = clock
        self.refreshes = 0
        self._snapshot: Optional[Snapshot] = None
        self._taken = float("-inf")
        self._refreshing: Optional[asyncio.Future] = None
        self._attrs: dict = {}
        self._attrs_read = float("-inf")       # when the last attribute read began
        self._attrs_reading: Optional[asyncio.Future] = None

    def fresh(self) -> Optional[Snapshot]:
        """The cached snapshot if it is younger than `interval`, else None."""
        if self._snapshot is not None and self.clock() - self._taken < self.interval:
            return self._snapshot
        return None

    async def get(self) -> Snapshot:
        """A snapshot no older than `interval`; DOWN if PostgreSQL does not answer within `timeout`."""
        snapshot = self.fresh()
        if snapshot is not None:
            return snapshot
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
        try:
            return await asyncio.wait_for(asyncio.shield(self._refreshing), self.timeout + 0.5)
        except asyncio.TimeoutError:
            return DOWN._replace(taken_at=time.time())

    async def _refresh(self) -> Snapshot:
        started, wall = self.clock(), time.time()
        self.refreshes += 1
        try:
            stale_attrs = started - self._attrs_read > self.attributes_max_age
            reading = self._read_attributes(started)
            try:
                row = await asyncio.wait_for(self.probe.row(), self.timeout)
                error = None
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # any failure means: not running (for the checks)
                row, error = None, exc
            if stale_attrs and reading is not None:
                await asyncio.wait({reading}, timeout=self.timeout)
            if row is not None:
                snapshot = snapshot_from_row(row, self._attrs, wall)
            else:
                snapshot = DOWN._replace(attributes=dict(self._attrs), taken_at=wall)
            self._log_change(snapshot, error)
            self._snapshot, self._taken = snapshot, started
            return snapshot
        finally:
            self._refreshing = None

    def _read_attributes(self, now: float) -> Optional[asyncio.Future]:
        """Start a background read of pha's attributes (unless one is running); the read's future."""
        if self.attributes is None:
            return None
        if self._attrs_reading is None:
            self._attrs_read = now
            self._attrs_reading = asyncio.ensure_future(self._attributes_task())
        return self._attrs_reading

    async def _attributes_task(self) -> None:
        try:
            assert self.attributes is not None
            attrs = await asyncio.wait_for(self.attributes(), self.timeout)
        except Exception as exc:
            log.debug("pha attributes not read: %s", exc)
            attrs = {}
        finally:
            self._attrs_reading = None
        if attrs != self._attrs:
            self._attrs = attrs
            if self._snapshot is not None:
                self._snapshot = self._snapshot._replace(attributes=dict(attrs))

    def _log_change(self, new: Snapshot, error: Optional[BaseException]) -> None:
        old = self._snapshot
        if old is not None and (old.running, old.role, old.timeline) == (new.running, new.role, new.timeline):
            return
        if new.running:
            log.info("PostgreSQL is %s (timeline %s)", new.role, new.timeline)
        else:
            reason = f"{type(error).__name__}: {error}" if error is not None else "no answer"
            log.warning("PostgreSQL is not answering: %s", str(reason).strip().splitlines()[0])

    async def close(self) -> None:
        for task in (self._refreshing, self._attrs_reading):
            if task is not None:
                task.cancel()
        await self.probe.close()
