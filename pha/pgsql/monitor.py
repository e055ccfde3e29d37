"""The monitor: which role runs here, and what counts as a failure.

Only PostgreSQL's own failure fails it. A server that refuses connections
because it is full, starting up or shutting down is alive: it reports the
role this node last knew. A Pacemaker CLI error while publishing is logged
and the next monitor tries again.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import psycopg

from pha import ocf
from pha.crm import CrmError
from pha.pgsql import decide
from pha.pgsql.context import Ctx, State
from pha.pgsql.instance import PgError
from pha.pgsql.primary import monitor_primary
from pha.pgsql.standby import monitor_standby
from pha.values import first_line


def monitor(ctx: Ctx) -> int:
    """A failed primary reports it and writes nothing: a score written beside
    the failure held Pacemaker's reaction back by a second (measured); its
    stop deletes the score, so recovery promotes the sync standby."""
    if not ctx.pg.is_running():
        return ocf.NOT_RUNNING
    state = ctx.load()
    try:
        with ctx.pg.connect(timeout=5) as conn:
            return _monitor_role(ctx, conn, state)
    except psycopg.Error as err:
        busy = decide.busy_sqlstate(err.sqlstate, str(err))
        if busy == decide.TOO_MANY_CONNECTIONS and state.primary and not state.held:
            return _monitor_through_a_walsender(ctx, state, err)
        if busy:
            ctx.log.warning(f"PostgreSQL is alive but refuses connections (SQLSTATE {busy}): "
                            f"{first_line(err)}; reporting the last known role")
            return _running(state.primary)
        raise _failure(ctx, state, err) from None
    except PgError as err:
        raise _failure(ctx, state, err) from None


def _monitor_role(ctx: Ctx, conn: Any, state: State) -> int:
    """The role this node runs, monitored on `conn`."""
    conn.execute(str(ctx.params["monitor_sql"]))
    primary = not conn.execute("select pg_is_in_recovery()").fetchone()[0] and not state.held
    try:
        return monitor_primary(ctx, conn, state) if primary else monitor_standby(ctx, conn, state)
    except CrmError as err:
        ctx.log.warning(f"Pacemaker did not take this monitor's updates (the next one retries): {err}")
        ctx.save(state)
        return _running(primary)


def _monitor_through_a_walsender(ctx: Ctx, state: State, full: psycopg.Error) -> int:
    """Every connection slot of the primary is taken: an application connecting as a
    superuser, its commits waiting for a sync standby that is gone, can take them
    all, the reserved ones too. A walsender connection in database mode takes a
    max_wal_senders slot instead, so the monitor still sees its standbys and can
    fall back to async, which releases those commits. When even that is refused,
    the server is alive all the same: its last known role."""
    with ExitStack() as stack:
        try:
            conn = stack.enter_context(ctx.pg.connect(timeout=5, walsender=True))
        except psycopg.Error as err:     # no replication line in pg_hba.conf, max_wal_senders taken...
            ctx.log.warning(f"PostgreSQL is alive but refuses connections: {first_line(full)}; no walsender "
                            f"connection either ({first_line(err)}); reporting the last known role")
            return _running(state.primary)
        ctx.log.warning(f"every connection slot is taken ({first_line(full)}): monitoring through a "
                        "walsender connection")
        try:
            return _monitor_role(ctx, conn, state)
        except (psycopg.Error, PgError) as err:
            raise _failure(ctx, state, err) from None


def _running(primary: bool) -> int:
    return ocf.RUNNING_PROMOTED if primary else ocf.SUCCESS


def _failure(ctx: Ctx, state: State, err: Exception) -> ocf.OCFError:
    if ctx.res.is_probe:
        return ocf.OCFError(ocf.ERR_GENERIC, f"PostgreSQL runs but does not answer: {first_line(err)}")
    failed = ocf.FAILED_PROMOTED if state.primary else ocf.ERR_GENERIC
    return ocf.OCFError(failed, f"PostgreSQL does not answer: {first_line(err)}")
