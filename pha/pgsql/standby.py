"""A standby's monitor: its WAL receiver and lag, the fork guard while it
cannot stream, and the election when there is no primary."""
from __future__ import annotations

import os
import signal
from typing import Any

import psycopg

from pha import ocf
from pha.pgsql import decide, names
from pha.pgsql.context import Ctx, State
from pha.pgsql.forkguard import guard

PROBE_TIMEOUT = 0.3      # seconds a standby that does not stream waits for master_ip to accept
# pg_stat_wal_receiver's status while a receiver connects: no row yet ("stopped" here), or starting;
# "waiting" is a connected receiver at a timeline switch: left alone.
CONNECTING = ("stopped", "starting")


def monitor_standby(ctx: Ctx, conn: Any, state: State) -> int:
    """SUCCESS, having published the receiver's state and lag. A Pacemaker CLI
    error (pha.crm.CrmError) propagates: the monitor logs it and the next one retries."""
    if state.held:
        return ocf.SUCCESS  # a held primary: promotable at once (score set by start)
    receiver = conn.execute(
        "select coalesce((select status from pg_stat_wal_receiver), 'stopped'),"
        " coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint,"
        " greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text,"
        " (select timeline_id from pg_control_checkpoint())").fetchone()
    status, lag, lsn_text = receiver[0], max(0, int(receiver[1])), receiver[2]
    timeline = max(int(receiver[3]), ctx.pg.wal_timeline())
    if ctx.params["check_wal_receiver"]:
        # Publish a change only once two monitors agree: a failover's passing
        # "stopped" would otherwise abort Pacemaker's transition. Lag in MiB steps.
        if state.receiver_seen == status:
            ctx.publish(state, names.ATTR_RECEIVER, status)
        state.receiver_seen = status
        ctx.publish(state, names.ATTR_LAG, str(lag >> 20 << 20))
    lsn = decide.parse_lsn(lsn_text) if lsn_text else 0
    if status == "streaming":
        state.rounds = 0
    else:  # a forked standby cannot stream: this is where the guard catches it running
        guard(ctx, ctx.repl_info(), timeline, lsn)
        if status in CONNECTING and primary_answers(ctx):
            restart_receiver(ctx, conn, why="not streaming while the primary behind master_ip answers")
        elect_if_leaderless(ctx, state, timeline, lsn)
    ctx.save(state)
    return ocf.SUCCESS


def primary_answers(ctx: Ctx) -> bool:
    """Whether master_ip:pgport accepts connections (a short TCP probe: a standby
    that does not stream asks, and only then)."""
    from pha.pgsql.rewind import reachable
    return reachable(str(ctx.params["master_ip"]), int(ctx.params["pgport"]), timeout=PROBE_TIMEOUT)


def restart_receiver(ctx: Ctx, conn: Any, why: str) -> None:
    """SIGTERM the WAL receiver so that it connects again at once (after
    wal_retrieve_retry_interval). One still connecting counts: after a failover
    its SYN to master_ip went out before the writer VIP moved and TCP resends it
    only seconds later (1 s, 3 s...), and pg_stat_wal_receiver shows no row until
    it is connected, so pg_stat_activity is asked."""
    try:
        row = conn.execute("select pid from pg_stat_activity where backend_type = 'walreceiver'").fetchone()
        if row and row[0]:
            os.kill(int(row[0]), signal.SIGTERM)
            ctx.log.info(f"WAL receiver restarted: {why}")
    except (psycopg.Error, OSError) as err:
        ctx.log.warning(f"could not restart the WAL receiver: {err}")


def elect_if_leaderless(ctx: Ctx, state: State, timeline: int, lsn: int) -> None:
    """With no primary and no promotable node, rank the standbys and write their
    scores: at once when every node of node_list has published its position,
    else after xlog_check_count monitors (see decide.election_wait)."""
    status = ctx.crm.status()
    attrs = status.node_attributes
    online = status.online_nodes()
    if decide.leader_known(ctx.nodes, ctx.me, attrs, online, ctx.score_name):
        state.rounds = 0
        return
    ctx.publish(state, names.ATTR_LSN, decide.lsn_attr(lsn))
    ctx.publish(state, names.ATTR_TIMELINE, str(timeline))
    state.rounds += 1
    me = decide.Candidate(ctx.me, timeline, lsn, attrs.get(ctx.me, {}).get(names.ATTR_DATA))
    candidates, starting = decide.election_pool(ctx.nodes, me, attrs, online)
    wait = decide.election_wait(state.rounds, int(ctx.params["xlog_check_count"]), len(candidates),
                                len(ctx.nodes), starting)
    if wait == decide.WAIT_STARTING:
        ctx.log.info(f"no primary: waiting for {', '.join(starting)} to publish its position")
    if wait:
        return
    ranking = decide.elect(candidates, ctx.nodes, ctx.sync)
    # Every elector writes the whole ranking (the same from the same data), so
    # the winner is promotable at once, even before its own monitor runs.
    for candidate in candidates:
        ctx.score(candidate.node, decide.election_score(candidate.node, ranking))
    ctx.log.info(f"no primary: election ranks {ranking or 'nobody'}")
