"""start and stop. A node whose WAL left the cluster's history (pha.pgsql.forkguard)
is rewound by its start (auto_rewind, pha.pgsql.rejoin) or refused."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from pha import ocf
from pha.crm import CrmError
from pha.pgsql import decide, names
from pha.pgsql.checks import check_auto_conf
from pha.pgsql.context import Ctx, State
from pha.pgsql.forkguard import stopped_fork_verdict
from pha.pgsql.instance import PgError


def start(ctx: Ctx) -> int:
    """Start as a standby, or as the held primary REPL_INFO records (read-only until promoted).
    A node whose timeline forked is rewound first (auto_rewind), else refused."""
    deadline = time.monotonic() + ctx.action_timeout("120000")
    ctx.unguard()     # a writable primary only after a promotion
    check_auto_conf(ctx)
    if ctx.pg.is_running():
        return ocf.SUCCESS if ctx.role() else ocf.ERR_GENERIC
    if ctx.pg.port_in_use():
        raise ocf.OCFError(ocf.ERR_CONFIGURED, f"parameter pgport={ctx.pg.port}: another server listens "
                           f"on it ({ctx.pg.socket_path})")
    info = ctx.repl_info()
    with failing_on_pg_error():
        control, wal = position(ctx)
        why = stopped_fork_verdict(ctx, info, wal)
    if why and info:
        if not ctx.params["auto_rewind"]:
            raise ocf.OCFError(ocf.ERR_GENERIC, why)
        from pha.pgsql import rejoin
        rejoin.rewind_at_start(ctx, info, why, deadline)
        with failing_on_pg_error():
            control, wal = position(ctx)
    held = decide.held_primary(info, ctx.me, wal.timeline, control.get("Database cluster state") == "shut down")
    with failing_on_pg_error():
        ctx.pg.ensure_included()
        ctx.pg.write_conf(ctx.settings(ctx.primary_sync_names() if held else "", read_only=held))
        ctx.pg.set_standby(not held)
        start_postgres(ctx, max(10.0, deadline - time.monotonic()))
    state = State(held=held)  # and a fresh cache of published attributes
    ctx.publish(state, names.ATTR_STATUS, decide.HS_ALONE)
    if held:
        ctx.score(ctx.me, decide.PRIMARY_SCORE)
        ctx.log.info(f"started as the recorded primary (timeline {wal.timeline}), read-only until promoted")
    else:
        publish_position(ctx, state)
        ctx.log.info("started as a standby")
    ctx.save(state)
    return ocf.SUCCESS


def position(ctx: Ctx) -> tuple[dict[str, str], decide.StoppedWal]:
    """(pg_controldata's fields, where the stopped instance's WAL ends at the least). The
    monitor checks the true end once the standby has replayed it."""
    control = ctx.pg.controldata()
    return control, decide.stopped_wal(control, ctx.pg.wal_timeline())


@contextmanager
def failing_on_pg_error() -> Iterator[None]:
    """PostgreSQL not doing what was asked (pg_ctl, readiness) fails the action, with its words."""
    try:
        yield
    except PgError as err:
        raise ocf.OCFError(ocf.ERR_GENERIC, str(err)) from None


def start_postgres(ctx: Ctx, timeout: float) -> None:
    """Start the postmaster, then wait until PostgreSQL accepts connections."""
    ctx.pg.start(timeout)
    ctx.pg.wait_ready(timeout)


def publish_position(ctx: Ctx, state: State) -> None:
    """Publish this standby's timeline and WAL position for elections."""
    with ctx.pg.connect() as conn:
        lsn_text, timeline = conn.execute(
            "select greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text,"
            " (select timeline_id from pg_control_checkpoint())").fetchone()
    ctx.publish(state, names.ATTR_LSN, decide.lsn_attr(decide.parse_lsn(lsn_text or "0/0")))
    ctx.publish(state, names.ATTR_TIMELINE, str(max(timeline, ctx.pg.wal_timeline())))


def stop(ctx: Ctx) -> int:
    ctx.unguard()
    with failing_on_pg_error():
        stop_postgres(ctx)
    state = ctx.load()
    if state.primary:
        ctx.unlock()
    try:  # the cluster may be going away with us
        ctx.crm.delete_promotion_score(resource=ctx.rsc, node=ctx.me)  # a stopped node is not promotable
    except CrmError as err:
        ctx.log.warning(f"could not delete this node's promotion score: {err}")
    try:
        ctx.publish(state, names.ATTR_STATUS, decide.STOP)
    except CrmError as err:
        ctx.log.warning(f"could not publish {names.ATTR_STATUS}: {err}")
    state.held = False
    ctx.save(state)
    return ocf.SUCCESS


def stop_postgres(ctx: Ctx) -> None:
    """Fast shutdown escalating to immediate; immediate at once without quorum
    (then nobody can be waiting for our WAL: no use waiting for walsenders)."""
    ctx.pg.stop(int(ctx.params["stop_escalate"]), immediate=not ctx.quorate())
