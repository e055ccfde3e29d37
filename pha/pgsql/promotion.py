"""promote, demote and notify."""
from __future__ import annotations

import time
from typing import Any, Optional

import psycopg

from pha import ocf
from pha.crm import CrmError
from pha.pgsql import decide, names, peers
from pha.pgsql.context import Ctx, State
from pha.pgsql.standby import restart_receiver
from pha.pgsql.startstop import failing_on_pg_error, start_postgres, stop_postgres

REPLAY_WAIT = 10.0       # seconds a promotion waits for replay to reach what was received


# --- promote ---------------------------------------------------------------------------------
def promote(ctx: Ctx) -> int:
    state = ctx.load()
    wait_for_lock(ctx)
    with ctx.pg.connect() as conn:
        in_recovery = conn.execute("select pg_is_in_recovery()").fetchone()[0]
        if state.held and not in_recovery:
            return finish_held_promotion(ctx, conn, state)
        if not in_recovery:
            return ocf.SUCCESS
        status = ctx.crm.status()
        mine, system = own_position(ctx, conn)
        asked = peers.peers_to_ask(ctx, status)
        where = peers.addresses(asked)
        found = peers.positions(ctx, asked, system, where)
        check_best(ctx, status.node_attributes, [n for n, p in found.items() if p is not None])
        catch_up_or_hand_over(ctx, conn, mine, found, where)
        wait_replayed(conn, REPLAY_WAIT)
        conn.execute("select pg_promote(true, 60)")
        timeline, baseline = conn.execute(
            "select (select timeline_id from pg_control_checkpoint()), pg_current_wal_lsn()::text").fetchone()
    timeline = current_timeline(ctx, timeline)
    history = ctx.pg.history(timeline)
    switches = decide.parse_history(history) if history else {}
    info = decide.ReplInfo(ctx.me, timeline, switches.get(timeline - 1, decide.parse_lsn(baseline)))
    ctx.set_repl_info(info.render())
    state.repl_info = info.render()
    became_primary(ctx, state, baseline)
    ctx.log.info(f"promoted: REPL_INFO={info.render()}")
    return ocf.SUCCESS


def wait_for_lock(ctx: Ctx) -> None:
    """Promotion needs the lock. While another node's lease is unexpired (exit
    1), wait for it within the action's timeout: the old primary stops once it
    cannot renew. Any other failure (the lock server is out of reach, as on
    the cut-off side of a 2-node cluster) refuses at once, and this node
    steps aside."""
    if not ctx.params["enable_distlock"]:
        return
    deadline = time.monotonic() + max(5.0, int(ctx.res.meta("timeout", "60000")) / 1000 - 10)
    code = ctx.take_lock()
    if code == 1:
        ctx.log.info("waiting for the distributed lock before promoting")
    while code == 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        code = ctx.take_lock()
    if code != 0:
        ctx.step_aside()
        why = "held by another node" if code == 1 else f"distlock_lock_cmd failed (exit {code})"
        raise ocf.OCFError(ocf.ERR_GENERIC, f"not promoting without the distributed lock: {why}")


def current_timeline(ctx: Ctx, fallback: int) -> int:
    """The timeline after promotion (the checkpoint's may lag behind)."""
    try:
        with ctx.pg.connect() as conn:
            name = conn.execute("select pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
    except psycopg.Error as err:
        ctx.log.warning(f"cannot read the new timeline, using the checkpoint's ({fallback}): {err}")
        return fallback
    return int(name[:8], 16)


def finish_held_promotion(ctx: Ctx, conn: Any, state: State) -> int:
    """The recorded primary, running read-only: make it writable, no new timeline."""
    ctx.pg.write_conf(ctx.settings(ctx.primary_sync_names()))
    conn.execute("select pg_reload_conf()")
    baseline = conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]
    state.held = False
    info = ctx.repl_info()
    if info:
        state.repl_info = info.render()
    became_primary(ctx, state, baseline)
    ctx.log.info("promoted the recorded primary in place: same timeline")
    return ocf.SUCCESS


def became_primary(ctx: Ctx, state: State, baseline: str) -> None:
    """After promotion: the primary's own score and the sync setting now, the
    other attributes at the first monitor after SETTLE seconds (every CIB
    write aborts the transition that is about to start the writer VIP).

    The score cannot wait: the election left this node one point ahead of
    the runner-up, and any other preference Pacemaker adds (a colocated
    resource's stickiness) could move the Promoted role over that margin."""
    state.primary = True
    state.rounds = 0
    state.promoted_at = time.time()
    state.published = {}
    state.baseline = baseline
    ctx.guard_primary()
    ctx.score(ctx.me, decide.PRIMARY_SCORE)
    ctx.pg.set_standby(False)
    if ctx.sync:
        ctx.pg.write_conf(ctx.settings(ctx.primary_sync_names()))
        ctx.reload()
    ctx.save(state)


def own_position(ctx: Ctx, conn: Any) -> tuple[decide.Position, str]:
    """Where this standby's WAL ends (received or replayed) and its system identifier."""
    system, lsn_text, timeline = conn.execute(
        "select (select system_identifier::text from pg_control_system()),"
        " greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text,"
        " (select timeline_id from pg_control_checkpoint())").fetchone()
    lsn = decide.parse_lsn(lsn_text) if lsn_text else 0
    return decide.Position(max(int(timeline), ctx.pg.wal_timeline()), lsn), str(system)


def check_best(ctx: Ctx, attrs: decide.Attributes, caught_up_with: list[str]) -> None:
    """Promote only the node with the best data: re-checked against what the others
    publish, and against the peers asked where their WAL ends (this node catches up
    with them next)."""
    refusal = decide.promotion_refusal(ctx.me, ctx.nodes, attrs, ctx.sync, caught_up_with)
    if refusal:
        if refusal.step_aside:
            ctx.step_aside()
        raise ocf.OCFError(ocf.ERR_GENERIC, refusal.reason)


def catch_up_or_hand_over(ctx: Ctx, conn: Any, mine: decide.Position,
                          found: dict[str, Optional[decide.Position]], where: dict[str, Optional[str]]) -> None:
    """When a peer has more WAL than this node, stream it from that peer first, so
    that nothing it acknowledged as the primary's last sync standby is lost. If it
    does not arrive within peers.CATCH_UP_WAIT, the peer gets the promotion: this
    node steps aside, gives the peer a winning score, and the promotion fails."""
    best = decide.most_advanced_peer(mine, found, ctx.nodes)
    if best is None:
        return
    target, address = found[best], where[best]
    assert target is not None and address is not None   # found only where asked at an address
    ctx.log.info(f"{best} has WAL to {target}, past this node's {mine}: streaming it from {best} first")
    started = time.monotonic()
    try:
        reached = peers.catch_up(ctx, conn, address, target)
    finally:
        ctx.pg.write_conf(ctx.settings(""))       # master_ip again (the promotion rewrites it in sync mode)
        conn.execute("select pg_reload_conf()")
    if reached:
        ctx.log.info(f"caught up with {best} in {time.monotonic() - started:.2f}s")
        return
    ctx.score(best, decide.CANDIDATE_SCORE)
    ctx.step_aside()
    raise ocf.OCFError(ocf.ERR_GENERIC, f"not promoting: {best} has WAL to {target}, past this node's {mine}, "
                       f"and it did not arrive from there within {peers.CATCH_UP_WAIT:g}s: {best} is promotable")


def wait_replayed(conn: Any, seconds: float) -> None:
    """Let replay reach what was received before promoting."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        behind = conn.execute("select pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()").fetchone()[0]
        if not behind:
            return
        time.sleep(0.05)


# --- demote ------------------------------------------------------------------------------------
def demote(ctx: Ctx) -> int:
    state = ctx.load()
    ctx.unguard()
    path = decide.demote_path(ctx.pg.is_running(), lambda: state.stop_follows or stopping_here(ctx))
    state.stop_follows = False
    if path == decide.DEMOTE_NOT_RUNNING:
        # Starting it as a standby here would only delay the promotion elsewhere.
        state.left_primary()
        ctx.save(state)
        ctx.log.info("demoted a primary that was not running")
        return ocf.SUCCESS
    if path == decide.DEMOTE_BY_STOPPING:
        # This transition stops us too: shut down as the primary, cleanly, so a
        # restart of the whole cluster brings this node back without a new timeline.
        with failing_on_pg_error():
            stop_postgres(ctx)
        state.left_primary()
        ctx.save(state)
        ctx.unlock()
        ctx.log.info("demoted by stopping: the same transition stops this node")
        return ocf.SUCCESS
    with failing_on_pg_error():
        stop_postgres(ctx)
        ctx.pg.write_conf(ctx.settings(""))
        ctx.pg.set_standby(True)
        state.left_primary()
        state.rounds = 0
        ctx.save(state)
        ctx.unlock()
        ctx.score(ctx.me, 1)  # no longer the primary's 1000; the new primary rates it
        ctx.publish(state, names.ATTR_STATUS, decide.HS_ALONE)
        start_postgres(ctx, ctx.action_timeout("120000"))
    ctx.log.info("demoted: running as a standby of " + str(ctx.params["master_ip"]))
    return ocf.SUCCESS


def stopping_here(ctx: Ctx) -> bool:
    """Whether this demote is followed by a stop of this instance: the clone is
    being disabled, or this node shuts down. (With notify=true the pre-demote
    notification says so too; this works without notifications.)"""
    try:
        status = ctx.crm.status()
    except CrmError as err:
        ctx.log.warning(f"cannot tell whether a stop follows this demote, assuming not: {err}")
        return False
    clone = next((r for r in status.resources if r.clone and r.id.split(":")[0] == ctx.rsc), None)
    me = status.node(ctx.me)
    return decide.stop_follows_demote(clone.target_role if clone else None, bool(me and me.shutdown))


# --- notify ------------------------------------------------------------------------------------
def notify(ctx: Ctx) -> int:
    n = ctx.res.notify
    if n is None or not ctx.pg.is_running():
        return ocf.SUCCESS
    ctx.log.debug(f"notify {n.type}-{n.operation}: {dict(n.hosts)}")
    if n.is_pre and n.operation == "demote" and ctx.me in n["demote"]:
        state = ctx.load()
        state.stop_follows = ctx.me in n["stop"]
        ctx.save(state)
    elif n.is_post and n.operation == "promote" and ctx.me not in n["promote"]:
        reconnect_receiver(ctx, " ".join(n["promote"]))
    return ocf.SUCCESS


def reconnect_receiver(ctx: Ctx, promoted: str) -> None:
    """Make the WAL receiver reconnect now, to the new primary behind master_ip (the
    writer VIP may move only after this: the standby's monitor retries once it answers)."""
    try:
        with ctx.pg.connect() as conn:
            restart_receiver(ctx, conn, why=f"{promoted} was promoted")
    except psycopg.Error as err:
        ctx.log.warning(f"could not restart the WAL receiver: {err}")
